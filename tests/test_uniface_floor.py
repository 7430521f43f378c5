"""Chapter 5's ImageNet floor: the features it scores, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch.nn import functional as F

from facelab.experiments import uniface_floor as X
from facelab.models.uniface import BACKBONES, to_input

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _body(seed: int = 0):
    torch.manual_seed(seed)
    return torchvision.models.mobilenet_v2(weights=None).features.eval()


def test_centre_boxes_are_central_squares_in_each_images_pixels():
    b = X.centre_boxes([(250, 250), (100, 200)], 128)
    np.testing.assert_allclose(b, [[61, 61, 189, 189], [36, -14, 164, 114]])


def test_a_whole_image_box_gives_each_taps_normalised_global_mean():
    # at 224 px the stride-16 tap is 14x14 and the stride-32 tap 7x7: RoIAlign's 7x7 bins with 2x2 samples then
    # average to exactly the map's mean (borders clamp), so the feature must equal the global means
    body = _body()
    img = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    got = X.whole_image_roi_features(body, [img], np.array([[0, 0, 224, 224]], np.float32), size=224)
    taps = [i for i, _, _ in BACKBONES["mobilenet_v2"][1:]]
    x, means = to_input(img), []
    with torch.no_grad():
        for i, layer in enumerate(body):
            x = layer(x)
            if i in taps:
                means.append(F.normalize(x.mean(dim=(2, 3)), dim=1))
    want = torch.cat(means, dim=1).numpy()
    assert got.shape == (1, 96 + 320)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_the_roi_reads_only_the_box():
    body = _body()
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    other = img.copy()
    other[:, 200:] = rng.integers(0, 256, (300, 100, 3), dtype=np.uint8)  # changed far right of the box
    box = np.array([[20, 20, 120, 120]], np.float32)
    a = X.whole_image_roi_features(body, [img], box, size=300)
    b = X.whole_image_roi_features(body, [other], box, size=300)
    c = X.whole_image_roi_features(body, [other], np.array([[150, 150, 290, 290]], np.float32), size=300)
    # the stride-16 part sees a receptive field wider than 80 px, so only require it to move much less
    assert np.abs(a - b).max() < 0.5 * np.abs(a - c).max()


def test_crop_features_are_the_pooled_last_map_and_batching_does_not_change_them():
    body = _body()
    crops = np.random.default_rng(2).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    one = X.crop_features(body, crops, batch_size=5)
    two = X.crop_features(body, crops, batch_size=2)
    with torch.no_grad():
        want = body(to_input(crops)).mean(dim=(2, 3)).numpy()
    assert one.shape == (5, 1280)
    np.testing.assert_allclose(one, want, atol=1e-5)
    np.testing.assert_allclose(two, want, atol=1e-5)


def test_imagenet_body_loads_the_packaged_weights():
    body = X.imagenet_body()
    assert not body.training
    assert len(body) == 19
    # not torchvision's random initialisation: the first BatchNorm's running mean is non-zero
    assert body[0][1].running_mean.abs().sum() > 0


def test_untrained_student_embeds_the_given_face_in_input_pixels_and_batching_does_not_matter():
    from facelab import create_model
    from facelab.models.uniface import pad_to_square

    torch.manual_seed(0)
    model = create_model("uniface_a").eval()
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (250, 200, 3), dtype=np.uint8) for _ in range(3)]
    boxes = np.array([[50, 60, 150, 180]] * 3, np.float32)
    marks = np.array([[[80, 100], [120, 100], [100, 125], [85, 150], [115, 150]]] * 3, np.float32)
    got = X.untrained_student_features(model, images, boxes, marks, size=160, batch_size=2)
    sq, scale = pad_to_square(images[1], 160)
    with torch.no_grad():
        out = model(to_input(sq))
        want = model.embed(out, torch.as_tensor(boxes[1:2]) * scale, torch.as_tensor(marks[1:2]) * scale,
                           torch.zeros(1, dtype=torch.long), 160).numpy()
    assert got.shape == (3, 128)
    np.testing.assert_allclose(got[1:2], want, atol=1e-4)
    assert not np.allclose(got[0], got[1])


def test_floor_frame_pairs_folds_and_names_the_direction():
    from types import SimpleNamespace

    from facelab.experiments.uniface_report import floor_frame

    def acc(folds):
        return {"accuracy": float(np.mean(folds)), "accuracy_sd": float(np.std(folds)), "n_pairs": 200,
                "folds": list(map(float, folds))}

    base = np.array([70, 72, 74, 76, 78, 70, 72, 74, 76, 78], float)
    floor = SimpleNamespace(metrics={"table1": {"aligned_crop": acc(base), "whole_image_roi": acc(base),
                                                "untrained_student": acc(base - 10)}})
    student = SimpleNamespace(metrics={"table1": acc(base - 5 + np.array([1, -1] * 5))})
    df = floor_frame({"A": student}, floor)
    row = df.loc["Ours, model A (primary) (mimic-trained)"]
    assert row["minus the fed-whole floor"] == "-5.00 ± 1.00"
    assert row["minus the fed-whole floor: verdict"] == "below the floor"
    assert row["minus model A before training: verdict"] == "above untrained A"
    close = SimpleNamespace(metrics={"table1": acc(base + np.array([3, -3] * 5) + 1)})
    assert floor_frame({"A": close}, floor).iloc[-1]["minus the fed-whole floor: verdict"] == "not resolved"
    # the same number of pairs from another data manifest is not paired
    floor.provenance, student.provenance = {"data_manifest_hash": "a"}, {"data_manifest_hash": "b"}
    assert floor_frame({"A": student}, floor).iloc[-1]["minus the fed-whole floor: verdict"] == "not compared"


def test_the_box_is_scaled_to_the_padded_resized_input():
    # a 100x200 (H x W) image at 224 px: padded to 200x200 at the bottom, scale 224/200; a non-square box off the
    # diagonal; the reference pads, resizes and RoI-aligns by hand
    import cv2
    from torchvision.ops import roi_align

    body = _body()
    img = np.random.default_rng(4).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    box = np.array([[120, 10, 190, 60]], np.float32)  # x0 y0 x1 y1 in original pixels
    got = X.whole_image_roi_features(body, [img], box, size=224)
    canvas = np.zeros((200, 200, 3), np.uint8)
    canvas[:100] = img
    x = to_input(cv2.resize(canvas, (224, 224), interpolation=cv2.INTER_LINEAR))
    roi = torch.tensor([[0.0, 120 * 1.12, 10 * 1.12, 190 * 1.12, 60 * 1.12]])
    parts = []
    with torch.no_grad():
        for i, layer in enumerate(body):
            x = layer(x)
            if i in (13, 17):
                r = roi_align(x, roi, 7, spatial_scale=1 / (16 if i == 13 else 32), sampling_ratio=2, aligned=True)
                parts.append(F.normalize(r.mean(dim=(2, 3)), dim=1))
            if i == 17:
                break
    np.testing.assert_allclose(got, torch.cat(parts, dim=1).numpy(), atol=1e-5)
    swapped = X.whole_image_roi_features(body, [img], box[:, [1, 0, 3, 2]], size=224)
    assert not np.allclose(got, swapped, atol=1e-3)


def test_features_refuse_a_network_in_training_mode():
    body = _body().train()
    with pytest.raises(ValueError, match="eval mode"):
        X.crop_features(body, np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError, match="eval mode"):
        X.whole_image_roi_features(body, [np.zeros((50, 50, 3), np.uint8)], np.zeros((1, 4), np.float32), size=64)
