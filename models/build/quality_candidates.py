"""The candidates weighed for the insult ensemble, on train only (5-fold out-of-fold
ROC-AUC; stacks by a second 5-fold CV over the out-of-fold logits). No test data is read.

Run after models/build/charngram.py (which caches the fp32 MiniLM train embeddings):
    .tools/model-venv/bin/python models/build/quality_candidates.py 1,3"""
import sys, time, json, numpy as np
sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
import data, charngram
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.metrics import roc_auc_score

X, y = data.load("train.csv"); y = np.array(y)
E = np.load(data.ROOT / ".tools/model-work/minilm-fp32-train-embedding.npy")
folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
meta_folds = list(StratifiedKFold(5, shuffle=True, random_state=1).split(X, y))

def oof_dense(c, x):
    o = np.zeros(len(y))
    for tr, va in folds:
        o[va] = LogisticRegression(C=c, max_iter=5000).fit(x[tr], y[tr]).decision_function(x[va])
    return o

res = {}
t0 = time.time(); mini = oof_dense(1.0, E); print(f"minilm head C=1 OOF AUC {roc_auc_score(y, mini):.4f} ({time.time()-t0:.0f}s)", flush=True)
chars = {}
for c in [float(a) for a in sys.argv[1].split(",")]:
    t0 = time.time(); chars[c] = charngram.out_of_fold(X, y, folds, c)
    print(f"char(1-5, custom analyzer) C={c} OOF AUC {roc_auc_score(y, chars[c]):.4f} ({time.time()-t0:.0f}s)", flush=True)
cc = max(chars, key=lambda c: roc_auc_score(y, chars[c])); char = chars[cc]
def word_vec(): return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b")
word = np.zeros(len(y)); t0 = time.time()
for tr, va in folds:
    v = word_vec(); m = LogisticRegression(C=10, max_iter=5000).fit(v.fit_transform([X[i] for i in tr]), y[tr])
    word[va] = m.decision_function(v.transform([X[i] for i in va]))
print(f"word(1-2) C=10 OOF AUC {roc_auc_score(y, word):.4f} ({time.time()-t0:.0f}s)", flush=True)

def meta_cv(z):
    o = np.zeros(len(y))
    for tr, va in meta_folds:
        o[va] = LogisticRegression(C=1.0, max_iter=1000).fit(z[tr], y[tr]).decision_function(z[va])
    return roc_auc_score(y, o), o
cands = {"minilm+char": np.column_stack([mini, char]), "minilm+word": np.column_stack([mini, word]),
         "minilm+char+word": np.column_stack([mini, char, word]), "char+word": np.column_stack([char, word])}
for k, z in cands.items():
    print(f"stack {k}: meta-CV AUC {meta_cv(z)[0]:.4f}; weights {LogisticRegression(C=1.0, max_iter=1000).fit(z, y).coef_[0].round(3)}", flush=True)
zs = (mini - mini.mean()) / mini.std(), (char - char.mean()) / char.std()
print(f"equal-weight z-score average minilm+char OOF AUC {roc_auc_score(y, zs[0] + zs[1]):.4f}")
# concatenated features: embedding (scaled) + char tfidf in one LR
from scipy.sparse import hstack, csr_matrix
for scale in (1.0, 3.0):
    o = np.zeros(len(y))
    for tr, va in folds:
        v = charngram.vectorizer(); xtr = hstack([v.fit_transform([X[i] for i in tr]), csr_matrix(E[tr] * scale)]).tocsr()
        m = LogisticRegression(C=cc, max_iter=5000).fit(xtr, y[tr])
        o[va] = m.decision_function(hstack([v.transform([X[i] for i in va]), csr_matrix(E[va] * scale)]).tocsr())
    print(f"concat char tfidf + {scale}*embedding, one LR C={cc}: OOF AUC {roc_auc_score(y, o):.4f}", flush=True)
