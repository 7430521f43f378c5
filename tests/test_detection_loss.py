"""SSD-style matching, hard negative mining and the multibox loss (facelab.losses.detection)."""

from __future__ import annotations

import pytest
import torch

from facelab.losses.detection import match_anchors, multibox_loss
from facelab.models.lefv_detector import encode_boxes


def _anchors():
    # four anchors of side 10 on a row, centres 5, 15, 25, 35
    return torch.tensor([[5.0, 5, 10, 10], [15, 5, 10, 10], [25, 5, 10, 10], [35, 5, 10, 10]])


def test_matching_by_iou_and_every_face_gets_its_best_anchor():
    anchors = _anchors()
    gt = torch.tensor([[0.0, 0, 10, 10],     # = anchor 0 exactly
                       [21.0, 0, 29, 10]])   # IoU 0.8 with anchor 2 only
    m = match_anchors(anchors, gt, iou_threshold=0.5)
    assert m.gt.tolist() == [0, -1, 1, -1]
    assert m.iou[0] == pytest.approx(1.0) and m.iou[2] == pytest.approx(0.8)
    # a tiny face below every threshold still gets the anchor that overlaps it most
    tiny = torch.tensor([[33.0, 3, 35, 5]])
    m = match_anchors(anchors, tiny, iou_threshold=0.5)
    assert m.gt.tolist() == [-1, -1, -1, 0]
    # no face: all background
    assert match_anchors(anchors, torch.zeros(0, 4)).gt.tolist() == [-1] * 4


def test_hard_negative_mining_keeps_neg_pos_negatives_with_the_largest_loss():
    anchors = _anchors()
    target = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "landmarks": torch.full((1, 5, 2), float("nan"))}]
    # anchor 0 positive; background logits make anchor 3 the hardest negative, then 1, then 2
    logits = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [0.0, -2.0], [0.0, 3.0]]])
    zeros4, zeros10 = torch.zeros(1, 4, 4), torch.zeros(1, 4, 10)
    ce = torch.nn.functional.cross_entropy(logits[0], torch.tensor([1, 0, 0, 0]), reduction="none")
    out = multibox_loss(logits, zeros4, zeros10, target, anchors, neg_pos=1, iou_threshold=0.5)
    assert float(out["cls"]) == pytest.approx(float(ce[0] + ce[3]))  # 1 positive + 1 hardest negative
    out2 = multibox_loss(logits, zeros4, zeros10, target, anchors, neg_pos=2, iou_threshold=0.5)
    assert float(out2["cls"]) == pytest.approx(float(ce[0] + ce[3] + ce[1]))
    assert int(out["positives"]) == 1 and float(out["landmarks"]) == 0.0  # NaN landmarks add nothing


def test_regression_is_zero_at_the_encoded_target_and_smooth_l1_elsewhere():
    anchors = _anchors()
    box = torch.tensor([[1.0, 0, 11, 10]])
    marks = torch.tensor([[[3.0, 3], [7, 3], [5, 5], [3, 7], [7, 7]]])
    target = [{"boxes": box, "landmarks": marks}]
    enc = encode_boxes(box, anchors[:1])
    offsets = torch.zeros(1, 4, 4)
    offsets[0, 0] = enc[0]
    from facelab.models.lefv_detector import encode_landmarks

    lm = torch.zeros(1, 4, 10)
    lm[0, 0] = encode_landmarks(marks, anchors[:1])[0]
    out = multibox_loss(torch.zeros(1, 4, 2), offsets, lm, target, anchors, iou_threshold=0.5)
    assert float(out["box"]) == pytest.approx(0.0, abs=1e-6) and float(out["landmarks"]) == pytest.approx(0.0, abs=1e-6)
    off = offsets.clone()
    off[0, 0, 0] += 0.5  # smooth-L1 at 0.5: 0.5 * 0.5^2
    assert float(multibox_loss(torch.zeros(1, 4, 2), off, lm, target, anchors, iou_threshold=0.5)["box"]) == \
        pytest.approx(0.125)


def test_loss_trains_a_detector_towards_its_targets():
    from facelab import create_model

    torch.manual_seed(0)
    model = create_model("lefv_detector").train()
    x = torch.randn(2, 3, 64, 64)
    anchors = model.anchors(64, 64)
    targets = [{"boxes": torch.tensor([[10.0, 10, 40, 40]]), "landmarks": torch.full((1, 5, 2), float("nan"))},
               {"boxes": torch.zeros(0, 4), "landmarks": torch.zeros(0, 5, 2)}]
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    losses = []
    for _ in range(15):
        out = model(x)
        loss = multibox_loss(out["logits"], out["boxes"], out["landmarks"], targets, anchors)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
