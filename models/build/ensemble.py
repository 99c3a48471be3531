"""Ships the insult ensemble (issue 15, section 4): the character n-gram model of
`charngram.py` stacked onto the *shipped* (quantized) MiniLM graph and merged into one
`model.onnx` with inputs input_ids, attention_mask and text.

Everything is decided on train.csv only. The stacking weights and thresholds are fitted on
out-of-fold logits of the MiniLM head as it ships: in each of the head's 5 folds (the same
split as `build.train_head`), a head fitted on the fp32 embeddings of the other folds — the
shipped head is fitted on fp32 embeddings too — scores the quantized graph's embeddings of the
held-out fold. The head is fp32 in the quantized graph, so that logit is exactly what the
shipped graph would compute for a head trained without the row."""

import time

import numpy as np
import onnx
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

import charngram


def token_text(tok, text):
    """The text the token inputs are made from, as the `text` input gets it (the Rust
    classifier's rule, services/lib/classifier/src/model.rs): the text whole, or, when the
    tokenizer truncated it, up to the end of the last token kept. NUL becomes a space (a
    C string cannot hold it)."""
    enc = tok.encode(text)
    if enc.overflowing:
        ends = [end for (_, end), special in zip(enc.offsets, enc.special_tokens_mask) if not special]
        text = text[:max(ends)] if ends else ""
    return text.replace("\0", " ")


def minilm_oof_logits(x_fp32, e_q, y, c):
    """Out-of-fold logits of the shipped head: fitted on fp32 embeddings without the fold,
    applied to the fold's quantized embeddings. Also the folds (reused by the char model)."""
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x_fp32, y))
    oof = np.zeros(len(y))
    for tr, va in folds:
        head = LogisticRegression(C=c, max_iter=5000).fit(x_fp32[tr], y[tr])
        oof[va] = head.decision_function(e_q[va])
    return oof, folds


def build(q_path, merged_path, e_q_train, x_fp32_train, train, head_c):
    """Selects the char model and the stack on train, writes the merged graph to
    `merged_path`; returns the selection figures (`charngram.select`) plus sizes."""
    y = np.array(train[1])
    minilm_oof, folds = minilm_oof_logits(x_fp32_train, e_q_train, y, head_c)
    t0 = time.time()
    info = charngram.select(train[0], y, minilm_oof, folds)
    vec, char_model = charngram.fit(train[0], y, info["char_C"])
    char = charngram.build_graph(vec, char_model)
    merged = charngram.merge(onnx.load(str(q_path)), char, info["weights"])
    onnx.save(merged, str(merged_path))
    print(f"ensemble: char model selected and merged in {time.time() - t0:.0f} s", flush=True)
    info["char_vocab"] = len(vec.vocabulary_)
    info["char_mb"] = len(char.SerializeToString()) / 1e6
    info["weights"] = [float(w) for w in info["weights"]]
    info["char_model"] = (vec, char_model)
    return info


def parts_check(merged_sess, q_sess, run, tok, texts, info):
    """Max |merged - sigmoid(w · (head logit, char logit) + b)| over `texts`: the merged
    graph against its parts computed outside it (scikit-learn char model, quantized head)."""
    vec, char_model = info["char_model"]
    p = run(merged_sess, tok, texts, "probabilities")[:, 0]
    head_p = run(q_sess, tok, texts, "probabilities")[:, 0]
    char_z = char_model.decision_function(vec.transform([token_text(tok, t) for t in texts]))
    w = info["weights"]
    z = w[0] * charngram.logit(head_p) + w[1] * char_z + w[2]
    return float(np.abs(p - 1 / (1 + np.exp(-z))).max())
