#!/usr/bin/env bash
# Rust vs Python in instructions, not seconds: callgrind counts are repeatable on a shared,
# noisy machine. Each side scores the parity fixture 1 and 3 times; (3 - 1) / 2 is the cost
# of one pass without start-up. About 15 minutes (valgrind is ~50x slower). BATCH=1 default.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
batch="${BATCH:-1}"
scripts/bootstrap
venv=.tools/bench-venv
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$venv/bin/pip" install --quiet \
    "onnxruntime==1.31.1" "tokenizers==0.23.3" "numpy==2.4.6"
cargo build --release --quiet -p offpath-classifier --example passes
count() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*Collected : //p'; }
r1=$(count target/release/examples/passes 1 "$batch")
r3=$(count target/release/examples/passes 3 "$batch")
p1=$(count "$venv/bin/python" benches/python_passes.py 1 "$batch")
p3=$(count "$venv/bin/python" benches/python_passes.py 3 "$batch")
echo "instructions per pass (batch $batch): rust $(( (r3 - r1) / 2 )) python $(( (p3 - p1) / 2 ))"
