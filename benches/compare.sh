#!/usr/bin/env bash
# Rust vs Python on the same model, texts and batches, in one run: Python onnxruntime
# first, then the Rust criterion group, then Python again (the machine is shared and
# noisy: compare each Rust figure with both Python runs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap
venv=.tools/bench-venv
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$venv/bin/pip" install --quiet \
    "onnxruntime==1.31.1" "tokenizers==0.23.3" "numpy==2.4.6"
"$venv/bin/python" benches/python_baseline.py 5
cargo bench --bench main -- classifier 2>&1 | grep -E "^classifier|thrpt"
"$venv/bin/python" benches/python_baseline.py 5
