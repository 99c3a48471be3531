"""Decision thresholds from labelled scores: `flag` at the maximum F1, `block` at a measured
false-positive rate on the non-insults. Used for every label, always on train scores."""

import numpy as np
from sklearn.metrics import precision_recall_curve


def best_f1_threshold(labels, probs):
    precision, recall, thresholds = precision_recall_curve(labels, probs)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1[:-1]))
    return float(thresholds[best]), float(f1[best])


def fpr_threshold(labels, probs, fpr):
    """Score above which only a fraction `fpr` of the non-insults lie."""
    negatives = np.sort(np.asarray(probs)[np.asarray(labels) == 0])
    return float(negatives[int(np.ceil((1 - fpr) * len(negatives))) - 1])
