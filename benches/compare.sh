#!/usr/bin/env bash
# Rust vs Python on the same model, texts and batches, in one run. The machine is shared
# and noisy, so the two alternate for ROUNDS rounds (default 3) and the medians are
# compared: Python onnxruntime (3 s per case), then the Rust criterion group, and again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap
rounds="${ROUNDS:-3}"
venv=.tools/bench-venv
if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
fi
PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore "$venv/bin/pip" install --quiet \
    "onnxruntime==1.31.1" "tokenizers==0.23.3" "numpy==2.4.6"
cargo bench -p offpath-classifier --bench main --no-run 2>/dev/null
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for round in $(seq "$rounds"); do
    echo "round $round/$rounds" >&2
    "$venv/bin/python" benches/python_baseline.py 3 >>"$log"
    cargo bench -p offpath-classifier --bench main -- classifier --warm-up-time 1 --measurement-time 3 2>/dev/null \
        | awk '/^classifier\//{name=$1} /thrpt:/ && name {print "rust " substr(name, 12) ": " $4 " msg/s"; name=""}' >>"$log"
done
"$venv/bin/python" - "$log" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(python|rust) (\S+): ([\d.]+) msg/s", line.strip())
    if m:
        runs.setdefault((m[2], m[1]), []).append(float(m[3]))
print(f"{'case':34} {'rust':>8} {'python':>8} {'rust/python':>12}   (medians; all runs)")
for case in sorted({c for c, _ in runs}):
    r, p = runs.get((case, "rust"), []), runs.get((case, "python"), [])
    if r and p:
        mr, mp = statistics.median(r), statistics.median(p)
        print(f"{case:34} {mr:8.0f} {mp:8.0f} {mr / mp:12.2f}   rust {[round(x) for x in r]} python {[round(x) for x in p]}")
PY
