"""Identification: ranks, CMC and VR@FAR against hand-computed cases and a brute-force loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facelab.eval import identification as I
from facelab.eval.verification import tar_at_far


def test_ranks_hand_case():
    gallery = np.array(["a", "b", "c"])
    probes = np.array(["a", "b", "c", "a"])
    sim = np.array([
        [0.9, 0.1, 0.2],  # a: rank 1
        [0.5, 0.4, 0.1],  # b: a scores higher -> rank 2
        [0.3, 0.6, 0.2],  # c: a, b higher -> rank 3
        [0.5, 0.5, 0.1],  # a tied with b: pessimistic rank 2, optimistic rank 1
    ])
    np.testing.assert_array_equal(I.probe_ranks(sim, probes, gallery), [1, 2, 3, 2])
    np.testing.assert_array_equal(I.probe_ranks(sim, probes, gallery, ties="optimistic"), [1, 2, 3, 1])
    np.testing.assert_allclose(I.cmc(sim, probes, gallery), [0.25, 0.75, 1.0])
    assert I.rank_accuracy(sim, probes, gallery) == 0.25
    assert I.rank_accuracy(sim, probes, gallery, ties="optimistic") == 0.5


def test_multiple_gallery_entries_use_best_entry():
    gallery = np.array([1, 1, 2])
    probes = np.array([1])
    # identity 1's entries score 0.2 and 0.7; identity 2 scores 0.5 -> identity 1 ranks first.
    assert I.probe_ranks([[0.2, 0.7, 0.5]], probes, gallery)[0] == 1
    assert I.cmc([[0.2, 0.7, 0.5]], probes, gallery).tolist() == [1.0, 1.0]


def test_cmc_matches_argsort_loop():
    rng = np.random.default_rng(0)
    n_id = 12
    gallery = np.arange(n_id)
    probes = rng.integers(0, n_id, 40)
    sim = rng.normal(size=(40, n_id))
    sim[np.arange(40), probes] += 1.0
    ranks = []
    for p in range(40):
        order = np.argsort(-sim[p])  # continuous scores: no ties
        ranks.append(int(np.flatnonzero(gallery[order] == probes[p])[0]) + 1)
    ranks = np.array(ranks)
    np.testing.assert_array_equal(I.probe_ranks(sim, probes, gallery), ranks)
    np.testing.assert_allclose(I.cmc(sim, probes, gallery), [(ranks <= k).mean() for k in range(1, n_id + 1)])


def test_verification_rate_equals_pairwise_tar():
    rng = np.random.default_rng(1)
    gallery = np.arange(20)
    probes = np.repeat(np.arange(20), 3)
    sim = rng.normal(size=(60, 20))
    sim[np.arange(60), probes] += 2.0
    vr = I.verification_rate(sim, probes, gallery, [0.01, 0.1])
    labels = (probes[:, None] == gallery[None, :]).astype(int)
    ref = tar_at_far(sim.ravel(), labels.ravel(), [0.01, 0.1])
    assert [v.tar for v in vr] == [r.tar for r in ref]
    # 60 * 19 = 1140 impostor cells: FAR 0.1% (< 1/1140) is not measurable.
    (v,) = I.verification_rate(sim, probes, gallery, [0.0005])
    assert not v.measurable and math.isnan(v.tar)


def test_report_and_errors():
    sim = np.eye(3) + 0.01
    rep = I.identification_report(sim, [0, 1, 2], [0, 1, 2], ranks=(1, 2))
    assert rep.rank_accuracy == {1: 1.0, 2: 1.0}
    d = rep.as_dict()
    assert d["n_gallery_identities"] == 3 and d["cmc"] == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="no mate"):
        I.probe_ranks(sim, [0, 1, 5], [0, 1, 2])
    with pytest.raises(ValueError, match=r"\[P, G\]"):
        I.cmc(sim[:2], [0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="tie rule"):
        I.probe_ranks(sim, [0, 1, 2], [0, 1, 2], ties="random")
