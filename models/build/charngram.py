"""A character n-gram TF-IDF + logistic-regression insult model as an ONNX graph with a
string input, and the stacking step that merges it onto the MiniLM graph so that one model
directory scores insults from both views.

Why not skl2onnx: its TfidfVectorizer converter refuses analyzer='char_wb' and only warns
for 'char', whose scikit-learn analyzer also collapses whitespace runs (no ONNX op does
that). So the analyzer here is defined as what ONNX can compute exactly, and scikit-learn's
TfidfVectorizer is given the same analyzer as a callable:

    lowercase (StringNormalizer, locale C.UTF-8) → code points (Tokenizer, regex `(?s).`)
    → every substring of MIN_N..MAX_N code points, present or not × idf (TfIdfVectorizer op,
    mode IDF) → L2 normalisation → linear → logit

Binary tf, not sublinear: as good on train (5-fold out-of-fold ROC-AUC 0.9045 against
0.9030 at C=3) and it needs no elementwise logarithm over the dense [batch, vocabulary]
tensor, which made the sublinear graph several times slower than the n-gram op itself.

Graph input `text` (string [N]); output `char_logit` (float [N, 1]).
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

MIN_N, MAX_N = 1, 5
MIN_DF = 2
PAD = "<pad>"  # Tokenizer padding: longer than one code point, so it matches no n-gram
MS_DOMAIN = "com.microsoft"


# StringNormalizer lowercases code point by code point (towlower): the same as Python's
# per-character str.lower() except for U+0130 (Python: "i" + combining dot) and with no
# final-sigma rule. Checked over U+0020..U+2FFFF with onnxruntime 1.31.
LOWER = {"\u0130": "i"}


def analyzer(text: str):
    """The reference analyzer: lowercase code point by code point, then every substring of
    MIN_N..MAX_N code points, whitespace kept as it is (the ONNX graph computes exactly this)."""
    t = "".join(LOWER.get(ch) or ch.lower() for ch in text)
    return [t[i:i + n] for n in range(MIN_N, MAX_N + 1) for i in range(len(t) - n + 1)]


def vectorizer():
    return TfidfVectorizer(analyzer=analyzer, binary=True, min_df=MIN_DF, dtype=np.float32)


def fit(texts, labels, c):
    """(vectorizer, logistic regression) fitted on `texts`."""
    vec = vectorizer()
    x = vec.fit_transform(texts)
    model = LogisticRegression(C=c, max_iter=5000).fit(x, labels)
    return vec, model


def build_graph(vec, model, prefix="char_", output="char_logit") -> onnx.ModelProto:
    """ONNX graph computing `model.decision_function(vec.transform(text))` as `output`."""
    vocab = vec.vocabulary_
    grams = sorted(vocab, key=lambda g: (len(g), g))
    # ngram_counts are offsets into the pool of *tokens* (code points), one per n-gram length.
    offsets, pool, start = [], [], 0
    for n in range(1, MAX_N + 1):
        offsets.append(start)
        members = [g for g in grams if len(g) == n]
        for g in members:
            pool.extend(g)
        start += n * len(members)
    index = [vocab[g] for g in grams]
    p = prefix
    idf = vec.idf_.astype(np.float32)
    # [coef, idf]: with binary tf an n-gram's value is its idf or 0, so x · idf = Σ x²; one
    # MatMul gives both the dot product and the squared norm (ReduceSumSquare over the dense
    # [batch, vocabulary] tensor was a second pass over it)
    coef = np.column_stack([model.coef_[0].astype(np.float32), idf])
    inits = [
        numpy_helper.from_array(coef, f"{p}coef"),
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), f"{p}halves"),
        numpy_helper.from_array(np.array([model.intercept_[0]], dtype=np.float32), f"{p}intercept"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), f"{p}eps"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{p}flat"),
    ]
    n = lambda s: f"{p}{s}"  # noqa: E731
    nodes = [
        helper.make_node("Reshape", ["text", n("flat")], [n("text_flat")], name=n("reshape")),
        helper.make_node("StringNormalizer", [n("text_flat")], [n("lower")], name=n("lower"),
                         case_change_action="LOWER", is_case_sensitive=0, locale="C.UTF-8"),
        helper.make_node("Tokenizer", [n("lower")], [n("chars")], name=n("chars"), domain=MS_DOMAIN,
                         mark=0, mincharnum=1, pad_value=PAD, tokenexp="(?s)."),
        # mode IDF: weight (the idf) where the n-gram occurs at least once, else 0
        helper.make_node("TfIdfVectorizer", [n("chars")], [n("tfidf")], name=n("tfidf"), mode="IDF",
                         min_gram_length=MIN_N, max_gram_length=MAX_N, max_skip_count=0,
                         ngram_counts=offsets, ngram_indexes=index, pool_strings=pool,
                         weights=[float(idf[i]) for i in index]),
        # coef · (x / |x|) = (coef · x) / |x|: normalise the [batch, 1] product, not the vector
        helper.make_node("MatMul", [n("tfidf"), n("coef")], [n("mm_sq")], name=n("mm_sq")),
        helper.make_node("Split", [n("mm_sq"), n("halves")], [n("mm"), n("sq")], name=n("split"), axis=1),
        helper.make_node("Sqrt", [n("sq")], [n("norm")], name=n("norm")),
        helper.make_node("Max", [n("norm"), n("eps")], [n("norm_safe")], name=n("norm_safe")),
        helper.make_node("Div", [n("mm"), n("norm_safe")], [n("dot")], name=n("dot")),
        helper.make_node("Add", [n("dot"), n("intercept")], [output], name=n("logit")),
    ]
    graph = helper.make_graph(
        nodes, "char_ngram_insult",
        [helper.make_tensor_value_info("text", TensorProto.STRING, ["batch"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 1])],
        inits)
    model_proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="offpath-models-build")
    model_proto.ir_version = 8
    onnx.checker.check_model(model_proto)
    return model_proto


def merge(minilm: onnx.ModelProto, char: onnx.ModelProto, weights) -> onnx.ModelProto:
    """One graph with inputs input_ids, attention_mask and text whose `probabilities`
    [batch, 1] is sigmoid(w_minilm · minilm_logit + w_char · char_logit + bias).

    `minilm` is any graph with those two token inputs whose output `probabilities` is made
    by a Sigmoid node (as minilm.append_head writes it; quantized variants keep that node).
    `weights` = (w_minilm, w_char, bias) from `stack`."""
    merged = onnx.ModelProto()
    merged.CopyFrom(minilm)
    g = merged.graph
    sig = [node for node in g.node if list(node.output) == ["probabilities"]]
    if len(sig) != 1 or sig[0].op_type != "Sigmoid":
        raise ValueError("expected one Sigmoid node writing `probabilities`")
    minilm_logit = sig[0].input[0]
    g.node.remove(sig[0])
    names = {node.name for node in g.node} | {t.name for t in g.initializer}
    clash = names & ({node.name for node in char.graph.node} | {t.name for t in char.graph.initializer})
    if clash:
        raise ValueError(f"name clash between the graphs: {sorted(clash)[:5]}")
    g.input.extend(char.graph.input)
    g.initializer.extend(char.graph.initializer)
    g.node.extend(char.graph.node)
    w_minilm, w_char, bias = (float(v) for v in weights)
    g.initializer.extend([
        numpy_helper.from_array(np.array(w_minilm, dtype=np.float32), "stack_w_minilm"),
        numpy_helper.from_array(np.array(w_char, dtype=np.float32), "stack_w_char"),
        numpy_helper.from_array(np.array(bias, dtype=np.float32), "stack_bias"),
    ])
    g.node.extend([
        helper.make_node("Mul", [minilm_logit, "stack_w_minilm"], ["stack_a"], name="stack_a"),
        helper.make_node("Mul", ["char_logit", "stack_w_char"], ["stack_b"], name="stack_b"),
        helper.make_node("Add", ["stack_a", "stack_b"], ["stack_ab"], name="stack_ab"),
        helper.make_node("Add", ["stack_ab", "stack_bias"], ["stack_logit"], name="stack_logit"),
        helper.make_node("Sigmoid", ["stack_logit"], ["probabilities"], name="stack_sigmoid"),
    ])
    domains = {o.domain for o in merged.opset_import}
    if MS_DOMAIN not in domains:
        merged.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    onnx.checker.check_model(merged)
    return merged


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def out_of_fold(texts, labels, folds, c):
    """Out-of-fold char logits on train: each fold scored by a model fitted without it."""
    oof = np.zeros(len(labels))
    for tr, va in folds:
        vec, model = fit([texts[i] for i in tr], labels[tr], c)
        oof[va] = model.decision_function(vec.transform([texts[i] for i in va]))
    return oof


def stack(minilm_oof_logit, char_oof_logit, labels):
    """(w_minilm, w_char, bias): a logistic regression on the two out-of-fold logits."""
    z = np.column_stack([minilm_oof_logit, char_oof_logit])
    meta = LogisticRegression(C=1.0, max_iter=1000).fit(z, labels)
    return (float(meta.coef_[0][0]), float(meta.coef_[0][1]), float(meta.intercept_[0]))


CHAR_CS = (1.0, 3.0, 10.0)  # C of the char model, chosen by 5-fold out-of-fold ROC-AUC on train


def select(texts, labels, minilm_oof_logit, folds):
    """Everything decided on train only: the char model's C (out-of-fold ROC-AUC), the
    stacking weights (on out-of-fold logits), and the ensemble's flag/block thresholds."""
    from sklearn.metrics import roc_auc_score
    from thresholds import best_f1_threshold, fpr_threshold
    best = None
    for c in CHAR_CS:
        oof = out_of_fold(texts, labels, folds, c)
        auc = roc_auc_score(labels, oof)
        print(f"  char C={c}: 5-fold out-of-fold ROC-AUC {auc:.4f}", flush=True)
        if best is None or auc > best[1]:
            best = (c, auc, oof)
    c, char_auc, char_oof = best
    weights = stack(minilm_oof_logit, char_oof, labels)
    # the ensemble's out-of-fold probabilities: every base logit came from a model that did
    # not see the row; the three stacking weights are the only parameters fitted on them all
    z = weights[0] * minilm_oof_logit + weights[1] * char_oof + weights[2]
    prob = 1 / (1 + np.exp(-z))
    flag, f1 = best_f1_threshold(labels, prob)
    block = max(fpr_threshold(labels, prob, 0.01), flag)
    info = {"char_C": c, "char_cv_auc": char_auc, "minilm_cv_auc": roc_auc_score(labels, minilm_oof_logit),
            "stack_cv_auc": roc_auc_score(labels, z), "weights": weights, "oof_f1": f1,
            "flag": round(flag, 4), "block": round(block, 4)}
    print(f"  stack: {info}", flush=True)
    # the stacked logit of every train row from models that did not see it (the harm
    # categories' heads read the stacked logit and must not learn from in-sample values)
    info["oof_logit"] = z
    return info


