"""Batch invariance, quality and agreement with fp32 of each way to ship minilm-insult
(issue 15, section 1). Run after build.sh (it needs .tools/model-work/minilm-insult-fp32.onnx
and the venv): `.tools/model-venv/bin/python models/build/candidates.py`.

Candidates, all from the same fp32 graph and head:
* dynamic: the previous shipped model, int8 dynamic per-channel (MatMul + Gather), batched;
* dynamic-b1: the same file, each text run alone (no neighbours, no padding);
* fp32: no quantization, ORT graph optimisations (ORT_ENABLE_ALL);
* static: int8 QDQ, per-channel weights, activation scales calibrated on train.csv;
* nbits8: weight-only 8-bit MatMulNBits (activations stay float);
* weights8: int8 weights turned back into fp32 at session creation (Cast, Mul): fp32
  arithmetic, a quarter of the file size (v2's MiniLM half);
* static7: static int8 arithmetic with 7-bit weights on a 2-D, fused-QKV graph
  (`static7.py`), the file build.sh leaves in .tools/model-work (v3's MiniLM half).

For each: max |score(batch 1) - score(in a batch)| over the parity fixture's texts placed in
several batches of random test-split neighbours (padded to the longest), ROC-AUC on
test_with_solutions.csv, embedding cosine and max |Δscore| to fp32. Writes candidate model
directories (model.toml + model.onnx + tokenizer.json) under .tools/model-work/candidates
for the Rust side-by-side speed run (benches/compare_models.sh), and the figures to
models/build/candidates.json."""

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).parent))
import build  # noqa: E402
import data  # noqa: E402
import quantize  # noqa: E402

CANDIDATES = build.WORK / "candidates"
# Batch shapes a text meets in the moderator: runs of up to 16 (--sub-batch) under a 512
# padded-token budget, plus 4 and a full 32; each batch gets 0-3 random test-split
# neighbours, so most fixture texts are padded and move to other rows.
BATCH_SIZES = (4, 16, 32)


def fixture_batches(fixture, pool, seed=0):
    """[[(fixture index or None, text)]]: every fixture text once per batch size."""
    rng = random.Random(seed)
    batches = []
    for size in BATCH_SIZES:
        order = list(range(len(fixture)))
        rng.shuffle(order)
        for start in range(0, len(order), size):
            rows = [(i, fixture[i]) for i in order[start:start + size]]
            for _ in range(rng.randrange(4)):
                rows.insert(rng.randrange(len(rows) + 1), (None, rng.choice(pool)))
            batches.append(rows)
    return batches


def infer(sess, tok, texts, rows_per_run):
    """(probabilities, embeddings) of one batch, as the classifier runs it."""
    step = rows_per_run or len(texts)
    probs, embs = [], []
    for start in range(0, len(texts), step):
        ids, mask = build.encode_batch(tok, texts[start:start + step])
        p, e = sess.run(["probabilities", "embedding"], {"input_ids": ids, "attention_mask": mask})
        probs.append(p[:, 0])
        embs.append(e)
    return np.concatenate(probs), np.concatenate(embs)


def max_batch_delta(sess, tok, fixture, batches, rows_per_run):
    alone = [infer(sess, tok, [t], None)[0][0] for t in fixture]
    worst = (0.0, "")
    for rows in batches:
        got = infer(sess, tok, [t for _, t in rows], rows_per_run)[0]
        for (i, _), score in zip(rows, got):
            if i is not None and abs(float(score) - float(alone[i])) > worst[0]:
                worst = (abs(float(score) - float(alone[i])), fixture[i])
    return worst


def grouped(sess, tok, texts, rows_per_run, batch=16):
    """Test-split scores and embeddings in length-grouped batches, input order."""
    order = sorted(range(len(texts)), key=lambda i: len(tok.encode(texts[i]).ids))
    probs, embs = np.zeros(len(texts)), np.zeros((len(texts), 384))
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        p, e = infer(sess, tok, [texts[i] for i in idx], rows_per_run)
        probs[idx], embs[idx] = p, e
    return probs, embs


