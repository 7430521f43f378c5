"""Chapter 5: Uniface's training (eq. 2-3), the robustness perturbation, face selection and the speed fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelab import create_model
from facelab.experiments import uniface as X
from facelab.experiments.uniface_speed import fit_line
from facelab.train.uniface import UnifaceTrainConfig, fit_uniface, mimic_term, pool_centre_of

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mimic_term_is_eq3_on_unit_vectors():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(7, 16, generator=g), torch.randn(7, 16, generator=g) * 3
    cos = torch.nn.functional.cosine_similarity(a, b, dim=1)
    torch.testing.assert_close(mimic_term(a, b), (2 - 2 * cos).mean())
    c = torch.randn(16, generator=g)
    cos_c = torch.nn.functional.cosine_similarity(a, b - c, dim=1)
    torch.testing.assert_close(mimic_term(a, b, c), (2 - 2 * cos_c).mean())
    assert float(mimic_term(a, 5 * a)) == pytest.approx(0.0, abs=1e-6)
    assert mimic_term(a[:0], b[:0]).item() == 0.0


def _toy(n=6, size=96, dim=128, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    targets = []
    for i in range(n):
        k = 1 + i % 2
        xy = rng.uniform(5, 40, (k, 2)).astype(np.float32)
        boxes = np.concatenate([xy, xy + 40], 1)
        marks = (xy[:, None] + rng.uniform(8, 32, (k, 5, 2))).astype(np.float32)
        targets.append({"boxes": boxes, "landmarks": marks, "teacher": rng.normal(size=(k, 2, dim)).astype(np.float32)})
    return images, targets


def test_training_lowers_the_mimic_term():
    images, targets = _toy()
    torch.manual_seed(0)
    m = create_model("uniface_a")
    h = fit_uniface(m, images, targets, UnifaceTrainConfig(epochs=8, batch_size=3, lr=2e-3, flip_p=0.0), seed=1,
                    progress=False)
    assert h["mimic"][-1] < h["mimic"][0]
    assert len(h["step_mimic"]) == 16 and len(h["centre"]) == 128


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    import facelab.train.uniface as T

    images, targets = _toy()
    cfg = UnifaceTrainConfig(epochs=2, batch_size=3, lr=3e-3)
    torch.manual_seed(0)
    ref = create_model("uniface_a")
    h_ref = fit_uniface(ref, images, targets, cfg, seed=2, progress=False)
    ck = tmp_path / "ck.pt"
    save = T.atomic_save_torch

    def save_then_stop(obj, path):
        save(obj, path)
        raise KeyboardInterrupt  # the run is killed right after its first checkpoint

    monkeypatch.setattr(T, "atomic_save_torch", save_then_stop)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit_uniface(create_model("uniface_a"), images, targets, cfg, seed=2, progress=False, checkpoint=ck)
    monkeypatch.setattr(T, "atomic_save_torch", save)
    torch.manual_seed(1)  # a different initialisation: the checkpoint must replace it
    again = create_model("uniface_a")
    h = fit_uniface(again, images, targets, cfg, seed=2, progress=False, checkpoint=ck)
    assert h["step_mimic"] == h_ref["step_mimic"]
    for (k, a), b in zip(ref.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_freeze_stem_leaves_the_first_layers_unchanged():
    images, targets = _toy(n=3)
    torch.manual_seed(0)
    m = create_model("uniface_a")
    before = {k: v.clone() for k, v in m.bottom_up.body[:2].state_dict().items()}
    fit_uniface(m, images, targets, UnifaceTrainConfig(epochs=1, batch_size=3, freeze_stem=2), progress=False)
    for k, v in m.bottom_up.body[:2].state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    with pytest.raises(ValueError, match="square"):
        fit_uniface(m, images[:, :, :90], targets, UnifaceTrainConfig(epochs=1), progress=False)


def test_pool_centre_is_the_mean_of_every_face_and_mirror():
    _, targets = _toy(n=4, dim=8)
    allt = np.concatenate([t["teacher"].reshape(-1, 8) for t in targets])
    np.testing.assert_allclose(pool_centre_of(targets), allt.mean(0), rtol=1e-6)


def test_perturbation_crops_or_pads_each_side_within_the_bound():
    img = np.arange(50 * 40 * 3, dtype=np.uint8).reshape(50, 40, 3)
    assert X.perturb(img, 0, np.random.default_rng(0)) is img
    for seed in range(20):
        out = X.perturbed(img, 10, seed, 3)
        assert 30 <= out.shape[0] <= 70 and 20 <= out.shape[1] <= 60
        np.testing.assert_array_equal(out, X.perturbed(img, 10, seed, 3))  # the same for every system
    rng = np.random.default_rng(5)
    top, bottom, left, right = rng.integers(-10, 11, size=4)
    out = X.perturb(img, 10, np.random.default_rng(5))
    assert out.shape[:2] == (50 + top + bottom, 40 + left + right)


def test_face_selection_prefers_the_large_central_face_and_falls_back():
    boxes = np.array([[0, 0, 30, 30], [80, 80, 170, 170], [200, 200, 240, 240]], np.float32)
    scores = np.array([0.9, 0.8, 0.3])
    assert X._select(boxes, scores, (250, 250, 3), 0.5) == (1, "selected")
    assert X._select(boxes, scores, (250, 250, 3), 0.95) == (0, "fallback_best_box")
    assert X._select(boxes[:0], scores[:0], (250, 250, 3), 0.5) == (-1, "nothing")


def test_landmark_error_normalises_by_the_interocular_distance():
    ref = np.array([[[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]]], np.float32)
    pred = ref + np.array([2.0, 0.0], np.float32)
    e = X.landmark_error(pred, ref)
    assert e["nme"] == pytest.approx(0.1) and e["n"] == 1
    assert X.landmark_error(np.full_like(ref, np.nan), ref)["n"] == 0


def test_verification_scores_each_pair_by_cosine():
    class R:  # the fields of facelab.data.pairs.ResolvedPairs that verification reads
        index1 = np.array([0, 0, 2, 2] * 5)
        index2 = np.array([1, 2, 3, 1] * 5)
        same = np.array([True, False, True, False] * 5)
        fold = np.repeat(np.arange(10), 2)

    e = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], np.float32)
    acc, score = X.verification(e, np.arange(4), R)
    assert acc["accuracy"] == pytest.approx(100.0) and len(score) == 20


def test_speed_line_fit_recovers_slope_and_intercept():
    f = fit_line([1, 4, 16], [12.0, 18.0, 42.0])
    assert f["slope_ms_per_face"] == pytest.approx(2.0) and f["intercept_ms"] == pytest.approx(10.0)


def test_centre_crop_is_112_and_central():
    img = np.zeros((250, 250, 3), np.uint8)
    img[100:150, 100:150] = 255
    c = X.centre_crop(img, 50)
    assert c.shape == (112, 112, 3) and c.min() == 255
