"""Face detection metrics: average precision, precision-recall curve and discrete ROC.

Boxes are ``[N, 4]`` arrays (or tensors) in absolute pixel **xyxy** format
(x1, y1, x2, y2); convert WIDER FACE's ``x y w h`` with
``torchvision.ops.box_convert(boxes, "xywh", "xyxy")``. IoU is
:func:`torchvision.ops.box_iou`.

**Matching** (per image, greedy by score): detections are visited in decreasing score order
(ties: the order given); each is matched to the still-unmatched, non-ignored ground-truth box
with the highest IoU >= ``iou_threshold`` and is then a true positive. A detection that finds
no such box but overlaps an *ignored* ground-truth box (a crowd region, or a face outside
the difficulty split being evaluated) by >= ``iou_threshold`` is discarded: neither true nor
false positive (ignored boxes may absorb several detections). Every other detection is a
false positive, including a second detection of an already matched face.

**Precision-recall** is evaluated at every distinct detection score over the whole set
(tied scores enter together, as one threshold would admit them); recall = TP / number of
non-ignored ground-truth faces.

**AP** uses all-point interpolation (PASCAL VOC 2010 onward): the precision at recall r is
replaced by the maximum precision at any recall >= r and the area under that envelope is
summed over the recall steps. (Neither the 11-point VOC 2007 rule nor COCO's 101 points.)

**Discrete ROC** (FDDB, paper 004 Fig. 4): true positive rate against the *number* of false
positives over all images, as the score threshold falls.

**WIDER FACE easy/medium/hard-style splits.** The official splits come from the official
evaluation tool's per-image lists (faces graded by how often EdgeBox proposals found them),
which are not available here. facelab defines its own nested splits from the annotated box
height (WIDER's own scale measure) and the blur attribute (0 clear, 1 normal, 2 heavy):
see :data:`WIDER_SPLIT_RULES`. Faces outside a split are *ignored* when that split is
evaluated, as the official tool does, so detecting them is neither rewarded nor punished.
These are **not** the official splits and the numbers are not comparable to published
WIDER easy/medium/hard APs.

Every :class:`DetectionReport` records the :class:`DetectionSettings` it was computed
with: the detector's test scale and its score and NMS thresholds, and the IoU threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: IoU at which a detection counts as finding a face (PASCAL VOC, FDDB's discrete score).
DEFAULT_IOU_THRESHOLD = 0.5

TP, FP, IGNORED = 1, 0, -1


@dataclass(frozen=True)
class SplitRule:
    """A face belongs to the split when ``height >= min_height`` (pixels, original image) and
    ``blur <= max_blur``."""

    min_height: float
    max_blur: int


#: facelab's WIDER-style difficulty splits (nested: easy within medium within hard within all).
WIDER_SPLIT_RULES: dict[str, SplitRule] = {
    "easy": SplitRule(min_height=50, max_blur=1),    # clearly visible: >= 50 px, not heavily blurred
    "medium": SplitRule(min_height=20, max_blur=1),  # adds small faces down to 20 px
    "hard": SplitRule(min_height=10, max_blur=2),    # adds heavy blur and faces down to 10 px
    "all": SplitRule(min_height=0, max_blur=2),      # every annotated face
}


def wider_split_mask(heights: Any, blur: Any, split: str) -> np.ndarray:
    """Which faces ([F] heights in pixels, [F] blur in {0, 1, 2}) belong to ``split`` -> [F] bool."""
    if split not in WIDER_SPLIT_RULES:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(WIDER_SPLIT_RULES)}")
    h, b = np.asarray(heights, dtype=float), np.asarray(blur)
    if h.shape != b.shape:
        raise ValueError(f"heights and blur must have the same length (got {h.size} and {b.size})")
    rule = WIDER_SPLIT_RULES[split]
    return (h >= rule.min_height) & (b <= rule.max_blur)


@dataclass(frozen=True)
class DetectionSettings:
    """How the detections were produced and matched (stored in every result).

    ``test_scale``: how images were sized for the detector (e.g. "original resolution",
    "shorter side 640 px", or an MTCNN ``min_face_size`` and pyramid factor);
    ``score_threshold``: the lowest detector score kept (the PR curve cannot go beyond it);
    ``nms_iou``: the detector's NMS IoU threshold (None if not applicable);
    ``iou_threshold``: the IoU for a match.
    """

    detector: str
    test_scale: str
    score_threshold: float
    nms_iou: float | None
    iou_threshold: float = DEFAULT_IOU_THRESHOLD


def _boxes(x: Any, name: str) -> np.ndarray:
    b = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] in xyxy format (got {b.shape})")
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError(f"{name} has boxes with x2 < x1 or y2 < y1: boxes must be xyxy "
                         "(convert x y w h with torchvision.ops.box_convert(b, 'xywh', 'xyxy'))")
    return b


def box_iou(a: Any, b: Any) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (xyxy) -> [N, M]."""
    import torch
    from torchvision.ops import box_iou as tv_box_iou

    a2, b2 = _boxes(a, "a"), _boxes(b, "b")
    if len(a2) == 0 or len(b2) == 0:
        return np.zeros((len(a2), len(b2)))
    return tv_box_iou(torch.from_numpy(a2), torch.from_numpy(b2)).numpy()


