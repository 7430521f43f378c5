"""Single-stage detection targets and losses: SSD's anchor matching, hard negative mining and smooth-L1.

SSD (Liu et al., ECCV 2016, Section 2.2) as face detectors use it (S3FD, RetinaFace; Uniface, paper
004, Section III-C, names the same three parts):

* **Matching** (:func:`match_anchors`): an anchor is positive for the ground-truth box it overlaps most
  when that IoU is at least ``iou_threshold`` (Jaccard overlap, :func:`torchvision.ops.box_iou`);
  every ground-truth box is also given the single anchor that overlaps it most, whatever the IoU
  (SSD's first, bipartite step), so that no face goes without an anchor — unless no anchor overlaps it
  at all. Other anchors are background.
* **Hard negative mining** (:func:`multibox_loss`): of the background anchors, only the ``neg_pos``
  × (number of positives) with the highest classification loss count (3:1 in SSD), so that the
  thousands of easy background anchors do not swamp the loss; an image without a face contributes its
  ``neg_pos`` hardest background anchors (SSD has no rule for it: face-free images teach little background).
* **Regression**: smooth-L1 (Huber with β = 1) between the predicted offsets and the SSD encodings of
  the matched box (:func:`facelab.models.lefv_detector.encode_boxes`) and, where the face has them, its 5
  landmarks; summed over positives and divided by their number, as the classification term.

Boxes are ``xyxy`` pixels, anchors ``(cx, cy, w, h)`` pixels; landmarks ``[G, 5, 2]`` with NaN for a
face without landmarks (it then adds nothing to the landmark term).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torchvision.ops import box_convert, box_iou


@dataclass(frozen=True)
class Matches:
    """Per anchor: ``gt`` index of its matched box (-1: background), and its IoU with it."""

    gt: torch.Tensor
    iou: torch.Tensor


def match_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, *, iou_threshold: float = 0.35) -> Matches:
    """Match ``anchors [A, 4]`` (cx, cy, w, h) to ``gt_boxes [G, 4]`` (xyxy); rules in the module docstring."""
    a = anchors.shape[0]
    if gt_boxes.numel() == 0:
        return Matches(torch.full((a,), -1, dtype=torch.long, device=anchors.device), anchors.new_zeros(a))
    iou = box_iou(box_convert(anchors, "cxcywh", "xyxy"), gt_boxes)  # [A, G]
    best_iou, best_gt = iou.max(dim=1)
    gt = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))
    # every face gets its best anchor (later faces win a shared anchor, as SSD's loop does), provided
    # that anchor overlaps it at all: a box no anchor touches stays unmatched rather than regressed
    # from an arbitrary anchor
    overlap, best_anchor = iou.max(dim=0)  # [G]
    faces = torch.arange(gt_boxes.shape[0], device=gt.device)[overlap > 0]
    gt[best_anchor[faces]] = faces
    best_iou[best_anchor[faces]] = overlap[faces]
    return Matches(gt, best_iou)


def multibox_loss(logits: torch.Tensor, box_offsets: torch.Tensor, landmark_offsets: torch.Tensor,
                  targets: list[dict], anchors: torch.Tensor, *, neg_pos: int = 3, iou_threshold: float = 0.35,
                  landmark_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The detection loss of a batch.

    ``logits [B, A, 2]``, ``box_offsets [B, A, 4]``, ``landmark_offsets [B, A, 10]``: head outputs;
    ``targets[i]``: ``{"boxes": [G, 4] xyxy, "landmarks": [G, 5, 2]}`` of image ``i``; ``anchors [A, 4]``.
    Returns ``{"loss", "cls", "box", "landmarks", "positives"}`` (the three terms each divided by the
    number of positives in the batch, at least 1).
    """
    from facelab.models.lefv_detector import encode_boxes, encode_landmarks

    b = logits.shape[0]
    labels = torch.zeros(logits.shape[:2], dtype=torch.long, device=logits.device)
    box_t = torch.zeros_like(box_offsets, dtype=torch.float32)
    lm_t = torch.zeros_like(landmark_offsets, dtype=torch.float32)
    lm_valid = torch.zeros(logits.shape[:2], dtype=torch.bool, device=logits.device)
    for i, t in enumerate(targets):
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32, device=logits.device).reshape(-1, 4)
        m = match_anchors(anchors, boxes, iou_threshold=iou_threshold)
        pos = m.gt >= 0
        if not pos.any():
            continue
        labels[i, pos] = 1
        box_t[i, pos] = encode_boxes(boxes[m.gt[pos]], anchors[pos])
        marks = t.get("landmarks")
        if marks is not None:
            marks = torch.as_tensor(marks, dtype=torch.float32, device=logits.device).reshape(-1, 5, 2)
            has = torch.isfinite(marks).all(dim=(1, 2))
            ok = pos.clone()
            ok[pos] = has[m.gt[pos]]
            if ok.any():
                lm_t[i, ok] = encode_landmarks(marks[m.gt[ok]], anchors[ok])
                lm_valid[i, ok] = True
    positive = labels == 1
    n_pos = positive.sum()
    ce = F.cross_entropy(logits.float().reshape(-1, 2), labels.reshape(-1), reduction="none").reshape(b, -1)
    # hard negatives: per image, the neg_pos * positives background anchors with the largest loss
    with torch.no_grad():
        neg_loss = ce.detach().masked_fill(positive, -1.0)
        order = neg_loss.argsort(dim=1, descending=True)
        rank = order.argsort(dim=1)
        n_neg = (neg_pos * positive.sum(dim=1, keepdim=True)).clamp(max=positive.shape[1] - 1)
        n_neg = torch.where(positive.sum(dim=1, keepdim=True) > 0, n_neg, torch.full_like(n_neg, neg_pos))
        negative = (rank < n_neg) & ~positive
    denom = n_pos.clamp(min=1).float()
    cls = ce[positive | negative].sum() / denom
    box = F.smooth_l1_loss(box_offsets.float()[positive], box_t[positive], reduction="sum") / denom
    lms = (F.smooth_l1_loss(landmark_offsets.float()[lm_valid], lm_t[lm_valid], reduction="sum") / denom
           if lm_valid.any() else logits.new_zeros((), dtype=torch.float32))
    return {"loss": cls + box + landmark_weight * lms, "cls": cls, "box": box, "landmarks": lms,
            "positives": n_pos}
