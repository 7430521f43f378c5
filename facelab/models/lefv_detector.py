"""LEFV's light face detector (paper 000, Section 3.1 and Table 2), and the ablation networks of Table 2.

Liu et al. (ICVIP 2019) describe the detector by its three "optimizing strategies" and its size,
not by a layer table; this module fills in the rest and says so:

* **Baseline** (Section 4.2: "the basic network with only seven stages following the VGG-style"):
  seven stages of 3×3 convolutions (BatchNorm + activation after each), the first of every stage at
  stride 2, as :data:`STAGES` lists. Widths and conv counts are ours (the paper gives none): chosen so
  that the full detector's float32 state (241,728 parameters plus the BatchNorm statistics: 0.948 MiB)
  is the paper's 0.95 MB (Table 3; its "MB" is MiB: MTCNN's three weight files are 1,990,986 B = 1.90 MiB, the size it prints for MTCNN), and
  so that CF's FLOP cut is near the paper's 5x. What SDC and CM then cost follows from our reading of
  them and was not fitted; Table 2's FLOP cells are therefore evidence about our design, not the paper's.
* **CF** (3.1.1, "convolution factorization"): every 3×3 convolution of the backbone but the stem
  (which sees only 3 channels) becomes a depthwise 3×3 + pointwise 1×1 pair (Table 1's second row),
  with BatchNorm + activation after each of the two, as MobileNets.
* **SDC** (3.1.2, "we take four successive subsamples of the input picture"): our reading is that the
  stride-1 convolutions of the first stages go, so the first layers are successive stride-2
  subsamplings (stages 1-4 at one conv each, then stage 5's first conv: 32× before any stride-1 layer) ("the lower sampling step can be used continuously to
  avoid feature mapping in large space dimension"): stages 1-2 lose their second conv (:data:`SDC_STAGES`).
* **CM** (3.1.3, "a smaller dilation convolution parameter to restrict the context area. This reduces
  the number of channels in each branch"): on every detection map, an SSH-style context module
  (Najibi et al., ICCV 2017, the paper's ref. [7]) of three branches with dilations 1, 2, 3 on half, a
  quarter and a quarter of the map's channels (each branch sees only its own channels), concatenated
  and added to the map (:class:`ContextModule`).
* **Leaky ReLU** (eq. 2; slope λ unspecified: 0.1, ours) after every convolution; ``activation="relu"``
  builds the ReLU row the paper promises ("we experimentally demonstrated the improvement") and never reports.
* **Heads, anchors, matching, losses, NMS** are not described at all. We use a single-stage design
  (SSD/FaceBoxes family): detection maps at strides 8, 16, 32, 64, 128 (the outputs of stages 3-7),
  square anchors of :data:`ANCHOR_SIZES` pixels per map, and per anchor a 1×1-conv head giving 2 class
  logits, 4 box offsets and 10 landmark offsets (5 points) in SSD's encoding
  (:func:`encode_boxes` / :func:`decode_boxes`, variances 0.1 / 0.2), with NMS by
  :func:`torchvision.ops.batched_nms`. The heads are identical in all variants, so Table 2's rows differ
  only where the paper says they do.

Boxes are ``xyxy`` in input pixels; landmarks ``[5, 2]`` (x, y) in the order left eye, right eye, nose,
left mouth corner, right mouth corner (MTCNN's). Input: ``float[B, 3, H, W]`` RGB in [-1, 1]
(:func:`facelab.train.inputs.to_model_input`); any ``H, W`` (anchors follow the map sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.ops import batched_nms

from facelab.registry import register_model

#: Backbone stages ``(name, out_channels, convs)``; the first conv of each stage has stride 2, the
#: others stride 1. With SDC, stages 1-4 keep only their stride-2 conv.
STAGES: tuple[tuple[str, int, int], ...] = (
    # name     width  convs      output stride
    ("stage1", 8, 2),          # 2
    ("stage2", 16, 2),         # 4
    ("stage3", 32, 1),         # 8   -> detection map 1
    ("stage4", 64, 1),         # 16  -> detection map 2
    ("stage5", 128, 2),        # 32  -> detection map 3
    ("stage6", 192, 2),        # 64  -> detection map 4
    ("stage7", 192, 2),        # 128 -> detection map 5
)
#: Stages whose outputs are detection maps, and the square anchor sides (pixels) on each.
DETECTION_STAGES: tuple[str, ...] = ("stage3", "stage4", "stage5", "stage6", "stage7")
ANCHOR_SIZES: tuple[tuple[float, ...], ...] = ((10.0, 16.0), (24.0, 32.0), (48.0, 64.0), (96.0, 128.0),
                                               (192.0, 256.0, 384.0))
#: Stages that SDC reduces to their stride-2 convolution: with stages 3-4 single-conv already, the
#: first four layers are then four successive stride-2 subsamplings.
SDC_STAGES: tuple[str, ...] = ("stage1", "stage2")
#: Context-module branches: (dilation, share of the map's channels).
CONTEXT_BRANCHES: tuple[tuple[int, float], ...] = ((1, 0.5), (2, 0.25), (3, 0.25))
LEAKY_SLOPE = 0.1
#: SSD's box-encoding variances (centre, size).
VARIANCES = (0.1, 0.2)
N_LANDMARKS = 5
ACTIVATIONS = ("leaky_relu", "relu")


def _act(activation: str) -> nn.Module:
    if activation == "leaky_relu":
        return nn.LeakyReLU(LEAKY_SLOPE, inplace=True)
    if activation == "relu":
        return nn.ReLU(inplace=True)
    raise ValueError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")


class ConvBNAct(nn.Sequential):
    """``k×k`` conv (no bias) -> BatchNorm -> activation; ``(B, in, H, W) -> (B, out, H/stride, W/stride)``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1, groups: int = 1,
                 kernel_size: int = 3, activation: str = "leaky_relu") -> None:
        pad = dilation * (kernel_size - 1) // 2
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, dilation=dilation,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = _act(activation)


