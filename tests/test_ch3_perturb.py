"""Perturbed-LFW generator (facelab.data.perturb): deterministic per seed, the transform exact."""

import cv2
import numpy as np
import pytest

from facelab.data.align import loose_crop, warp_points
from facelab.data.perturb import (
    Perturbation,
    PerturbationRange,
    compose,
    crop_matrix,
    perturbation_for,
    perturbed_crop,
    sample_perturbation,
)


def test_same_key_and_seed_give_the_same_perturbation():
    a = perturbation_for("Name/Name_0001.jpg", 3)
    assert a == perturbation_for("Name/Name_0001.jpg", 3)
    assert a != perturbation_for("Name/Name_0002.jpg", 3)
    assert a != perturbation_for("Name/Name_0001.jpg", 4)


def test_samples_stay_in_range():
    spread = PerturbationRange(max_shift=0.05, max_scale=0.2, max_rotation=10)
    rng = np.random.default_rng(0)
    ps = [sample_perturbation(rng, spread) for _ in range(500)]
    assert max(abs(p.dx) for p in ps) <= 0.05 and max(abs(p.dy) for p in ps) <= 0.05
    assert min(p.scale for p in ps) >= 1 / 1.2 - 1e-12 and max(p.scale for p in ps) <= 1.2 + 1e-12
    assert max(abs(p.angle) for p in ps) <= 10
    # uniform draws fill their range
    assert max(p.angle for p in ps) > 9 and min(p.angle for p in ps) < -9


def test_zero_range_is_the_identity():
    p = sample_perturbation(np.random.default_rng(1), PerturbationRange(0, 0, 0))
    np.testing.assert_allclose(p.matrix(128), [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_matrix_closed_form():
    size, p = 100, Perturbation(dx=0.1, dy=-0.05, scale=2.0, angle=90.0)
    m = p.matrix(size)
    c = (size - 1) / 2
    # 90 degrees counter-clockwise on screen (y down): a point right of the centre moves up.
    right = np.array([[c + 10, c]])
    # rotated and scaled to (c, c - 20), then shifted by (10, -5) pixels
    np.testing.assert_allclose(warp_points(right, m), [[c + 10, c - 25]], atol=1e-9)
    np.testing.assert_allclose(warp_points(np.array([[c, c]]), m), [[c + 10, c - 5]], atol=1e-9)
    np.testing.assert_allclose(warp_points(right, m) - warp_points(np.array([[c, c]]), m), [[0, -20]], atol=1e-9)


def test_crop_matrix_matches_loose_crop():
    box = np.array([30.0, 40.0, 130.0, 140.0])
    image = np.random.default_rng(0).integers(0, 255, (200, 180, 3), dtype=np.uint8)
    crop, m = loose_crop(image, box, scale=1.0, size=50)
    np.testing.assert_allclose(crop_matrix(box, 50), m, atol=1e-12)
    ours, _ = perturbed_crop(image, box, Perturbation(), 50)
    assert ours.shape == crop.shape


def test_perturbed_crop_moves_a_dot_where_the_matrix_says():
    image = np.zeros((200, 200, 3), np.uint8)
    cv2.circle(image, (120, 90), 3, (255, 255, 255), -1)
    box = np.array([40.0, 40.0, 168.0, 168.0])  # 128 px: crop scale 1
    p = Perturbation(dx=0.05, dy=0.1, scale=1.2, angle=25.0)
    crop, m = perturbed_crop(image, box, p, 128)
    expected = warp_points(np.array([[120.0, 90.0]]), m)[0]
    ys, xs = np.nonzero(crop[..., 0] > 128)
    found = np.array([xs.mean(), ys.mean()])
    np.testing.assert_allclose(found, expected, atol=0.6)
    np.testing.assert_allclose(m, compose(p.matrix(128), crop_matrix(box, 128)))


def test_large_shrink_is_antialiased_and_still_exact():
    image = np.zeros((800, 800, 3), np.uint8)
    cv2.circle(image, (500, 300), 12, (255, 255, 255), -1)
    box = np.array([100.0, 100.0, 700.0, 700.0])  # 600 px -> 64: shrink < 0.5
    crop, m = perturbed_crop(image, box, Perturbation(angle=10.0), 64)
    expected = warp_points(np.array([[500.0, 300.0]]), m)[0]
    w = crop[..., 0].astype(float)
    ys, xs = np.mgrid[:64, :64]
    found = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    np.testing.assert_allclose(found, expected, atol=0.5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        PerturbationRange(max_shift=-0.1)
    with pytest.raises(ValueError):
        Perturbation(scale=0).matrix(10)
    with pytest.raises(ValueError):
        crop_matrix(np.array([5.0, 5.0, 5.0, 9.0]), 10)
