"""Verification metrics.

Conventions: a *score* is a similarity (higher = more likely the same person); distances
are negated before they become scores. ``labels`` are 1 for genuine (same identity) and
0 for impostor pairs. ``folds`` are integer fold ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KFoldAccuracy:
    """LFW-style k-fold accuracy.

    ``mean`` and ``std`` are over folds; ``std`` is the *population* standard deviation
    (numpy's default, ddof=0), the convention of most LFW tables. ``thresholds[k]`` was
    chosen on all folds but k and applied to fold k.
    """

    mean: float
    std: float
    per_fold: np.ndarray
    thresholds: np.ndarray


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy of ``score >= t``; midpoints between sorted unique scores.

    Ties in accuracy are broken towards the lowest threshold.
    """
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2, [s[-1] + 1.0]])
    acc = [(np.asarray(scores >= t) == labels.astype(bool)).mean() for t in candidates]
    return float(candidates[int(np.argmax(acc))])


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> KFoldAccuracy:
    """Accuracy with the threshold chosen on the other folds (LFW View 2 protocol)."""
    scores, labels, folds = np.asarray(scores, float), np.asarray(labels).astype(bool), np.asarray(folds)
    if not (len(scores) == len(labels) == len(folds)):
        raise ValueError("scores, labels and folds must have the same length")
    ids = np.unique(folds)
    if len(ids) < 2:
        raise ValueError("k-fold accuracy needs at least 2 folds")
    per_fold, thresholds = [], []
    for k in ids:
        test = folds == k
        t = best_threshold(scores[~test], labels[~test])
        thresholds.append(t)
        per_fold.append(float(((scores[test] >= t) == labels[test]).mean()))
    per_fold_arr = np.array(per_fold)
    return KFoldAccuracy(float(per_fold_arr.mean()), float(per_fold_arr.std()), per_fold_arr, np.array(thresholds))