def main():
    """Selects and builds the char model and the ensemble against the fp32 MiniLM graph that
    models/build/build.sh leaves in .tools/model-work, scores the merged graph once on the
    test split, and writes .tools/model-work/{char-insult.onnx, minilm-char-fp32.onnx,
    stack.json}. Run with the model venv: .tools/model-venv/bin/python models/build/charngram.py"""
    import json
    import sys
    import time
    from pathlib import Path
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from tokenizers import Tokenizer
    sys.path.insert(0, str(Path(__file__).parent))
    import build
    import data
    work = build.WORK
    train, test = data.load("train.csv"), data.load("test_with_solutions.csv")
    y, y_test = np.array(train[1]), np.array(test[1])
    tok = Tokenizer.from_file(str(build.OUT / "minilm-insult" / "tokenizer.json"))
    fp32_path = work / "minilm-insult-fp32.onnx"
    cache = work / "minilm-fp32-train-embedding.npy"
    if cache.exists():
        emb = np.load(cache)
    else:
        emb = build.run(build.session(fp32_path, threads=2), tok, train[0], "embedding")
        np.save(cache, emb)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(train[0], y))
    minilm_oof = np.zeros(len(y))
    for tr, va in folds:  # the head as build.train_head chose it (C=1.0)
        head = LogisticRegression(C=1.0, max_iter=5000).fit(emb[tr], y[tr])
        minilm_oof[va] = head.decision_function(emb[va])
    info = select(train[0], y, minilm_oof, folds)

    t0 = time.time()
    vec, char_model = fit(train[0], y, info["char_C"])
    char = build_graph(vec, char_model)
    onnx.save(char, str(work / "char-insult.onnx"))
    merged = merge(onnx.load(str(fp32_path)), char, info["weights"])
    merged_path = work / "minilm-char-fp32.onnx"
    onnx.save(merged, str(merged_path))
    print(f"char model fitted and both graphs written in {time.time() - t0:.0f} s", flush=True)

    # Scored once on the test split, through the merged graph, batches grouped by length.
    sess = build.session(merged_path, threads=2)
    order = sorted(range(len(test[0])), key=lambda i: len(tok.encode(test[0][i]).ids))
    p = np.zeros(len(order))
    for s in range(0, len(order), 32):
        idx = order[s:s + 32]
        texts = [test[0][i] for i in idx]
        ids, mask = build.encode_batch(tok, texts)
        p[idx] = sess.run(["probabilities"], {"input_ids": ids, "attention_mask": mask,
                                              "text": np.array(texts, dtype=object)})[0][:, 0]
    # the merged graph against its parts computed outside it (sklearn char + fp32 head logit)
    head_sess = build.session(fp32_path, threads=2)
    head_p = build.run(head_sess, tok, test[0], "probabilities")[:, 0]
    char_p = 1 / (1 + np.exp(-char_model.decision_function(vec.transform(test[0]))))
    w = info["weights"]
    expect = 1 / (1 + np.exp(-(w[0] * logit(head_p) + w[1] * logit(char_p) + w[2])))
    figures = {**info, "test_auc_merged_fp32": float(roc_auc_score(y_test, p)),
               "test_auc_minilm_fp32": float(roc_auc_score(y_test, head_p)),
               "test_auc_char": float(roc_auc_score(y_test, char_p)),
               "merged_vs_parts_max_diff": float(np.abs(p - expect).max()),
               "char_vocab": len(vec.vocabulary_), "char_onnx_mb": (work / "char-insult.onnx").stat().st_size / 1e6}
    (work / "stack.json").write_text(json.dumps(figures, indent=1) + "\n")
    print("figures:", json.dumps(figures))


if __name__ == "__main__":
    main()
