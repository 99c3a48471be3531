"""minilm-insult through Python onnxruntime and the Python tokenizers, scoring the parity
fixture's texts the way the Rust classifier does: shared by python_baseline.py (seconds)
and python_passes.py (instructions)."""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

root = Path(__file__).resolve().parents[1]
model_dir = root / "models" / "minilm-insult"
texts = [c["text"] for c in json.loads((root / "models/fixtures/parity.json").read_text())["cases"]]
tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))


def token_text(enc, text):
    """The classifier's rule (models/build/ensemble.py `token_text`): the text whole, or up
    to its last kept token when truncated; NUL as a space."""
    if enc.overflowing:
        ends = [end for (_, end), special in zip(enc.offsets, enc.special_tokens_mask) if not special]
        text = text[:max(ends)] if ends else ""
    return text.replace("\0", " ")


class Scorer:
    """One session with `threads` intra-op threads."""

    def __init__(self, threads):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(model_dir / "model.onnx"), opts,
                                         providers=["CPUExecutionProvider"])
        self.reads_text = "text" in {i.name for i in self.sess.get_inputs()}

    def infer(self, batch):
        enc = [tok.encode(t) for t in batch]
        width = max(len(e.ids) for e in enc)
        ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = e.ids
            mask[i, : len(e.ids)] = e.attention_mask
        feed = {"input_ids": ids, "attention_mask": mask}
        if self.reads_text:  # the ensemble (v2): the text each row was made from, as Rust feeds it
            feed["text"] = np.array([token_text(e, t) for e, t in zip(enc, batch)], dtype=object)
        self.sess.run(["probabilities"], feed)

    def arrival(self, batch):
        """All texts in arrival order, `batch` at a time (1: one text per run)."""
        for i in range(0, len(texts), batch):
            self.infer(texts[i:i + batch])

    def grouped(self, batch):
        """All texts sorted by token length, `batch` at a time."""
        lengths = [len(tok.encode(t).ids) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i])
        for i in range(0, len(order), batch):
            self.infer([texts[j] for j in order[i:i + batch]])
