"""The detector training loop (facelab.train.detection): flips, learning, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facelab import create_model
from facelab.train.detection import DetectorTrainConfig, fit_detector, flip_targets

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_flip_mirrors_boxes_and_swaps_left_and_right():
    t = {"boxes": np.array([[2.0, 3, 6, 9]]), "landmarks": np.array([[[3.0, 4], [5, 4], [4, 6], [3, 8], [5, 8]]])}
    f = flip_targets(t, width=10)
    assert f["boxes"].tolist() == [[3.0, 3, 7, 9]]
    # the left eye (x=3) becomes the right eye at 9 - 3 = 6; the right eye (x=5) the left one at 4
    assert f["landmarks"][0, 0].tolist() == [4.0, 4] and f["landmarks"][0, 1].tolist() == [6.0, 4]
    back = flip_targets(f, width=10)
    np.testing.assert_allclose(back["boxes"], t["boxes"]) and np.testing.assert_allclose(back["landmarks"], t["landmarks"])


def _toy(n=8, size=64):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 40, (n, size, size, 3)).astype(np.uint8)
    targets = []
    for i in range(n):
        x, y = rng.integers(4, 30, 2)
        images[i, y:y + 24, x:x + 24] = 220  # a bright square "face"
        targets.append({"boxes": np.array([[x, y, x + 23, y + 23]], np.float32),
                        "landmarks": np.full((1, 5, 2), np.nan, np.float32)})
    return images, targets


def test_training_lowers_the_loss_and_resumes_to_the_same_weights(tmp_path):
    images, targets = _toy()
    cfg = DetectorTrainConfig(epochs=4, batch_size=4, lr=3e-3)
    torch.manual_seed(0)
    model = create_model("lefv_detector")
    hist = fit_detector(model, images, targets, cfg, seed=0, progress=False)
    assert hist["loss"][-1] < hist["loss"][0]
    assert len(hist["images_per_s"]) == 4 and hist["positives_per_image"][0] >= 1
    # interrupted after epoch 2, resumed from its checkpoint: the same weights as the uninterrupted run
    ckpt = tmp_path / "det.pt"

    def stop(epoch, history):
        if epoch == 1:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    a = create_model("lefv_detector")
    with pytest.raises(KeyboardInterrupt):
        fit_detector(a, images, targets, cfg, seed=0, progress=False, checkpoint=ckpt, on_epoch=stop)
    torch.manual_seed(0)
    b = create_model("lefv_detector")
    hist_b = fit_detector(b, images, targets, cfg, seed=0, progress=False, checkpoint=ckpt)
    assert hist_b["loss"] == pytest.approx(hist["loss"])
    for (name, p1), p2 in zip(model.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(p1, p2, msg=name)


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="optimizer"):
        DetectorTrainConfig(epochs=1, optimizer="lbfgs").check()
    images, targets = _toy(2)
    with pytest.raises(ValueError, match="targets"):
        fit_detector(create_model("lefv_detector"), images, targets[:1], DetectorTrainConfig(epochs=1), progress=False)
