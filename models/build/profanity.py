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

TOKEN_PATTERN = r"[\p{L}\p{N}_]+"


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


def build(out, test, fixture):
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
            "size_mb": path.stat().st_size / 1e6, "vocab": len(pipeline.steps[0][1].vocabulary_)}
