"""Synthetic data (masks, simulated NIR, composite scenes), augmentation and the torch datasets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from facelab.data import align, augment, masks, nir, scenes
from facelab.data.datasets import AlignedFaces, CompositeScenes, LooseFaces, detection_collate
from facelab.data.manifest import COLUMNS, LOOSE_LANDMARK_COLUMNS, PreparedSet

TEMPLATE = align.ARCFACE_TEMPLATE_112


def _face(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, size=(112, 112, 3), dtype=np.uint8)


# --- masks --------------------------------------------------------------------------------

def test_masks_are_deterministic_and_cover_the_mouth_not_the_eyes():
    img = _face()
    a = masks.add_mask(img, TEMPLATE, np.random.default_rng(3))
    b = masks.add_mask(img, TEMPLATE, np.random.default_rng(3))
    c = masks.add_mask(img, TEMPLATE, np.random.default_rng(4))
    assert np.array_equal(a.image, b.image) and (a.style, a.colour) == (b.style, b.colour)
    assert not np.array_equal(a.image, c.image)
    for style in masks.MASK_STYLES:
        for colour in masks.MASK_COLOURS:
            m = masks.add_mask(img, TEMPLATE, np.random.default_rng(0), style=style, colour=colour)
            assert m.alpha.min() >= 0 and m.alpha.max() <= 1
            for k in (2, 3, 4):  # nose tip and mouth corners are under the mask
                x, y = np.round(TEMPLATE[k]).astype(int)
                assert m.alpha[y, x] > 0.99, (style, k)
            for k in (0, 1):  # eyes are not
                x, y = np.round(TEMPLATE[k]).astype(int)
                assert m.alpha[y, x] == 0, (style, k)
            covered = m.alpha > 0.99
            # Where covered, the pixels are the mask's colour (shaded), not the face.
            mean = m.image[covered].mean(0)
            assert np.abs(mean - masks.MASK_COLOURS[colour]).max() < 45, (style, colour, mean)
            assert np.array_equal(m.image[m.alpha == 0], img[m.alpha == 0])
    with pytest.raises(ValueError, match="unknown mask style"):
        masks.add_mask(img, TEMPLATE, np.random.default_rng(0), style="scarf")


def test_mask_follows_rotation_and_scale():
    angle = np.deg2rad(30)
    rot = 1.5 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    lms = (TEMPLATE - 56) @ rot.T + 100
    poly = masks.mask_polygon(lms, "cloth")
    ref = (masks.mask_polygon(TEMPLATE, "cloth") - 56) @ rot.T + 100
    np.testing.assert_allclose(poly, ref, atol=1e-3)


# --- NIR ----------------------------------------------------------------------------------

def test_simulated_nir_is_grey_deterministic_and_red_weighted():
    img = _face()
    a, pa = nir.simulate_nir(img, np.random.default_rng(1))
    b, pb = nir.simulate_nir(img, np.random.default_rng(1))
    assert np.array_equal(a, b) and pa == pb
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2])
    p = nir.NIRParams.sample(np.random.default_rng(5))
    assert abs(sum(p.weights) - 1) < 1e-9 and p.weights[0] > p.weights[1] > p.weights[2]
    assert 0.65 <= p.gamma <= 0.9 and 2 <= p.noise <= 6
    # Without noise or vignetting, a red patch comes out brighter than a blue one of equal strength.
    flat = nir.NIRParams((0.7, 0.22, 0.08), 0.6, 1.0, 1.0, 0.0, 0.0)
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 200
    blue = np.zeros((32, 32, 3), np.uint8)
    blue[..., 2] = 200
    r, _ = nir.simulate_nir(red, np.random.default_rng(0), flat)
    bl, _ = nir.simulate_nir(blue, np.random.default_rng(0), flat)
    assert r.mean() == pytest.approx(140, abs=1) and bl.mean() == pytest.approx(16, abs=1)
    with pytest.raises(ValueError):
        nir.simulate_nir(img[..., 0], np.random.default_rng(0))


# --- scenes -------------------------------------------------------------------------------

def _dot_source(k: int) -> scenes.FaceSource:
    """A 128x128 'face' whose 5 landmarks are bright dots, box around them."""
    lms = (TEMPLATE - 56) * 0.9 + 64 + k
    yy, xx = np.mgrid[0:128, 0:128]
    img = np.full((128, 128, 3), 40, np.float64)
    for x, y in lms:
        img[..., 1] += 200 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
    box = np.array([lms[:, 0].min() - 20, lms[:, 1].min() - 25, lms[:, 0].max() + 20, lms[:, 1].max() + 15])
    return scenes.FaceSource(np.clip(img, 0, 255).astype(np.uint8), box.astype(np.float32), lms.astype(np.float32))


def test_composite_scenes_have_exact_labels_and_are_deterministic():
    from torchvision.ops import box_iou

    rng = np.random.default_rng(0)
    backgrounds = [np.zeros((200, 300, 3), np.uint8)]  # dark: only the pasted dots are green
    sources = [_dot_source(k) for k in range(3)]
    a = scenes.compose_scene(sources, backgrounds, np.random.default_rng(7), size=(240, 320), n_faces=(3, 3),
                             face_size=(60, 90))
    b = scenes.compose_scene(sources, backgrounds, np.random.default_rng(7), size=(240, 320), n_faces=(3, 3),
                             face_size=(60, 90))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert len(a.boxes) >= 2
    assert (a.boxes[:, :2] >= 0).all() and (a.boxes[:, 2] < 320).all() and (a.boxes[:, 3] < 240).all()
    iou = box_iou(torch.as_tensor(a.boxes), torch.as_tensor(a.boxes)).numpy()
    assert np.allclose(iou[~np.eye(len(iou), dtype=bool)], 0)
    g = a.image[..., 1].astype(np.float64)
    yy, xx = np.mgrid[0:240, 0:320]
    for face in a.landmarks:
        for x, y in face:
            win = (((xx - x) ** 2 + (yy - y) ** 2) <= 16) * np.clip(g - 45, 0, None)
            cx, cy = (win * xx).sum() / win.sum(), (win * yy).sum() / win.sum()
            assert abs(cx - x) < 0.5 and abs(cy - y) < 0.5
    del rng


def test_shuffled_background_keeps_the_pixels_of_a_real_photo():
    photo = np.random.default_rng(0).integers(0, 255, size=(64, 96, 3), dtype=np.uint8)
    bg = scenes.shuffled_background(photo, (64, 96), 16, np.random.default_rng(1))
    assert bg.shape == (64, 96, 3)
    assert np.array_equal(bg, scenes.shuffled_background(photo, (64, 96), 16, np.random.default_rng(1)))


# --- augmentation and datasets --------------------------------------------------------------

def test_hflip_mirrors_landmarks_and_boxes_consistently():
    img = np.zeros((50, 80, 3), np.uint8)
    lms = np.array([[10, 20], [30, 21], [20, 30], [12, 40], [28, 41]], np.float32)
    for x, y in lms.astype(int):
        img[y, x] = 255
    box = np.array([[5.0, 10.0, 35.0, 45.0]])
    f_img, f_lms, f_box = augment.hflip(img, lms, box)
    for x, y in f_lms.astype(int):
        assert f_img[y, x].max() == 255
    assert f_lms[0, 0] < f_lms[1, 0], "the left eye stays first (leftmost) after the flip"
    np.testing.assert_allclose(f_box, [[79 - 35, 10, 79 - 5, 45]])
    back = augment.hflip(f_img, f_lms, f_box)
    assert np.array_equal(back[0], img) and np.allclose(back[1], lms) and np.allclose(back[2], box)


def _prepared(n: int = 6) -> PreparedSet:
    rng = np.random.default_rng(0)
    aligned = rng.integers(0, 255, size=(n, 112, 112, 3), dtype=np.uint8)
    df = pd.DataFrame({c: [""] * n for c in COLUMNS})
    df["identity"] = ["b", "a", "b", "c", "a", "c"][:n]
    df["packed_index"] = range(n)
    return PreparedSet("lfw", "smoke", df, df.iloc[:0], aligned, None, {})


def test_aligned_faces_augmentation_is_seeded_per_sample_and_epoch():
    ps = _prepared()
    ds = AlignedFaces(ps, augment=augment.FlipJitter(flip_p=0.5, max_shift=4), seed=11)
    assert ds.classes == ["a", "b", "c"] and [ds[i][1] for i in range(6)] == [1, 0, 1, 2, 0, 2]
    x0 = torch.stack([ds[i][0] for i in range(6)])
    x0_reverse = torch.stack([ds[i][0] for i in reversed(range(6))]).flip(0)
    assert torch.equal(x0, x0_reverse), "a sample's augmentation does not depend on the order of access"
    ds.set_epoch(1)
    x1 = torch.stack([ds[i][0] for i in range(6)])
    assert not torch.equal(x0, x1)
    ds.set_epoch(0)
    assert torch.equal(x0, torch.stack([ds[i][0] for i in range(6)]))
    plain = AlignedFaces(ps, rows=[2, 3])
    x, y = plain[0]
    assert x.shape == (3, 112, 112) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x, torch.from_numpy(ps.aligned[2]).permute(2, 0, 1).float() / 255)


def test_loose_faces_move_landmarks_with_the_augmentation(tmp_path):
    from facelab.data.imageio import write_image

    ps = _prepared(2)
    lms = (TEMPLATE - 56) + 64
    img = np.zeros((128, 128, 3), np.uint8)
    for x, y in np.round(lms).astype(int):
        img[y - 1:y + 2, x - 1:x + 2] = 255
    for i in range(2):
        write_image(tmp_path / f"l{i}.png", img)
    ps.manifest["loose"] = ["l0.png", "l1.png"]
    for k, c in enumerate(LOOSE_LANDMARK_COLUMNS):
        ps.manifest[c] = float(np.round(lms).reshape(-1)[k])
    ps = PreparedSet(ps.dataset, ps.profile, ps.manifest, ps.rejected, ps.aligned, tmp_path, {})
    ds = LooseFaces(ps, augment=augment.FlipJitter(flip_p=1.0, max_shift=3), seed=2)
    x, _, lm = ds[0]
    for px, py in lm.numpy().round().astype(int):
        assert x[:, py, px].min() == 1.0


def test_composite_scene_dataset_and_collate():
    ds = CompositeScenes([_dot_source(0)], [np.zeros((100, 100, 3), np.uint8)], 4, seed=3, size=(96, 128),
                         n_faces=(1, 2), face_size=(20, 40), flip_p=0.5)
    images, targets = detection_collate([ds[i] for i in range(4)])
    assert images.shape == (4, 3, 96, 128)
    assert all(t["boxes"].shape[1:] == (4,) and t["landmarks"].shape[1:] == (5, 2) for t in targets)
    again = CompositeScenes([_dot_source(0)], [np.zeros((100, 100, 3), np.uint8)], 4, seed=3, size=(96, 128),
                            n_faces=(1, 2), face_size=(20, 40), flip_p=0.5)
    assert torch.equal(again[2][0], ds[2][0]) and torch.equal(again[2][1]["boxes"], ds[2][1]["boxes"])