def conv3x3(in_channels: int, out_channels: int, *, stride: int = 1, dilation: int = 1, separable: bool,
            activation: str) -> nn.Module:
    """A standard 3×3 conv block, or (``separable``) Table 1's depthwise 3×3 + pointwise 1×1 pair."""
    if not separable:
        return ConvBNAct(in_channels, out_channels, stride=stride, dilation=dilation, activation=activation)
    return nn.Sequential(ConvBNAct(in_channels, in_channels, stride=stride, dilation=dilation, groups=in_channels,
                                   activation=activation),
                         ConvBNAct(in_channels, out_channels, kernel_size=1, activation=activation))


class ContextModule(nn.Module):
    """``(B, C, H, W) -> (B, C, H, W)``: the map's channels split into :data:`CONTEXT_BRANCHES` groups, each
    through a 3×3 convolution of small dilation on its own channels, concatenated and added to the map.

    Splitting the channels is what "reduces the number of channels in each branch" (3.1.3) buys: a
    branch sees only its group, so the module costs a fraction of a full-width convolution.
    """

    def __init__(self, channels: int, *, separable: bool, activation: str) -> None:
        super().__init__()
        widths = [int(round(channels * share)) for _, share in CONTEXT_BRANCHES]
        widths[-1] = channels - sum(widths[:-1])
        self.widths = tuple(widths)
        self.branches = nn.ModuleList(
            conv3x3(w, w, dilation=d, separable=separable, activation=activation)
            for (d, _), w in zip(CONTEXT_BRANCHES, widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.widths, dim=1)
        return x + torch.cat([b(p) for b, p in zip(self.branches, parts)], dim=1)


@dataclass(frozen=True)
class Detections:
    """One image's detections after NMS: ``boxes float[K, 4]`` xyxy pixels, ``scores float[K]``,
    ``landmarks float[K, 5, 2]`` pixels, highest score first."""

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor


class LEFVDetector(nn.Module):
    """``float[B, 3, H, W] -> {"logits": [B, A, 2], "boxes": [B, A, 4], "landmarks": [B, A, 10]}``.

    Raw head outputs over all ``A`` anchors of all detection maps (map by map, row-major, anchor
    sizes innermost: the order of :meth:`anchors`); ``boxes``/``landmarks`` are SSD offsets.
    ``separable`` (CF), ``sdc``, ``context`` (CM) and ``activation`` select the Table 2 network.
    """

    def __init__(self, *, separable: bool = True, sdc: bool = True, context: bool = True,
                 activation: str = "leaky_relu") -> None:
        super().__init__()
        _act(activation)  # validates
        self.separable, self.sdc, self.context, self.activation = separable, sdc, context, activation
        stages: dict[str, nn.Module] = {}
        c_in = 3
        for name, width, convs in STAGES:
            n = 1 if (sdc and name in SDC_STAGES) else convs
            # the stem sees 3 channels: a depthwise split would cost more than it saves (MobileNets keep it)
            layers = [conv3x3(c_in, width, stride=2, separable=separable and c_in > 3, activation=activation)]
            layers += [conv3x3(width, width, separable=separable, activation=activation) for _ in range(n - 1)]
            stages[name] = nn.Sequential(*layers)
            c_in = width
        self.stages = nn.ModuleDict(stages)
        widths = dict((name, width) for name, width, _ in STAGES)
        self.contexts = nn.ModuleDict({
            name: (ContextModule(widths[name], separable=separable, activation=activation) if context else nn.Identity())
            for name in DETECTION_STAGES})
        per_anchor = 2 + 4 + 2 * N_LANDMARKS
        self.heads = nn.ModuleDict({
            name: nn.Conv2d(widths[name], len(sizes) * per_anchor, 1)
            for name, sizes in zip(DETECTION_STAGES, ANCHOR_SIZES)})
        self.strides = tuple(2 ** (i + 1) for i, (name, _, _) in enumerate(STAGES) if name in DETECTION_STAGES)
        self.input_size = (3, 480, 640)  # a VGA image, for summaries and latency
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)  # Section 4: "We use Xavier method to initialize parameters"
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The detection maps (after the context modules), one per :data:`DETECTION_STAGES` entry."""
        maps = []
        for name, stage in self.stages.items():
            x = stage(x)
            if name in self.contexts:
                maps.append(self.contexts[name](x))
        return maps

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = []
        for name, f in zip(DETECTION_STAGES, self.feature_maps(x)):
            h = self.heads[name](f)  # [B, k * 16, H, W]
            b, _, hh, ww = h.shape
            out.append(h.view(b, -1, 16, hh, ww).permute(0, 3, 4, 1, 2).reshape(b, -1, 16))
        y = torch.cat(out, dim=1)
        return {"logits": y[..., :2], "boxes": y[..., 2:6], "landmarks": y[..., 6:]}

    def map_sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """``(H, W)`` of each detection map for an input of ``height × width`` (each stride-2 3×3
        conv with padding 1 maps n to ``(n + 1) // 2``)."""
        sizes, h, w = [], height, width
        for name, _, _ in STAGES:
            h, w = (h + 1) // 2, (w + 1) // 2
            if name in DETECTION_STAGES:
                sizes.append((h, w))
        return sizes

    def anchors(self, height: int, width: int) -> torch.Tensor:
        """``float[A, 4]`` anchors ``(cx, cy, w, h)`` in pixels for a ``height × width`` input, in the
        order of :meth:`forward`'s outputs: centres at ``(j + 0.5) * stride``."""
        out = []
        for (mh, mw), stride, sizes in zip(self.map_sizes(height, width), self.strides, ANCHOR_SIZES):
            ys, xs = torch.meshgrid(torch.arange(mh, dtype=torch.float32), torch.arange(mw, dtype=torch.float32),
                                    indexing="ij")
            cx, cy = (xs + 0.5) * stride, (ys + 0.5) * stride
            s = torch.tensor(sizes, dtype=torch.float32)
            k = len(sizes)
            a = torch.stack([cx[..., None].expand(mh, mw, k), cy[..., None].expand(mh, mw, k),
                             s.expand(mh, mw, k), s.expand(mh, mw, k)], dim=-1)
            out.append(a.reshape(-1, 4))
        return torch.cat(out)

    @torch.no_grad()
    def detect(self, x: torch.Tensor, *, score_threshold: float = 0.5, iou_threshold: float = 0.4,
               pre_nms_top_k: int = 5000, max_detections: int = 750) -> list[Detections]:
        """Decoded detections per image of the batch: anchors scoring above ``score_threshold``, the
        ``pre_nms_top_k`` best of them (RetinaFace's 5000), NMS (:func:`torchvision.ops.batched_nms`),
        at most ``max_detections``."""
        out = self(x)
        anchors = self.anchors(x.shape[-2], x.shape[-1]).to(x.device)
        scores = out["logits"].float().softmax(-1)[..., 1]
        results = []
        for i in range(x.shape[0]):
            keep = scores[i] > score_threshold
            if int(keep.sum()) > pre_nms_top_k:
                keep = torch.zeros_like(keep)
                keep[scores[i].topk(pre_nms_top_k).indices] = True
            boxes = decode_boxes(out["boxes"][i][keep].float(), anchors[keep])
            marks = decode_landmarks(out["landmarks"][i][keep].float(), anchors[keep])
            s = scores[i][keep]
            order = batched_nms(boxes, s, torch.zeros_like(s, dtype=torch.long), iou_threshold)[:max_detections]
            results.append(Detections(boxes[order], s[order], marks[order]))
        return results


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """SSD offsets ``[N, 4]`` of ``xyxy`` boxes ``[N, 4]`` relative to ``(cx, cy, w, h)`` anchors ``[N, 4]``."""
    wh = boxes[:, 2:] - boxes[:, :2]
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    return torch.cat([(c - anchors[:, :2]) / (VARIANCES[0] * anchors[:, 2:]),
                      torch.log(wh.clamp_min(1e-6) / anchors[:, 2:]) / VARIANCES[1]], dim=1)


def decode_boxes(offsets: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_boxes`: ``xyxy`` boxes ``[N, 4]``."""
    c = anchors[:, :2] + offsets[:, :2] * VARIANCES[0] * anchors[:, 2:]
    wh = anchors[:, 2:] * torch.exp(offsets[:, 2:] * VARIANCES[1])
    return torch.cat([c - wh / 2, c + wh / 2], dim=1)


def encode_landmarks(points: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Offsets ``[N, 10]`` of landmarks ``[N, 5, 2]`` (pixels) relative to ``(cx, cy, w, h)`` anchors."""
    return ((points - anchors[:, None, :2]) / (VARIANCES[0] * anchors[:, None, 2:])).reshape(len(points), -1)


def decode_landmarks(offsets: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`encode_landmarks`: ``[N, 5, 2]`` pixels."""
    return anchors[:, None, :2] + offsets.reshape(len(offsets), N_LANDMARKS, 2) * VARIANCES[0] * anchors[:, None, 2:]


#: Table 2's networks by registered name: (separable, sdc, context, activation).
VARIANTS: dict[str, tuple[bool, bool, bool, str]] = {
    "lefv_detector_baseline": (False, False, False, "leaky_relu"),
    "lefv_detector_cf": (True, False, False, "leaky_relu"),
    "lefv_detector_cf_sdc": (True, True, False, "leaky_relu"),
    "lefv_detector": (True, True, True, "leaky_relu"),           # CF + SDC + CM: the paper's detector
    "lefv_detector_relu": (True, True, True, "relu"),            # the ReLU row the paper promises
}


def _builder(name: str, separable: bool, sdc: bool, context: bool, activation: str):
    def build() -> LEFVDetector:
        return LEFVDetector(separable=separable, sdc=sdc, context=context, activation=activation)

    build.__name__ = name
    build.__doc__ = (f"LEFV detector, Table 2 network: CF={separable}, SDC={sdc}, CM={context}, {activation} "
                     "(facelab.models.lefv_detector).")
    return build


for _name, _args in VARIANTS.items():
    register_model(_builder(_name, *_args), kind="detector")

__all__ = ["ANCHOR_SIZES", "DETECTION_STAGES", "STAGES", "VARIANTS", "ContextModule", "Detections", "LEFVDetector",
           "decode_boxes", "decode_landmarks", "encode_boxes", "encode_landmarks"]
