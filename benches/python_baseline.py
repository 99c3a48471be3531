"""The same batches as the Rust `classifier` benchmark, through Python onnxruntime and the
Python tokenizers: messages/s of tokenize + infer, for benches/compare.sh."""

import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

root = Path(__file__).resolve().parents[1]
model_dir = root / "models" / "minilm-insult"
texts = [c["text"] for c in json.loads((root / "models/fixtures/parity.json").read_text())["cases"]]
tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
opts = ort.SessionOptions()
opts.intra_op_num_threads = 2
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(str(model_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def infer(batch):
    enc = [tok.encode(t) for t in batch]
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = e.attention_mask
    sess.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})


def arrival(batch):
    for i in range(0, len(texts), batch):
        infer(texts[i:i + batch])


def grouped(batch):
    lengths = [len(tok.encode(t).ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    for i in range(0, len(order), batch):
        infer([texts[j] for j in order[i:i + batch]])


def measure(fn, batch, seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 5.0):
    fn(batch)  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(batch)
        runs += 1
    return runs * len(texts) / (time.perf_counter() - start)


for batch in (1, 8, 32):
    print(f"python minilm/arrival_order/batch_{batch}: {measure(arrival, batch):.0f} msg/s", flush=True)
    if batch > 1:
        print(f"python minilm/length_grouped/batch_{batch}: {measure(grouped, batch):.0f} msg/s", flush=True)
