"""The Python twin of `services/classifier/examples/passes.rs`, for benches/instructions.sh:
score the parity fixture `passes` times in batches of `batch` on one intra-op thread."""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

passes, batch = int(sys.argv[1]), int(sys.argv[2])
root = Path(__file__).resolve().parents[1]
model_dir = root / "models" / "minilm-insult"
texts = [c["text"] for c in json.loads((root / "models/fixtures/parity.json").read_text())["cases"]]
tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(str(model_dir / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def infer(items):
    enc = [tok.encode(t) for t in items]
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(items), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = e.attention_mask
    sess.run(["probabilities"], {"input_ids": ids, "attention_mask": mask})


for _ in range(passes):
    if batch == 1:
        for text in texts:
            infer([text])
    else:
        lengths = [len(tok.encode(t).ids) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        for i in range(0, len(order), batch):
            infer([texts[j] for j in order[i:i + batch]])
