"""Distances, templates and flip fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelab.eval import descriptors as Dsc
from facelab.eval import distances as D


def test_cosine_hand_values_and_pairwise_agrees():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    np.testing.assert_allclose(D.cosine_similarity(a, b), [0.0, 1.0, -1.0], atol=1e-12)
    full = D.pairwise_cosine(a, b)
    np.testing.assert_allclose(np.diag(full), D.cosine_similarity(a, b), atol=1e-12)
    assert full.shape == (3, 3)


def test_chi2_hand_value_and_zero_bins():
    # (1-3)^2/(1+3) + (0-0)/(0+0) -> counted as 0 + (2-0)^2/(2+0) = 1 + 0 + 2 = 3
    assert D.chi2_distance([[1.0, 0.0, 2.0]], [[3.0, 0.0, 0.0]])[0] == pytest.approx(3.0)
    assert D.chi2_distance([[1.0, 2.0]], [[1.0, 2.0]])[0] == 0.0


def test_chi2_against_sklearn_kernel():
    from sklearn.metrics.pairwise import additive_chi2_kernel

    rng = np.random.default_rng(0)
    a = rng.random((4, 16)) * (rng.random((4, 16)) > 0.3)  # with exact zeros
    b = rng.random((5, 16)) * (rng.random((5, 16)) > 0.3)
    full = D.pairwise_chi2(a, b)
    np.testing.assert_allclose(full, -additive_chi2_kernel(a, b), rtol=1e-12)
    for i in range(4):
        np.testing.assert_allclose(D.chi2_distance(np.repeat(a[i:i + 1], 5, 0), b), full[i], rtol=1e-12)
    # The "abs" convention equals the standard formula on non-negative input.
    np.testing.assert_allclose(D.pairwise_chi2(a, b, negative="abs"), full, rtol=1e-12)


def test_chi2_negative_conventions():
    a, b = np.array([[-1.0, 2.0]]), np.array([[1.0, 2.0]])
    with pytest.raises(ValueError, match="negative"):
        D.chi2_distance(a, b)
    # abs: (-1-1)^2 / (1+1) = 2
    assert D.chi2_distance(a, b, negative="abs")[0] == pytest.approx(2.0)
    # clip: (0-1)^2 / 1 = 1
    assert D.chi2_distance(a, b, negative="clip")[0] == pytest.approx(1.0)
    np.testing.assert_allclose(D.pairwise_chi2(a, b, negative="clip"), [[1.0]])
    with pytest.raises(ValueError, match="convention"):
        D.chi2_distance(a, b, negative="shift")


def test_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        D.cosine_similarity(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        D.cosine_similarity(np.ones((2, 3, 1)), np.ones((2, 3, 1)))


def test_templates():
    d = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    np.testing.assert_allclose(Dsc.make_template(d[:2]), [2.0, 0.0])
    np.testing.assert_allclose(Dsc.make_template(d[:2], normalize_each=True), [1.0, 0.0])
    keys, t = Dsc.group_templates(d, ["b", "b", "a"])
    assert keys == ["b", "a"]
    np.testing.assert_allclose(t, [[2.0, 0.0], [0.0, 2.0]])
    with pytest.raises(ValueError, match="K >= 1"):
        Dsc.make_template(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="group keys"):
        Dsc.group_templates(d, ["a"])


def test_flip_fusion_numpy_and_torch():
    e, f = np.array([[1.0, 2.0]]), np.array([[3.0, 5.0]])
    np.testing.assert_allclose(Dsc.fuse_flip(e, f), [[4.0, 7.0]])
    np.testing.assert_allclose(Dsc.fuse_flip(e, f, mode="concat"), [[1.0, 2.0, 3.0, 5.0]])
    with pytest.raises(ValueError, match="flip fusion"):
        Dsc.fuse_flip(e, f, mode="mean")

    # A "model" that reads the left-most column: the mirror gives the right-most column.
    def model(x):
        return x[:, 0, 0, :1]

    images = torch.arange(2 * 1 * 1 * 4, dtype=torch.float32).reshape(2, 1, 1, 4)
    out = Dsc.embed_with_flip(model, images)
    torch.testing.assert_close(out, images[:, 0, 0, :1] + images[:, 0, 0, -1:])
    assert Dsc.embed_with_flip(model, images, mode="concat").shape == (2, 2)
    with pytest.raises(ValueError, match="batch"):
        Dsc.embed_with_flip(model, images[0])
