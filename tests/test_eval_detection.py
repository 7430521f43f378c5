"""Detection metrics and landmark NME against hand-computed cases and independent computations."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from facelab.eval import detection as Det
from facelab.eval import landmarks as L

SETTINGS = Det.DetectionSettings(detector="test", test_scale="original resolution", score_threshold=0.0,
                                 nms_iou=0.4)


def _box(x, y, s=10.0):
    return [x, y, x + s, y + s]


def test_box_iou_hand_value():
    # Two 10x10 boxes overlapping in a 5x10 strip: 50 / (100 + 100 - 50) = 1/3.
    assert Det.box_iou([_box(0, 0)], [_box(5, 0)])[0, 0] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="xyxy"):
        Det.box_iou([[10, 10, 0, 0]], [_box(0, 0)])


def test_greedy_matching_by_score_and_duplicates():
    gt = np.array([_box(0, 0), _box(100, 0)])
    pred = np.array([_box(1, 0), _box(0, 0), _box(100, 1), _box(300, 300)])
    scores = np.array([0.6, 0.9, 0.8, 0.7])
    m = Det.match_image(pred, scores, gt)
    # Highest score (0.9, exact box) takes gt 0; 0.6 is a duplicate of gt 0 -> FP; 0.7 far away -> FP.
    np.testing.assert_array_equal(m.outcome, [Det.FP, Det.TP, Det.TP, Det.FP])
    np.testing.assert_array_equal(m.matched_gt, [-1, 0, 1, -1])
    assert m.n_gt == 2


def test_match_takes_best_unmatched_box():
    # One detection between two faces overlaps gt 1 more than gt 0.
    gt = np.array([_box(0, 0), _box(4, 0)])
    m = Det.match_image([_box(3, 0)], [1.0], gt)
    assert m.matched_gt[0] == 1
    # A second detection then takes the remaining face if its IoU is high enough.
    m = Det.match_image([_box(3, 0), _box(1, 0)], [1.0, 0.9], gt)
    np.testing.assert_array_equal(m.matched_gt, [1, 0])


def test_ignored_faces_absorb_detections():
    gt = np.array([_box(0, 0), _box(100, 0)])
    ignore = np.array([False, True])
    pred = np.array([_box(0, 0), _box(100, 0), _box(101, 0)])
    m = Det.match_image(pred, [0.9, 0.8, 0.7], gt, gt_ignore=ignore)
    np.testing.assert_array_equal(m.outcome, [Det.TP, Det.IGNORED, Det.IGNORED])
    assert m.n_gt == 1
    rep = Det.evaluate_detections([(pred, [0.9, 0.8, 0.7])], [gt], settings=SETTINGS, gt_ignore=[ignore])
    assert rep.ap == 1.0 and rep.n_ignored_detections == 2 and rep.n_gt == 1


def test_ap_hand_case():
    # 3 faces in one image; detections by score: TP, FP, TP, FP, (face 3 never found).
    gt = np.array([_box(0, 0), _box(100, 0), _box(200, 0)])
    pred = np.array([_box(0, 0), _box(500, 500), _box(100, 0), _box(600, 600)])
    rep = Det.evaluate_detections([(pred, [0.9, 0.8, 0.7, 0.6])], [gt], settings=SETTINGS)
    np.testing.assert_allclose(rep.precision, [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(rep.recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # Envelope: precision 1 up to recall 1/3, then 2/3 up to recall 2/3: AP = 1/3 + 2/9.
    assert rep.ap == pytest.approx(1 / 3 + 2 / 9)
    np.testing.assert_array_equal(rep.false_positives, [0, 1, 1, 2])
    b = rep.tpr_at_false_positives(1)
    assert b.tpr == pytest.approx(2 / 3) and b.reached
    b = rep.tpr_at_false_positives(5)
    assert b.tpr == pytest.approx(2 / 3) and not b.reached
    assert rep.tpr_at_false_positives(0).tpr == pytest.approx(1 / 3)


def test_tied_scores_enter_together():
    gt = np.array([_box(0, 0)])
    # A TP and an FP with the same score: one PR point (precision 1/2), whatever their order.
    for pred in ([_box(0, 0), _box(50, 50)], [_box(50, 50), _box(0, 0)]):
        rep = Det.evaluate_detections([(np.array(pred), [0.5, 0.5])], [gt], settings=SETTINGS)
        np.testing.assert_allclose(rep.precision, [0.5])
        assert rep.ap == pytest.approx(0.5)


def _voc_ap_loop(scores, is_tp, n_gt):
    """Independent VOC devkit-style computation: per-detection points, loop envelope."""
    order = np.argsort(-scores)
    tp = np.cumsum(is_tp[order])
    fp = np.cumsum(~is_tp[order])
    rec, prec = tp / n_gt, tp / (tp + fp)
    ap, r_prev = 0.0, 0.0
    for k in range(len(rec)):
        if rec[k] > r_prev:
            ap += (rec[k] - r_prev) * max(prec[k:])
            r_prev = rec[k]
    return ap


def test_ap_matches_independent_loop_and_sklearn():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for trial in range(10):
        n_gt = 30
        gt = np.array([_box(20.0 * i, 0) for i in range(n_gt)])
        found = rng.random(n_gt) < 0.8
        pred = [gt[i] for i in np.flatnonzero(found)]
        n_fp = int(rng.integers(0, 20))
        pred += [_box(1000.0 + 20 * j, 1000) for j in range(n_fp)]
        pred = np.array(pred)
        scores = rng.random(len(pred))  # continuous: no ties
        is_tp = np.r_[np.ones(found.sum(), bool), np.zeros(n_fp, bool)]
        rep = Det.evaluate_detections([(pred, scores)], [gt], settings=SETTINGS)
        assert rep.ap == pytest.approx(_voc_ap_loop(scores, is_tp, n_gt), abs=1e-12)
        if trial == 0:
            # Monotone case: when every TP outscores every FP the precision envelope is the
            # curve itself, and sklearn's (uninterpolated) AP rescaled by the recall reached agrees.
            s2 = np.where(is_tp, 1 + scores, scores)
            rep2 = Det.evaluate_detections([(pred, s2)], [gt], settings=SETTINGS)
            ref = average_precision_score(is_tp.astype(int), s2) * is_tp.sum() / n_gt
            assert rep2.ap == pytest.approx(ref)


def test_no_gt_and_no_detections():
    rep = Det.evaluate_detections([(np.zeros((0, 4)), [])], [np.array([_box(0, 0)])], settings=SETTINGS)
    assert rep.ap == 0.0 and rep.n_gt == 1
    rep = Det.evaluate_detections([(np.array([_box(0, 0)]), [0.5])], [np.zeros((0, 4))], settings=SETTINGS)
    assert math.isnan(rep.ap)
    assert rep.as_dict()["ap"] is None
    with pytest.raises(ValueError, match="scores"):
        Det.match_image([_box(0, 0)], [0.5, 0.4], [_box(0, 0)])


def test_wider_splits_nested_and_ignoring():
    heights = np.array([60, 60, 25, 12, 5])
    blur = np.array([0, 2, 1, 2, 1])
    masks = {s: Det.wider_split_mask(heights, blur, s) for s in Det.WIDER_SPLIT_RULES}
    np.testing.assert_array_equal(masks["easy"], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(masks["medium"], [1, 0, 1, 0, 0])
    np.testing.assert_array_equal(masks["hard"], [1, 1, 1, 1, 0])
    np.testing.assert_array_equal(masks["all"], [1, 1, 1, 1, 1])
    gt = np.array([_box(100.0 * i, 0, s=h) for i, h in enumerate(heights)])
    pred = gt[[0, 2]]  # finds the easy face and the 25 px face
    reps = Det.evaluate_wider_splits([(pred, [0.9, 0.8])], [gt], [heights], [blur], settings=SETTINGS)
    assert reps["easy"].ap == 1.0 and reps["easy"].n_gt == 1  # the 25 px detection is ignored, not FP
    assert reps["medium"].ap == 1.0
    assert reps["hard"].ap == pytest.approx(0.5) and reps["all"].ap == pytest.approx(0.4)
    d = reps["easy"].as_dict([10])
    assert d["settings"]["test_scale"] == "original resolution" and d["settings"]["iou_threshold"] == 0.5
    with pytest.raises(ValueError, match="split"):
        Det.wider_split_mask(heights, blur, "extreme")


def test_nme_conventions():
    gt = np.zeros((1, 68, 2))
    gt[0, 36] = [0, 0]
    gt[0, 45] = [40, 0]
    gt[0, 36:42] = [[0, 0], [2, 0], [4, 0], [6, 0], [4, 0], [2, 0]]   # left-eye centre x = 3
    gt[0, 42:48] = [[34, 0], [36, 0], [38, 0], [40, 0], [38, 0], [36, 0]]  # right-eye centre x = 37
    pred = gt.copy()
    pred[0, :, 1] += 2.0  # every point 2 px off
    assert L.nme(pred, gt)[0] == pytest.approx(2 / 40)
    assert L.nme(pred, gt, convention="eye_centres")[0] == pytest.approx(2 / 34)
    assert L.nme(pred, gt, convention="box", boxes=[[0, 0, 40, 90]])[0] == pytest.approx(2 / 60)
    five = L.landmarks68_to_5(gt)
    np.testing.assert_allclose(five[0, :2], [[3, 0], [37, 0]])
    assert L.nme(five + [0, 2.0], five, convention="eye_centres")[0] == pytest.approx(2 / 34)
    with pytest.raises(ValueError, match="68-point"):
        L.nme(five, five, convention="outer_eye_corners")
    assert L.failure_rate([0.05, 0.2], 0.1) == 0.5
    levels, frac = L.ced_curve([0.05, 0.2], max_error=0.1, steps=3)
    np.testing.assert_allclose(frac, [0, 0.5, 0.5])


data_root = os.environ.get("FACELAB_DATA")


@pytest.mark.skipif(not data_root, reason="set FACELAB_DATA")
def test_wider_subset_annotation_splits():
    """The split rules applied to the real WIDER FACE subset's annotated heights and blur."""
    from facelab.paths import dataset_dir

    path = dataset_dir("widerface", data_root) / "annotations" / "wider_val_subset_bbx.txt"
    lines = path.read_text().split("\n")
    heights, blur, i = [], [], 0
    while i < len(lines) and lines[i].strip():
        n = int(lines[i + 1])
        for row in lines[i + 2:i + 2 + n]:
            _, _, _, h, b = (float(v) for v in row.split()[:5])
            heights.append(h)
            blur.append(int(b))
        i += 2 + max(n, 1)
    counts = {s: int(Det.wider_split_mask(heights, blur, s).sum()) for s in ("easy", "medium", "hard", "all")}
    assert counts["all"] == 519  # the subset's documented face count
    assert 0 < counts["easy"] < counts["medium"] < counts["hard"] < counts["all"]


