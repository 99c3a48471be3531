"""alt-profanity-check (TfidfVectorizer + CalibratedClassifierCV(LinearSVC)) as one ONNX
graph with a string input, via skl2onnx. Two pitfalls handled: StringNormalizer's default
locale en_US.UTF-8 does not exist on Debian (set C.UTF-8), and skl2onnx's default token
pattern is ASCII-only (use the Unicode pattern [\\p{L}\\p{N}_]+ in RE2 syntax)."""

import joblib
import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

import profanity_check
from thresholds import best_f1_threshold, fpr_threshold

TOKEN_PATTERN = r"[\p{L}\p{N}_]+"
# Benign texts the shipped thresholds blocked (issue 15): the card reports their verdicts.
BENIGN = ["the idiot by dostoevsky is a great novel", "I hate mondays"]


def load_pipeline():
    from importlib import resources
    base = resources.files(profanity_check) / "data"
    vectorizer = joblib.load(base / "vectorizer.joblib")
    model = joblib.load(base / "model.joblib")
    return Pipeline([("tfidf", vectorizer), ("clf", model)])


def convert(pipeline):
    model = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None]))],
        options={TfidfVectorizer: {"tokenexp": TOKEN_PATTERN},
                 type(pipeline.steps[-1][1]): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    for node in model.graph.node:
        if node.op_type == "StringNormalizer":
            for attr in node.attribute:
                if attr.name == "locale":
                    attr.s = b"C.UTF-8"
            if not any(a.name == "locale" for a in node.attribute):
                node.attribute.append(onnx.helper.make_attribute("locale", "C.UTF-8"))
    model.producer_name = "offpath-models-build"
    # skl2onnx collects opset imports in a set: sort them so rebuilds are byte-identical.
    imports = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(imports)
    return model


def rates(labels, probs, threshold):
    """Precision, recall and false-positive rate of `probs >= threshold` against insult labels."""
    labels, hit = np.asarray(labels), np.asarray(probs) >= threshold
    tp, fp = int((hit & (labels == 1)).sum()), int((hit & (labels == 0)).sum())
    return {"precision": tp / max(tp + fp, 1), "recall": tp / int((labels == 1).sum()),
            "fpr": fp / int((labels == 0).sum())}


def calibrate(train, test, score):
    """flag at max F1 and block at a 1% false-positive rate on the non-insults of train.csv,
    which the package never saw (so no folds are needed); figures on the test split.

    Scores saturate near 1 (float32), so thresholds are kept as exact float32 values."""
    p_train, p_test = score(train[0]), score(test[0])
    flag, f1 = best_f1_threshold(train[1], p_train)
    block = max(fpr_threshold(train[1], p_train, 0.01), flag)
    cal = {"flag": flag, "block": block, "train_f1": f1,
           "test_flag": rates(test[1], p_test, flag), "test_block": rates(test[1], p_test, block),
           "test_old_block": rates(test[1], p_test, 0.8),
           "benign": {t: float(v) for t, v in zip(BENIGN, score(BENIGN))}}
    print(f"profanity thresholds from train: flag {flag!r} (max F1 {f1:.3f}), block {block!r} "
          f"(1% FPR); test at flag {cal['test_flag']}, at block {cal['test_block']}")
    return cal


def build(out, train, test, fixture):
    out.mkdir(parents=True, exist_ok=True)
    pipeline = load_pipeline()
    model = convert(pipeline)
    path = out / "model.onnx"
    onnx.save(model, str(path))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def score(texts):
        return sess.run(["probabilities"], {"text": np.array(texts, dtype=object)})[0][:, 1]

    check = list(fixture) + test[0]
    diff = np.abs(score(check) - pipeline.predict_proba(check)[:, 1])
    worst = int(np.argmax(diff))
    print(f"profanity: max |onnx - scikit-learn| = {diff.max():.2e} over {len(check)} texts "
          f"(worst: {check[worst][:40]!r}); 99.9th percentile {np.percentile(diff, 99.9):.2e}")
    auc = float(roc_auc_score(test[1], score(test[0])))
    print(f"profanity on the insults test split: ROC-AUC {auc:.4f}")
    return {"dir": out, "session": sess, "score": score, "max_diff": float(diff.max()),
            "p999_diff": float(np.percentile(diff, 99.9)), "roc_auc": auc,
            "size_mb": path.stat().st_size / 1e6, "vocab": len(pipeline.steps[0][1].vocabulary_),
            "cal": calibrate(train, test, score)}
