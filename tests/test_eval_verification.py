"""Verification metrics against hand-computed cases and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facelab.eval import verification as V


def _brute_best_threshold(scores, labels):
    """The original one-candidate-at-a-time sweep (independent of the vectorised version)."""
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2, [s[-1] + 1.0]])
    acc = [((scores >= t) == labels.astype(bool)).mean() for t in candidates]
    return float(candidates[int(np.argmax(acc))])


def _brute_roc(scores, labels):
    """FAR/TAR at every distinct threshold by direct counting (thresholds high to low)."""
    thr = np.r_[np.inf, np.unique(scores)[::-1]]
    far = np.array([(scores[labels == 0] >= t).mean() for t in thr])
    tar = np.array([(scores[labels == 1] >= t).mean() for t in thr])
    return far, tar, thr


def test_best_threshold_hand_case_and_tie_rule():
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    labels = np.array([0, 0, 1, 1])
    assert V.best_threshold(scores, labels) == pytest.approx(0.25)
    # Perfectly inverted scores: accuracy 0.5 at both ends and between; the lowest
    # threshold (accept everything) wins the tie.
    assert V.best_threshold(np.array([0.1, 0.2]), np.array([1, 0])) == pytest.approx(0.1 - 1.0)


def test_best_threshold_matches_brute_force_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 60))
        scores = rng.integers(0, 8, n).astype(float)  # many ties
        labels = rng.integers(0, 2, n)
        assert V.best_threshold(scores, labels) == _brute_best_threshold(scores, labels)


def test_kfold_accuracy_hand_case():
    # Two folds. Fold 0: genuine 0.9, 0.6; impostor 0.4, 0.7. Fold 1: genuine 0.8, 0.5; impostor 0.3, 0.55.
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.8, 0.5, 0.3, 0.55])
    labels = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    r = V.kfold_accuracy(scores, labels, folds)
    # Trained on fold 1: sorted 0.3i 0.5g 0.55i 0.8g -> best thresholds 0.4 (3/4) and 0.675 (3/4): lowest 0.4.
    # Fold 0 at 0.4: 0.9 yes, 0.6 yes, 0.4 accepted (impostor wrong), 0.7 accepted (wrong) -> 2/4.
    # Trained on fold 0: sorted 0.4i 0.6g 0.7i 0.9g -> best 0.5 (3/4) and 0.8 (3/4): lowest 0.5.
    # Fold 1 at 0.5: 0.8 yes, 0.5 yes, 0.3 rejected, 0.55 accepted (wrong) -> 3/4.
    np.testing.assert_allclose(r.thresholds, [0.4, 0.5])
    np.testing.assert_allclose(r.per_fold, [0.5, 0.75])
    assert r.mean == pytest.approx(0.625)
    assert r.std == pytest.approx(0.125)                      # population SD
    assert r.std_sample == pytest.approx(0.125 * math.sqrt(2))  # sample SD, k = 2
    assert r.standard_error == pytest.approx(0.125)           # sqrt(2) * 0.125 / sqrt(2)


def test_kfold_accuracy_all_genuine_fold():
    # Fold 2 has only genuine pairs; fold 0/1 are mixed.
    scores = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.75])
    labels = np.array([1, 0, 1, 0, 1, 1])
    folds = np.array([0, 0, 1, 1, 2, 2])
    r = V.kfold_accuracy(scores, labels, folds)
    # Training on folds 0+1 separates at 0.5; fold 2 (0.7, 0.75) all accepted -> 1.0.
    assert r.per_fold[2] == 1.0
    # Training on an all-genuine set picks "accept everything" (threshold below the lowest score).
    t = V.best_threshold(np.array([0.7, 0.75]), np.array([1, 1]))
    assert t < 0.7


def test_fold_statistics_conventions():
    st = V.fold_statistics([0.9, 1.0])
    assert st.sd_population == pytest.approx(0.05)
    assert st.sd_sample == pytest.approx(0.05 * math.sqrt(2))
    assert st.standard_error == pytest.approx(0.05)
    assert math.isnan(V.fold_statistics([0.5]).sd_sample)


def test_roc_matches_brute_force_and_sklearn_det():
    from sklearn.metrics import det_curve

    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=200), 1)  # ties
    labels = rng.integers(0, 2, 200)
    scores[labels == 1] += 1.0
    r = V.roc(scores, labels)
    far, tar, thr = _brute_roc(scores, labels)
    np.testing.assert_allclose(r.far, far)
    np.testing.assert_allclose(r.tar, tar)
    np.testing.assert_allclose(r.thresholds[1:], thr[1:])
    d = V.det(scores, labels)
    fpr, fnr, t = det_curve(labels, scores)
    ours = dict(zip(d.thresholds, zip(d.far, d.frr)))
    for ti, fi, ni in zip(t, fpr, fnr):
        assert ours[ti] == pytest.approx((fi, ni))


def test_eer_hand_cases():
    # Perfect separation: EER 0.
    assert V.eer([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]).eer == 0.0
    # genuine 0.3, 0.6; impostor 0.4, 0.7 -> ROC points (FAR, TAR): (0,0) (.5,0) (.5,.5) (1,.5) (1,1).
    # FAR - FRR: -1, -.5, 0, .5, 1 -> exactly 0 at (.5,.5): EER 0.5.
    assert V.eer([0.3, 0.6, 0.4, 0.7], [1, 1, 0, 0]).eer == pytest.approx(0.5)
    # genuine 0.9, 0.8, 0.7, 0.2; impostor 0.75, 0.1, 0.05, 0.01.
    # ROC: thr .9 (0,.25), .8 (0,.5), .75 (.25,.5), .7 (.25,.75), .2 (.25,1) ...
    # FAR-FRR: (0,.25): -.75; (0,.5): -.5; (.25,.5): -.25; (.25,.75): 0 -> EER .25 exactly.
    e = V.eer([0.9, 0.8, 0.7, 0.2, 0.75, 0.1, 0.05, 0.01], [1, 1, 1, 1, 0, 0, 0, 0])
    assert e.eer == pytest.approx(0.25)
    assert e.threshold == pytest.approx(0.7)


def test_eer_interpolates_between_points():
    # genuine 0.9, 0.6, 0.5; impostor 0.7, 0.1. ROC: (0,0) (0,1/3) (.5,1/3) (.5,2/3) (.5,1) (1,1).
    # FAR-FRR: -1, -2/3, -1/6, +1/6 ... crossing between (.5,1/3) [d=-1/6] and (.5,2/3) [d=1/6]:
    # vertical segment at FAR .5 -> FRR goes 2/3 -> 1/3, crosses .5 -> EER .5.
    e = V.eer([0.9, 0.6, 0.5, 0.7, 0.1], [1, 1, 1, 0, 0])
    assert e.eer == pytest.approx(0.5)
    # A diagonal segment: genuine 0.9, 0.5; impostor 0.5, 0.1 (tie at 0.5).
    # ROC: (0,0) (0,.5) (.5,1) (1,1). Between (0,.5) [d=-.5] and (.5,1) [d=.5]: t=.5 -> FAR .25 = FRR .25.
    e = V.eer([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0])
    assert e.eer == pytest.approx(0.25)
    assert e.threshold == pytest.approx(0.7)  # halfway between thresholds 0.9 and 0.5
    n = V.eer([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0], method="nearest")
    assert n.eer == pytest.approx(0.25)  # |d| = .5 at both neighbours; first: (0 + .5)/2


def test_eer_matches_brentq_recipe():
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq

    rng = np.random.default_rng(2)
    for _ in range(5):
        labels = np.r_[np.ones(300), np.zeros(400)].astype(int)
        scores = rng.normal(size=700) + 1.5 * labels  # continuous: no ties, no vertical runs
        r = V.roc(scores, labels)
        ref = brentq(lambda x: 1.0 - x - interp1d(r.far, r.tar)(x), 0.0, 1.0)
        assert V.eer(scores, labels).eer == pytest.approx(ref, abs=1e-9)


def test_tar_at_far_hand_case_and_conventions():
    # 10 impostors 0.0, 0.1, ..., 0.9; 4 genuine 0.95, 0.8 (tied with an impostor), 0.65, 0.05.
    # ROC points (threshold: FAR, TAR): .95: (0, .25); .9: (.1, .25); .8: (.2, .5); .7: (.3, .5); ...
    imp = np.arange(10) / 10
    gen = np.array([0.95, 0.8, 0.65, 0.05])
    scores = np.r_[gen, imp]
    labels = np.r_[np.ones(4), np.zeros(10)].astype(int)
    (t,) = V.tar_at_far(scores, labels, [0.1])
    assert (t.tar, t.far, t.threshold, t.measurable) == (0.25, 0.1, 0.9, True)
    # FAR .15: nearest point below is (.1, .25); interpolating towards (.2, .5) gives .375.
    (b,) = V.tar_at_far(scores, labels, [0.15])
    (i,) = V.tar_at_far(scores, labels, [0.15], method="interpolate")
    assert (b.tar, b.far) == (0.25, 0.1)
    assert i.tar == pytest.approx(0.375) and i.far == 0.15 and math.isnan(i.threshold)
    # "nearest" may overshoot the target: FAR .16 is closer to .2 (TAR .5) than to .1.
    (n,) = V.tar_at_far(scores, labels, [0.16], method="nearest")
    assert n.far == pytest.approx(0.2) and n.tar == 0.5 and n.far > 0.16
    (n,) = V.tar_at_far(scores, labels, [0.14], method="nearest")
    assert (n.far, n.tar) == (0.1, 0.25)


def test_tar_at_far_below_one_over_n_is_not_measurable():
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(50), np.zeros(50)].astype(int)
    scores = rng.normal(size=100) + labels
    res = V.tar_at_far(scores, labels, [0.001, 0.01, 0.02, 0.1])
    assert [r.measurable for r in res] == [False, False, True, True]
    assert math.isnan(res[0].tar) and math.isnan(res[1].tar)
    d = res[0].as_dict()
    assert d["tar"] is None and "1/N_impostor" in d["note"]
    # Exactly 1/N is measurable: with 1000 impostors, FAR 0.001 allows one impostor.
    labels = np.r_[np.ones(10), np.zeros(1000)].astype(int)
    scores = np.r_[np.full(10, 5.0), np.arange(1000) / 1000]
    (r,) = V.tar_at_far(scores, labels, [0.001])
    assert r.measurable and r.tar == 1.0 and r.far == pytest.approx(0.001)
    for method in V.TAR_METHODS:
        (r,) = V.tar_at_far(scores, labels, [0.0005], method=method)
        assert not r.measurable and math.isnan(r.tar)


def test_tar_at_far_matches_threshold_sweep():
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(200), np.zeros(500)].astype(int)
    scores = np.round(rng.normal(size=700) + 2 * labels, 2)
    imp, gen = scores[labels == 0], scores[labels == 1]
    for target in (0.01, 0.05, 0.1, 0.3):
        # Brute force: the lowest threshold (among observed scores) whose FAR <= target.
        ok = [t for t in np.unique(scores) if (imp >= t).mean() <= target]
        t_best = min(ok)
        (r,) = V.tar_at_far(scores, labels, [target])
        assert r.tar == pytest.approx((gen >= t_best).mean())
        assert r.far <= target


def test_interpolated_tar_between_neighbours():
    rng = np.random.default_rng(5)
    labels = np.r_[np.ones(100), np.zeros(100)].astype(int)
    scores = rng.normal(size=200) + labels
    for target in (0.013, 0.05, 0.333):
        (lo,) = V.tar_at_far(scores, labels, [target])
        (it,) = V.tar_at_far(scores, labels, [target], method="interpolate")
        assert lo.tar <= it.tar + 1e-12
        assert it.far == target


def test_verification_report_against_sklearn_auc_and_json():
    import json

    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(6)
    labels = np.tile([1, 0], 100)
    scores = rng.normal(size=200) + labels
    folds = np.repeat(np.arange(10), 20)
    rep = V.verification_report(scores, labels, folds)
    assert rep.auc == pytest.approx(roc_auc_score(labels, scores))
    d = rep.as_dict()
    json.dumps(d, allow_nan=False)
    assert d["n_folds"] == 10 and d["n_impostor"] == 100
    assert [t["measurable"] for t in d["tar_at_far"]] == [False, True, True]
    assert d["accuracy"]["sd_population"] == pytest.approx(np.std(d["accuracy"]["per_fold"]))


def test_bad_inputs():
    with pytest.raises(ValueError, match="genuine and impostor"):
        V.roc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        V.roc([0.1, float("nan")], [1, 0])
    with pytest.raises(ValueError, match="labels"):
        V.roc([0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="same length"):
        V.roc([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="method"):
        V.tar_at_far([0.1, 0.2], [1, 0], [0.1], method="closest")
    with pytest.raises(ValueError, match="FAR target"):
        V.tar_at_far([0.1, 0.2], [1, 0], [0.0])