def test_bootstrap_ap_interval_contains_the_full_ap_and_collapses_for_identical_images():
    from facelab.eval.detection import DetectionSettings, bootstrap_ap

    settings = DetectionSettings(detector="toy", test_scale="original", score_threshold=0.0, nms_iou=0.4)
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    perfect = (gt.copy(), np.array([0.9, 0.8]))
    # every image the same: every bootstrap draw has the same AP
    same = bootstrap_ap([perfect] * 5, [gt] * 5, settings=settings, n_boot=50)
    assert same["ap"] == pytest.approx(1.0) and same["ci_low"] == same["ci_high"] == pytest.approx(1.0)
    # one image with a miss: the draws spread, the interval holds the full-set AP
    miss = (gt[:1].copy(), np.array([0.9]))
    mixed = bootstrap_ap([perfect, miss, perfect], [gt, gt, gt], settings=settings, n_boot=200, seed=1)
    assert mixed["ci_low"] <= mixed["ap"] <= mixed["ci_high"] and mixed["ci_low"] < mixed["ci_high"]


def test_recall_by_height_counts_found_faces_per_bin():
    from facelab.eval.detection import recall_by_height

    gt = np.array([[0, 0, 10, 8], [20, 20, 60, 60], [100, 100, 200, 200]], float)
    heights = gt[:, 3] - gt[:, 1]
    preds = (np.array([[20, 20, 60, 60], [100, 100, 200, 200], [0, 0, 10, 8]], float), np.array([0.9, 0.2, 0.1]))
    out = recall_by_height([preds], [gt], [heights], bins=[0, 16, 64, 1000], score_threshold=0.15)
    assert out["n_faces"] == [1, 1, 1] and out["n_found"] == [0, 1, 1]
    assert out["recall"] == [0.0, 1.0, 1.0]


def test_bootstrap_full_ap_equals_evaluate_detections():
    from facelab.eval.detection import DetectionSettings, bootstrap_ap, evaluate_detections

    rng = np.random.default_rng(0)
    settings = DetectionSettings(detector="toy", test_scale="original", score_threshold=0.0, nms_iou=None)
    gts, preds, ignores = [], [], []
    for _ in range(6):
        g = rng.uniform(0, 80, (5, 2))
        gt = np.c_[g, g + rng.uniform(8, 20, (5, 2))]
        shift = rng.normal(0, 3, (5, 2))
        p = gt + np.c_[shift, shift]
        xy = rng.uniform(0, 80, (3, 2))
        preds.append((np.r_[p, np.c_[xy, xy + rng.uniform(5, 20, (3, 2))]], rng.random(8)))
        gts.append(gt)
        ignores.append(rng.random(5) < 0.2)
    ref = evaluate_detections(preds, gts, settings=settings, gt_ignore=ignores).ap
    assert bootstrap_ap(preds, gts, settings=settings, gt_ignore=ignores, n_boot=5)["ap"] == pytest.approx(ref)
