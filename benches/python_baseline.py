"""The same batches as the Rust `classifier` benchmark, through Python onnxruntime and the
Python tokenizers: messages/s of tokenize + infer, for benches/compare.sh."""

import sys
import time

from python_minilm import Scorer, texts

scorer = Scorer(threads=2)


def measure(fn, batch, seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 5.0):
    fn(batch)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(batch)
        runs += 1
    return runs * len(texts) / (time.perf_counter() - start)


for batch in (1, 8, 32):
    print(f"python minilm/arrival_order/batch_{batch}: {measure(scorer.arrival, batch):.0f} msg/s", flush=True)
    if batch > 1:
        print(f"python minilm/length_grouped/batch_{batch}: {measure(scorer.grouped, batch):.0f} msg/s", flush=True)