@dataclass(frozen=True)
class ImageMatch:
    """Outcome per detection of one image: ``outcome`` [N] (1 TP, 0 FP, -1 ignored),
    ``matched_gt`` [N] (ground-truth index or -1), ``scores`` [N], and ``n_gt`` (non-ignored
    ground-truth faces)."""

    outcome: np.ndarray
    matched_gt: np.ndarray
    scores: np.ndarray
    n_gt: int


def match_image(pred_boxes: Any, pred_scores: Any, gt_boxes: Any, *, gt_ignore: Any = None,
                iou_threshold: float = DEFAULT_IOU_THRESHOLD) -> ImageMatch:
    """Greedy matching of one image's detections to its ground truth (rules in the module docstring)."""
    pb, gb = _boxes(pred_boxes, "pred_boxes"), _boxes(gt_boxes, "gt_boxes")
    ps = np.asarray(pred_scores.detach().cpu() if hasattr(pred_scores, "detach") else pred_scores,
                    dtype=float).ravel()
    if ps.size != len(pb):
        raise ValueError(f"{len(pb)} boxes but {ps.size} scores")
    ignore = np.zeros(len(gb), bool) if gt_ignore is None else np.asarray(gt_ignore, bool).ravel()
    if ignore.size != len(gb):
        raise ValueError(f"gt_ignore must have one flag per ground-truth box ({len(gb)}), got {ignore.size}")
    outcome = np.full(len(pb), FP, dtype=np.int8)
    matched = np.full(len(pb), -1, dtype=np.int64)
    iou = box_iou(pb, gb)
    taken = np.zeros(len(gb), bool)
    for d in np.argsort(-ps, kind="stable"):
        if len(gb) == 0:
            break
        candidates = np.where(~ignore & ~taken & (iou[d] >= iou_threshold), iou[d], -1.0)
        g = int(np.argmax(candidates))
        if candidates[g] >= 0:
            outcome[d], matched[d] = TP, g
            taken[g] = True
            continue
        crowd = np.where(ignore & (iou[d] >= iou_threshold), iou[d], -1.0)
        g = int(np.argmax(crowd))
        if crowd[g] >= 0:
            outcome[d], matched[d] = IGNORED, g
    return ImageMatch(outcome, matched, ps, int((~ignore).sum()))


