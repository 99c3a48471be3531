#!/usr/bin/env bash
# Models side by side at the moderator's default settings, in one run: the criterion group
# `defaults` (services/lib/classifier/benches/main.rs: 2 inference threads, 1 intra-op
# thread each, batches of 32 split into length-grouped runs of <= 16 texts and <= 512 padded
# tokens) for each model in turn, for ROUNDS rounds (default 3) with the order rotated each
# round; medians and ratios to the first model are printed. The machine is shared and
# noisy: compare ratios from one run, not figures from different runs.
#
#   benches/compare_models.sh                    # previous minilm-insult vs the current one
#   benches/compare_models.sh a=dir b=dir …      # any model directories (label=dir)
#
# The previous model is the committed minilm-insult of the revision before the last change
# to its manifest (override with OLD_REV=<rev>), unpacked into a temporary directory.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap
rounds="${ROUNDS:-3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
models=("$@")
if [[ ${#models[@]} -eq 0 ]]; then
    rev="${OLD_REV:-$(git log -n1 --format=%H -- models/minilm-insult/model.toml)~1}"
    mkdir -p "$tmp/previous"
    for f in model.toml model.onnx tokenizer.json; do
        git show "$rev:models/minilm-insult/$f" >"$tmp/previous/$f"
    done
    echo "previous: minilm-insult at $(git rev-parse --short "$rev")" >&2
    models=("previous=$tmp/previous" "current=models/minilm-insult")
fi
cargo bench -p offpath-classifier --bench main --no-run 2>/dev/null
log="$tmp/log"
for round in $(seq "$rounds"); do
    echo "round $round/$rounds" >&2
    n=${#models[@]}
    for i in $(seq 0 $((n - 1))); do
        spec="${models[$(((i + round - 1) % n))]}"
        label="${spec%%=*}" dir="${spec#*=}"
        # Relative directories are read from the repository root.
        OFFPATH_BENCH_MODELS="$label=$dir" \
            cargo bench -p offpath-classifier --bench main -- defaults --warm-up-time 1 \
            --measurement-time 5 2>/dev/null |
            awk '/^defaults\//{name=$1} /thrpt:/ && name {
                v=$4; if ($5 ~ /^K/) v*=1000; print substr(name, 10) ": " v " msg/s"; name=""}' \
                >>"$log"
    done
done
python3 - "$log" "${models[@]%%=*}" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+): ([\d.]+) msg/s", line.strip())
    if m:
        runs.setdefault(m[1], []).append(float(m[2]))
labels = sys.argv[2:]
base = statistics.median(runs[labels[0]])
print(f"{'model':16} {'msg/s':>8} {'ratio':>7}   (medians; rounds) vs {labels[0]}")
for label in labels:
    med = statistics.median(runs[label])
    print(f"{label:16} {med:8.0f} {med / base:7.2f}   {[round(x) for x in runs[label]]}")
PY