def write_dir(name, onnx_path, tok_path, rows_per_run=None):
    d = CANDIDATES / name
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tok_path, d / "tokenizer.json")
    if (d / "model.onnx").exists() or (d / "model.onnx").is_symlink():
        (d / "model.onnx").unlink()
    (d / "model.onnx").symlink_to(Path(onnx_path).resolve())
    head = json.loads((build.ROOT / "models/build/figures.json").read_text())["head"]
    rows = f"rows_per_run = {rows_per_run}\n" if rows_per_run else ""
    (d / "model.toml").write_text(f'''name = "minilm-insult-{name}"
version = "candidate"
kind = "token_ids"
file = "model.onnx"
tokenizer = "tokenizer.json"
max_tokens = 256
{rows}
[inputs]
input_ids = "input_ids"
attention_mask = "attention_mask"

[output]
name = "probabilities"

[[labels]]
name = "insult"
column = 0
flag = {head["flag"]}
block = {head["block"]}

[sha256]
"model.onnx" = "{build.sha256(onnx_path)}"
"tokenizer.json" = "{build.sha256(tok_path)}"
''')


def main():
    only = {a for a in sys.argv[1:] if not a.startswith("--")}
    train, test = data.load("train.csv"), data.load("test_with_solutions.csv")
    tok_path = build.ROOT / "models/minilm-insult/tokenizer.json"
    tok = build.write_tokenizer(build.WORK / "tokenizer.json")
    fp32_path = build.WORK / "minilm-insult-fp32.onnx"
    CANDIDATES.mkdir(parents=True, exist_ok=True)
    paths = {"fp32": fp32_path, "dynamic": CANDIDATES / "dynamic.onnx",
             "static": CANDIDATES / "static.onnx", "nbits8": CANDIDATES / "nbits8.onnx",
             "weights8": CANDIDATES / "weights8.onnx",
             "static7": build.WORK / "minilm-insult-static7.onnx"}
    wanted = lambda *names: not only or any(n in only for n in names)  # noqa: E731
    if wanted("dynamic", "dynamic-b1"):
        quantize.dynamic(fp32_path, paths["dynamic"])
    if wanted("weights8"):
        quantize.weights8(fp32_path, paths["weights8"])
    if wanted("static"):
        quantize.static(fp32_path, paths["static"], tok, train[0])
    if wanted("nbits8"):
        try:
            quantize.nbits8(fp32_path, paths["nbits8"])
        except ModuleNotFoundError as err:  # the quantizer needs onnx_ir, not in requirements.txt
            print(f"nbits8 skipped: {err}")
            only = (only or {"dynamic", "dynamic-b1", "fp32", "static"}) - {"nbits8"}

    fixture = data.fixture_strings()
    batches = fixture_batches(fixture, test[0])
    y_test = np.array(test[1])
    # `--no-reference` skips the fp32 pass over the test split (slow on a loaded machine);
    # the agreement columns are then left out.
    reference = "--no-reference" not in sys.argv
    if reference:
        p_fp32, e_fp32 = grouped(build.session(fp32_path), tok, test[0], None)
    results = {}
    for name, file, rows in (("dynamic", "dynamic", None), ("dynamic-b1", "dynamic", 1),
                             ("fp32", "fp32", None), ("static", "static", None),
                             ("nbits8", "nbits8", None), ("weights8", "weights8", None),
                             ("static7", "static7", None)):
        if only and name not in only:
            continue
        write_dir(name, paths[file], tok_path, rows)
        sess = build.session(paths[file])
        delta, worst_text = max_batch_delta(sess, tok, fixture, batches, rows)
        p, e = grouped(sess, tok, test[0], rows)
        results[name] = {
            "file_mb": round(Path(paths[file]).stat().st_size / 1e6, 1),
            "max_batch_delta": delta, "worst_text": worst_text[:60],
            "roc_auc": float(build.roc_auc_score(y_test, p)),
        }
        if reference:
            cos = (e * e_fp32).sum(1)
            results[name].update({"cos_fp32_min": float(cos.min()), "cos_fp32_mean": float(cos.mean()),
                                  "score_fp32_max_delta": float(np.abs(p - p_fp32).max())})
        print(name, json.dumps(results[name]), flush=True)
        # Written after each candidate: a long run keeps what it measured.
        out = build.ROOT / "models/build/candidates.json"
        previous = json.loads(out.read_text()) if out.exists() else {}
        previous.update(results)
        out.write_text(json.dumps(previous, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