def average_precision(precision: Any, recall: Any) -> float:
    """All-point interpolated AP of a PR curve given at increasing recall (points in threshold
    order, highest threshold first)."""
    p, r = np.asarray(precision, float), np.asarray(recall, float)
    mrec = np.concatenate([[0.0], r, [1.0]])
    mpre = np.concatenate([[0.0], p, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope: best precision at recall >= r
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


@dataclass(frozen=True)
class FpBudget:
    """TPR at a number of false positives (FDDB style); ``reached`` is False when the detector
    produced fewer false positives than ``n_false_positives`` in total (the curve ends
    earlier and ``tpr`` is its final value)."""

    n_false_positives: int
    tpr: float
    reached: bool


@dataclass(frozen=True)
class DetectionReport:
    """Pooled detection results over a set of images.

    Curves have one point per distinct score threshold (highest first): ``thresholds``,
    ``precision``, ``recall``, ``true_positives`` and ``false_positives`` (cumulative counts).
    ``ap`` is NaN when there is no ground truth face.
    """

    settings: DetectionSettings
    n_images: int
    n_gt: int
    n_detections: int
    n_ignored_detections: int
    ap: float
    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray
    split: str | None = None

    def tpr_at_false_positives(self, n_false_positives: int) -> FpBudget:
        """Highest TPR with at most ``n_false_positives`` false positives (paper 004: at 2000)."""
        if self.n_gt == 0:
            return FpBudget(int(n_false_positives), math.nan, False)
        ok = self.false_positives <= n_false_positives
        tpr = float(self.true_positives[ok].max()) / self.n_gt if ok.any() else 0.0
        total_fp = int(self.false_positives[-1]) if self.false_positives.size else 0
        return FpBudget(int(n_false_positives), tpr, total_fp >= n_false_positives)

    def as_dict(self, fp_budgets: Sequence[int] = ()) -> dict[str, Any]:
        return {
            "split": self.split, "settings": asdict(self.settings), "n_images": self.n_images,
            "n_gt": self.n_gt, "n_detections": self.n_detections,
            "n_ignored_detections": self.n_ignored_detections,
            "ap": None if math.isnan(self.ap) else self.ap,
            "max_recall": float(self.recall[-1]) if self.recall.size else 0.0,
            "tpr_at_false_positives": [asdict(self.tpr_at_false_positives(n)) for n in fp_budgets],
            "conventions": "greedy matching by score at IoU >= iou_threshold; all-point interpolated AP; "
                           "detections on ignored faces are neither TP nor FP",
        }


def evaluate_detections(predictions: Sequence[tuple[Any, Any]], ground_truth: Sequence[Any], *,
                        settings: DetectionSettings, gt_ignore: Sequence[Any] | None = None,
                        split: str | None = None) -> DetectionReport:
    """Match and pool detections over images.

    ``predictions[i]`` = (boxes [N_i, 4] xyxy, scores [N_i]) of image i;
    ``ground_truth[i]`` = boxes [M_i, 4] xyxy; ``gt_ignore[i]`` = [M_i] bool (optional).
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} prediction sets for {len(ground_truth)} images")
    if gt_ignore is not None and len(gt_ignore) != len(ground_truth):
        raise ValueError(f"gt_ignore has {len(gt_ignore)} entries for {len(ground_truth)} images")
    scores, outcomes, n_gt = [], [], 0
    for i, ((boxes, s), gt) in enumerate(zip(predictions, ground_truth)):
        m = match_image(boxes, s, gt, gt_ignore=None if gt_ignore is None else gt_ignore[i],
                        iou_threshold=settings.iou_threshold)
        scores.append(m.scores)
        outcomes.append(m.outcome)
        n_gt += m.n_gt
    s_all = np.concatenate(scores) if scores else np.zeros(0)
    o_all = np.concatenate(outcomes).astype(int) if outcomes else np.zeros(0, int)
    kept = o_all != IGNORED
    s_k, o_k = s_all[kept], o_all[kept]
    order = np.argsort(-s_k, kind="stable")
    s_k, o_k = s_k[order], o_k[order]
    tp, fp = np.cumsum(o_k == TP), np.cumsum(o_k == FP)
    # One point per distinct threshold: the last detection of each group of equal scores.
    last = np.flatnonzero(np.r_[s_k[1:] != s_k[:-1], True]) if s_k.size else np.zeros(0, int)
    tp, fp, thr = tp[last], fp[last], s_k[last]
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / n_gt if n_gt else np.full(tp.shape, math.nan)
    ap = average_precision(precision, recall) if n_gt else math.nan
    return DetectionReport(
        settings=settings, n_images=len(ground_truth), n_gt=n_gt, n_detections=int(s_all.size),
        n_ignored_detections=int((~kept).sum()), ap=ap, thresholds=thr, precision=precision,
        recall=recall, true_positives=tp, false_positives=fp, split=split,
    )


def evaluate_wider_splits(predictions: Sequence[tuple[Any, Any]], ground_truth: Sequence[Any],
                          heights: Sequence[Any], blur: Sequence[Any], *, settings: DetectionSettings,
                          splits: Sequence[str] = ("all", "easy", "medium", "hard")) -> dict[str, DetectionReport]:
    """One :class:`DetectionReport` per facelab WIDER-style split (faces outside it ignored).

    ``heights[i]``, ``blur[i]``: per-face box height (pixels) and blur attribute of image i.
    """
    out = {}
    for split in splits:
        ignore = [~wider_split_mask(h, b, split) for h, b in zip(heights, blur)]
        out[split] = evaluate_detections(predictions, ground_truth, settings=settings, gt_ignore=ignore, split=split)
    return out


def _pooled_ap(scores: np.ndarray, outcomes: np.ndarray, n_gt: int) -> float:
    """AP of pooled per-detection ``scores`` and ``outcomes`` (TP/FP/IGNORED), as :func:`evaluate_detections`."""
    if n_gt == 0:
        return math.nan
    kept = outcomes != IGNORED
    s_k, o_k = scores[kept], outcomes[kept]
    order = np.argsort(-s_k, kind="stable")
    s_k, o_k = s_k[order], o_k[order]
    tp, fp = np.cumsum(o_k == TP), np.cumsum(o_k == FP)
    last = np.flatnonzero(np.r_[s_k[1:] != s_k[:-1], True]) if s_k.size else np.zeros(0, int)
    tp, fp = tp[last], fp[last]
    return average_precision(tp / np.maximum(tp + fp, 1), tp / n_gt)


def bootstrap_ap(predictions: Sequence[tuple[Any, Any]], ground_truth: Sequence[Any], *, settings: DetectionSettings,
                 gt_ignore: Sequence[Any] | None = None, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, Any]:
    """A per-image bootstrap of AP: images drawn with replacement ``n_boot`` times (seeded), AP of each
    draw; returns the AP of the full set, the ``level`` percentile interval of the draws and their SD.
    Matching is per image, so each image is matched once and the draws pool those outcomes (the same
    AP :func:`evaluate_detections` gives for the drawn images). With few images, or most faces in one
    image, the interval is wide: it says how much the AP depends on which images happened to be tested."""
    matches = [match_image(b, s, gt, gt_ignore=None if gt_ignore is None else gt_ignore[i],
                           iou_threshold=settings.iou_threshold)
               for i, ((b, s), gt) in enumerate(zip(predictions, ground_truth))]
    scores = [m.scores for m in matches]
    outcomes = [m.outcome.astype(int) for m in matches]
    n_gt = np.array([m.n_gt for m in matches])
    full = _pooled_ap(np.concatenate(scores) if scores else np.zeros(0),
                      np.concatenate(outcomes) if outcomes else np.zeros(0, int), int(n_gt.sum()))
    rng = np.random.default_rng(seed)
    n = len(ground_truth)
    aps = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        ap = _pooled_ap(np.concatenate([scores[i] for i in idx]), np.concatenate([outcomes[i] for i in idx]),
                        int(n_gt[idx].sum()))
        if not math.isnan(ap):
            aps.append(ap)
    a = np.asarray(aps)
    lo, hi = (np.percentile(a, [100 * (1 - level) / 2, 100 * (1 + level) / 2]) if a.size else (math.nan, math.nan))
    return {"ap": None if math.isnan(full) else float(full), "ci_low": float(lo), "ci_high": float(hi),
            "sd": float(a.std()) if a.size else math.nan, "n_boot": int(a.size), "level": level,
            "method": "per-image bootstrap (images resampled with replacement)"}


def recall_by_height(predictions: Sequence[tuple[Any, Any]], ground_truth: Sequence[Any], heights: Sequence[Any], *,
                     bins: Sequence[float], score_threshold: float, iou_threshold: float = DEFAULT_IOU_THRESHOLD
                     ) -> dict[str, list]:
    """Share of ground-truth faces found (IoU >= ``iou_threshold`` by a detection scoring >=
    ``score_threshold``, greedy matching) per face-height bin, with counts. Bins follow
    :func:`numpy.histogram`: ``[bins[k], bins[k+1])``, the last one closed; faces outside
    ``[bins[0], bins[-1]]`` are not counted (choose bins that cover every height)."""
    found_h, all_h = [], []
    for (boxes, scores), gt, h in zip(predictions, ground_truth, heights):
        boxes, scores = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).reshape(-1)
        keep = scores >= score_threshold
        m = match_image(boxes[keep], scores[keep], gt, iou_threshold=iou_threshold)
        found = np.zeros(len(np.asarray(gt).reshape(-1, 4)), bool)
        found[m.matched_gt[m.outcome == TP]] = True
        found_h.append(np.asarray(h, np.float64)[found])
        all_h.append(np.asarray(h, np.float64))
    fh, ah = np.concatenate(found_h) if found_h else np.zeros(0), np.concatenate(all_h) if all_h else np.zeros(0)
    n_all = np.histogram(ah, bins=bins)[0]
    n_found = np.histogram(fh, bins=bins)[0]
    return {"bins": [float(b) for b in bins], "n_faces": n_all.tolist(), "n_found": n_found.tolist(),
            "recall": [float(f / a) if a else None for f, a in zip(n_found, n_all)]}
