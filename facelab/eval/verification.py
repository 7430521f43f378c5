"""Verification metrics: k-fold accuracy, ROC/DET curves, EER and TAR at fixed FAR.

Conventions (the book's methodology page explains why each matters):

* A *score* is a similarity: higher means more likely the same person, and a pair is
  accepted when ``score >= threshold``. Distances are negated before they become scores.
* ``labels`` are 1 for genuine (same identity) and 0 for impostor pairs; ``folds`` are
  integer fold ids.
* FAR (false accept rate) = accepted impostors / impostors = ROC's false positive rate;
  TAR (true accept rate) = accepted genuines / genuines = ROC's true positive rate;
  FRR = 1 - TAR. The ROC comes from :func:`sklearn.metrics.roc_curve` with
  ``drop_intermediate=False``: one point per distinct score, tied scores move together.
* **k-fold accuracy** (LFW View 2): for each fold k, the accuracy-maximising threshold is
  chosen on the other folds and applied to fold k. ``std`` is the *population* SD of the
  per-fold accuracies (ddof=0); :class:`KFoldAccuracy` also gives the sample SD (ddof=1)
  and the standard error of the mean, the other two things printed as "±" elsewhere.
* **EER** (default ``method="interpolate"``): the ROC is a polyline through its points; FAR
  rises and FRR falls along it, and the EER is where they are equal, found by linear
  interpolation between the two neighbouring ROC points on either side of FAR = FRR
  (the same number as the common ``brentq(1 - x - interp1d(fpr, tpr)(x))`` recipe).
  ``method="nearest"`` takes the single ROC point with the smallest |FAR - FRR| and reports
  (FAR + FRR) / 2 there.
* **TAR at FAR** (default ``method="nearest_below"``): the TAR of the ROC point with the
  largest FAR that does not exceed the target, i.e. a threshold that really exists and meets
  the FAR requirement. ``"interpolate"`` interpolates linearly along the ROC polyline;
  ``"nearest"`` takes the ROC point whose FAR is closest to the target (it may exceed it;
  this is what several public IJB evaluation scripts do). A target below 1/N_impostor
  cannot be measured with N_impostor impostor pairs: it is reported as NaN with
  ``measurable=False``, never as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: FAR targets reported by default (0.1 %, 1 %, 10 %).
DEFAULT_FAR_TARGETS: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
TAR_METHODS = ("nearest_below", "interpolate", "nearest")
EER_METHODS = ("interpolate", "nearest")


@dataclass(frozen=True)
class FoldStatistics:
    """Mean and the three spreads commonly printed after "±" for per-fold values.

    ``sd_population`` divides by k (numpy's default), ``sd_sample`` by k - 1 (pandas' and
    MATLAB's default), ``standard_error`` is ``sd_sample / sqrt(k)`` (uncertainty of the mean).
    """

    mean: float
    sd_population: float
    sd_sample: float
    standard_error: float
    n: int


def fold_statistics(values: Iterable[float]) -> FoldStatistics:
    """:class:`FoldStatistics` of per-fold values (at least one)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("fold_statistics needs at least one value")
    sd_sample = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return FoldStatistics(float(v.mean()), float(v.std(ddof=0)), sd_sample,
                          sd_sample / math.sqrt(v.size) if v.size > 1 else float("nan"), int(v.size))


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

    @property
    def std_sample(self) -> float:
        """Sample SD of the per-fold accuracies (ddof=1)."""
        return fold_statistics(self.per_fold).sd_sample

    @property
    def standard_error(self) -> float:
        """Standard error of the mean accuracy: sample SD / sqrt(number of folds)."""
        return fold_statistics(self.per_fold).standard_error


def _check_pairs(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise ValueError(f"scores and labels must have the same length (got {s.size} and {y.size})")
    if s.size == 0:
        raise ValueError("no scores given")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{int((~np.isfinite(s)).sum())} scores are NaN or infinite; drop or fix those pairs")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 1 (genuine) or 0 (impostor)")
    return s, y.astype(bool)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Threshold maximising accuracy of ``score >= t``; midpoints between sorted unique scores.

    Ties in accuracy are broken towards the lowest threshold.
    """
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels).astype(bool)
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2, [s[-1] + 1.0]])
    # Accuracy of every candidate at once: genuines at or above t plus impostors below t.
    # (Same result as evaluating each candidate separately; the tests check that.)
    gen = np.sort(scores[labels])
    imp = np.sort(scores[~labels])
    accepted_genuine = gen.size - np.searchsorted(gen, candidates, side="left")
    rejected_impostor = np.searchsorted(imp, candidates, side="left")
    correct = accepted_genuine + rejected_impostor
    return float(candidates[int(np.argmax(correct))])


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


@dataclass(frozen=True)
class RocCurve:
    """ROC of verification scores: arrays ``far``, ``tar``, ``thresholds`` of equal length.

    Point i accepts pairs with ``score >= thresholds[i]``; ``thresholds[0]`` is +inf (accept
    nothing: FAR = TAR = 0). ``far`` and ``tar`` are non-decreasing.
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray
    n_genuine: int
    n_impostor: int

    @property
    def frr(self) -> np.ndarray:
        return 1.0 - self.tar

    @property
    def min_measurable_far(self) -> float:
        """The smallest non-zero FAR these impostors can show: 1 / N_impostor."""
        return 1.0 / self.n_impostor


def roc(scores: Any, labels: Any) -> RocCurve:
    """ROC via :func:`sklearn.metrics.roc_curve` (``drop_intermediate=False``).

    Needs at least one genuine and one impostor pair.
    """
    from sklearn.metrics import roc_curve

    s, y = _check_pairs(scores, labels)
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    if n_gen == 0 or n_imp == 0:
        raise ValueError(f"a ROC needs genuine and impostor pairs (got {n_gen} genuine, {n_imp} impostor)")
    fpr, tpr, thr = roc_curve(y.astype(int), s, drop_intermediate=False)
    return RocCurve(far=fpr, tar=tpr, thresholds=thr, n_genuine=n_gen, n_impostor=n_imp)


@dataclass(frozen=True)
class DetCurve:
    """DET curve: FAR and FRR per threshold (plot on normal-deviate axes, see facelab.viz.curves)."""

    far: np.ndarray
    frr: np.ndarray
    thresholds: np.ndarray


def det(scores: Any, labels: Any) -> DetCurve:
    """DET curve from the same ROC as :func:`roc` (FRR = 1 - TAR)."""
    r = roc(scores, labels)
    return DetCurve(far=r.far, frr=r.frr, thresholds=r.thresholds)


@dataclass(frozen=True)
class EqualErrorRate:
    """EER and the threshold there (``threshold`` is the ROC point's, or linearly
    interpolated between the two neighbouring points' finite thresholds)."""

    eer: float
    threshold: float
    method: str


def eer(scores: Any, labels: Any, *, method: str = "interpolate") -> EqualErrorRate:
    """Equal error rate (see the module docstring for both definitions)."""
    if method not in EER_METHODS:
        raise ValueError(f"unknown EER method {method!r}; use one of {', '.join(EER_METHODS)}")
    return eer_from_roc(roc(scores, labels), method=method)


def eer_from_roc(curve: RocCurve, *, method: str = "interpolate") -> EqualErrorRate:
    far, frr, thr = curve.far, curve.frr, curve.thresholds
    d = far - frr  # non-decreasing along the ROC: from -1 (accept nothing) to +1 (accept all)
    if method == "nearest":
        i = int(np.argmin(np.abs(d)))
        return EqualErrorRate(float((far[i] + frr[i]) / 2), float(thr[i]), method)
    if method != "interpolate":
        raise ValueError(f"unknown EER method {method!r}; use one of {', '.join(EER_METHODS)}")
    j = int(np.argmax(d >= 0))  # first point with FAR >= FRR (exists: the last point has d = 1)
    if d[j] == 0 or j == 0:
        return EqualErrorRate(float(far[j]), float(thr[j]), method)
    i = j - 1
    t = -d[i] / (d[j] - d[i])
    value = far[i] + t * (far[j] - far[i])
    lo, hi = thr[i], thr[j]
    threshold = hi if not np.isfinite(lo) else lo + t * (hi - lo)
    return EqualErrorRate(float(value), float(threshold), method)


@dataclass(frozen=True)
class TarAtFar:
    """TAR at a FAR target.

    ``far`` is the achieved FAR of the operating point (equal to the target for
    ``"interpolate"``), ``threshold`` the score threshold there (NaN when interpolated
    between points). When the target is below 1/``n_impostor``, ``measurable`` is False and
    ``tar``, ``far`` and ``threshold`` are NaN.
    """

    far_target: float
    tar: float
    far: float
    threshold: float
    measurable: bool
    n_impostor: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        d = {k: _json_number(v) for k, v in self.__dict__.items()}
        if not self.measurable:
            d["note"] = (f"not measurable: FAR {self.far_target:g} is below 1/N_impostor = "
                         f"1/{self.n_impostor} = {1 / self.n_impostor:.3g}")
        return d


def tar_at_far(scores: Any, labels: Any, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS, *,
               method: str = "nearest_below") -> list[TarAtFar]:
    """TAR at each FAR target (conventions in the module docstring)."""
    return tar_at_far_from_roc(roc(scores, labels), far_targets, method=method)


def tar_at_far_from_roc(curve: RocCurve, far_targets: Sequence[float] = DEFAULT_FAR_TARGETS, *,
                        method: str = "nearest_below") -> list[TarAtFar]:
    if method not in TAR_METHODS:
        raise ValueError(f"unknown TAR@FAR method {method!r}; use one of {', '.join(TAR_METHODS)}")
    far, tar, thr = curve.far, curve.tar, curve.thresholds
    out = []
    for target in far_targets:
        target = float(target)
        if not 0.0 < target <= 1.0:
            raise ValueError(f"FAR target {target} must be in (0, 1]")
        # A relative tolerance so that e.g. 1/1000 counts as measurable with 1000 impostors.
        if target < curve.min_measurable_far * (1 - 1e-9):
            out.append(TarAtFar(target, math.nan, math.nan, math.nan, False, curve.n_impostor, method))
            continue
        if method == "nearest":
            gap = np.abs(far - target)
            i = int(np.flatnonzero(gap == gap.min())[-1])  # among equally close: the highest TAR
            out.append(TarAtFar(target, float(tar[i]), float(far[i]), float(thr[i]), True, curve.n_impostor, method))
            continue
        # Last ROC point with FAR <= target: the top of the vertical run at that FAR.
        i = int(np.searchsorted(far, target * (1 + 1e-12), side="right") - 1)
        if method == "nearest_below" or far[i] == target or i == len(far) - 1:
            out.append(TarAtFar(target, float(tar[i]), float(far[i]), float(thr[i]), True, curve.n_impostor, method))
            continue
        t = (target - far[i]) / (far[i + 1] - far[i])
        value = tar[i] + t * (tar[i + 1] - tar[i])
        out.append(TarAtFar(target, float(value), target, math.nan, True, curve.n_impostor, method))
    return out


def _json_number(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


@dataclass
class VerificationReport:
    """All verification metrics of one set of scored pairs (see :func:`verification_report`)."""

    n_genuine: int
    n_impostor: int
    n_folds: int | None
    accuracy: KFoldAccuracy | None
    eer: EqualErrorRate
    auc: float
    tar_at_far: list[TarAtFar]
    roc: RocCurve = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN becomes null); curves are not included."""
        acc = None
        if self.accuracy is not None:
            a = self.accuracy
            acc = {
                "mean": a.mean, "sd_population": a.std, "sd_sample": _json_number(a.std_sample),
                "standard_error": _json_number(a.standard_error),
                "per_fold": [float(x) for x in a.per_fold], "thresholds": [float(x) for x in a.thresholds],
                "convention": "threshold maximising accuracy on the other folds, applied to each fold; "
                              "the +/- in facelab tables is sd_population (ddof=0)",
            }
        return {
            "n_genuine": self.n_genuine, "n_impostor": self.n_impostor, "n_folds": self.n_folds,
            "accuracy": acc,
            "eer": {"value": _json_number(self.eer.eer), "threshold": _json_number(self.eer.threshold),
                    "method": self.eer.method,
                    "convention": "FAR = FRR on the ROC, linearly interpolated between the two neighbouring "
                                  "ROC points" if self.eer.method == "interpolate" else
                                  "(FAR + FRR) / 2 at the ROC point with the smallest |FAR - FRR|"},
            "auc": self.auc,
            "tar_at_far": [t.as_dict() for t in self.tar_at_far],
            "tar_at_far_convention": {
                "nearest_below": "TAR of the ROC point with the largest FAR <= target",
                "interpolate": "TAR linearly interpolated along the ROC at FAR = target",
                "nearest": "TAR of the ROC point whose FAR is closest to the target (may exceed it)",
            }[self.tar_at_far[0].method] if self.tar_at_far else None,
            "min_measurable_far": 1.0 / self.n_impostor,
            "score_convention": "similarity; a pair is accepted when score >= threshold",
        }


def verification_report(scores: Any, labels: Any, folds: Any = None, *,
                        far_targets: Sequence[float] = DEFAULT_FAR_TARGETS,
                        tar_method: str = "nearest_below", eer_method: str = "interpolate") -> VerificationReport:
    """Every verification metric of scored pairs: k-fold accuracy (when ``folds`` is given),
    EER, ROC AUC and TAR at each FAR target, all on the pooled pairs except the accuracy."""
    from sklearn.metrics import roc_auc_score

    s, y = _check_pairs(scores, labels)
    curve = roc(s, y)
    acc, n_folds = None, None
    if folds is not None:
        f = np.asarray(folds).ravel()
        if f.shape != s.shape:
            raise ValueError(f"folds must have one entry per pair (got {f.size} for {s.size} pairs)")
        acc = kfold_accuracy(s, y, f)
        n_folds = int(np.unique(f).size)
    return VerificationReport(
        n_genuine=curve.n_genuine, n_impostor=curve.n_impostor, n_folds=n_folds, accuracy=acc,
        eer=eer_from_roc(curve, method=eer_method), auc=float(roc_auc_score(y.astype(int), s)),
        tar_at_far=tar_at_far_from_roc(curve, far_targets, method=tar_method), roc=curve,
    )
