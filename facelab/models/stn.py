"""Paper 002's model, one file: alignment learned with a spatial transformer in front of a residual recognition
network (Tang et al., "An End-to-End Face Recognition Method with Alignment Learning", Optik 2020).

Part 1 — the recognition network (Section 3.1, Table 1).

A residual network whose first 7x7 convolution is replaced by a 3x3 one. Table 1, literally:
four stages of 64 / 128 / 256 / 512 filters; each starts with one 3x3 convolution of stride 2
(the first of them is the 3x3 stem) followed by 2 / 4 / 8 / 2 residual units of two 3x3
convolutions; then dropout, a fully connected layer and batch-norm give the 512-d embedding
(trained with the ArcFace loss, :mod:`facelab.losses.margin`). That is 36 conv layers -- the
layout of SphereFace-36 (Liu et al. 2017, Table 2).

Choices the paper leaves open (each a keyword argument where it matters):

- Input size: not stated. We use 112 x 112 (ArcFace's crop; SphereFace used 112 x 96), which
  four stride-2 convolutions reduce to 7 x 7; a square crop keeps the similarity transform's
  single scale isotropic. ``input_size`` may be any multiple of 16.
- Normalisation and activation: not stated; ResNet's batch-norm after every conv and ReLU
  (residual unit: conv-BN-ReLU-conv-BN, add, ReLU; stage conv: conv-BN-ReLU).
- Dropout rate: not stated; 0.4, the value of insightface's dropout-FC-BN embedding head.
- Initialisation: torchvision's ResNet (Kaiming-normal convs, BN weight 1 and bias 0).

Part 2 — the spatial transformer (Sections 3.2-3.3, Table 2, eqs. (1), (2) and (6)).

A localization network looks at the loose face crop (down-sampled to 64x64) and predicts the
parameters of a 2-D transform; a grid generator maps every output pixel through it into the
input, and a bilinear sampler reads the aligned face there (Jaderberg et al. 2015). The aligned
face goes to the recognition network (part 1); identity labels are the
only supervision, so the transformer has to learn whatever alignment helps recognition.

Transform types (all in the normalised coordinates of :func:`torch.nn.functional.affine_grid`,
``align_corners=False``: x to the right, y down, the image spanning [-1, 1]; each maps an
*output* pixel (x_t, y_t) to the *input* point (x_s, y_s) it is read from):

============  ======  =====================================================================
identity         0    fixed centre crop: ``x_s = c x_t``, ``y_s = c y_t`` with the crop fraction c
similarity       4    (lambda, alpha, t1, t2): ``[[l cos a, -l sin a, t1], [l sin a, l cos a, t2]]``, eq. (6)
affine           6    ``[[t11, t12, t13], [t21, t22, t23]]``
projective       8    ``[[t11, t12, t13], [t21, t22, t23], [t31, t32, 1]]`` and division by z, eq. (1)
============  ======  =====================================================================

Every learned transform starts as the identity's centre crop: the localization network's last
FC layer has zero weights and the centre-crop parameters as bias (Jaderberg et al.'s
initialisation), so at step 0 all four models see the same face. Sampling is bilinear with
zeros outside the input (eq. 2's kernel summed over the image only): ``F.grid_sample``.
The affine-type grids come from ``F.affine_grid``; the projective grid is built here.

Choices the paper leaves open:

- Filter and unit counts of the localization network: Table 2 gives only the numbers of conv
  and FC layers. Conv widths 32 / 64 / 128 (doubling, as after each 2x2 pool) and 128 hidden FC
  units, each hidden FC followed by ReLU.
- The 64x64 down-sampling is bilinear with anti-aliasing.
- Sizes: the recognition net reads a 112x112 face (see part 1) and the
  transformer's input is a 144x144 loose crop, so the identity's centre crop keeps 112/144 =
  0.78 of it (the detector's box if the loose crop is about 1.3x the box). Both are arguments.
- The projective denominator z is clamped below at ``Z_MIN`` so that a degenerate prediction
  cannot divide by zero (z = 1 at the start, and a face crop needs z > 0).
"""


from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from facelab.layers import ConvNormAct
from facelab.registry import register_model

# ----------------------------------------------------------------------------- part 1: the recognition network

RECOGNITION_INPUT_SIZE = 112
EMBEDDING_DIM = 512
DROPOUT = 0.4
#: Total stride of the network: four stride-2 convolutions.
STRIDE = 16

# Table 1.   name     filters  residual units   ([3x3, filters] x1, S2 then [3x3; 3x3] x units)
STAGES: tuple[tuple[str, int, int], ...] = (
    ("conv1", 64, 2),
    ("conv2", 128, 4),
    ("conv3", 256, 8),
    ("conv4", 512, 2),
)


class ResidualUnit(nn.Module):
    """``x + BN(conv3x3(ReLU(BN(conv3x3(x)))))`` then ReLU; ``(B, C, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, *, activation_layer: Callable[..., nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv_a = ConvNormAct(channels, channels, kernel_size=3, activation_layer=activation_layer)
        self.conv_b = ConvNormAct(channels, channels, kernel_size=3, activation_layer=None)
        self.act = activation_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.conv_b(self.conv_a(x)))


class RecognitionResNet(nn.Module):
    """Paper 002's Table 1 network: ``(B, 3, S, S)`` face -> ``(B, 512)`` embedding.

    ``forward_features`` is the embedding (the output of the final batch-norm), ``forward_head``
    a plain linear classifier over ``num_classes`` (identity when 0). For ArcFace training use
    ``num_classes=0`` and :class:`facelab.losses.ArcFaceHead`, which holds the class weights.

    Named children: ``conv1`` ... ``conv4`` (each ``down`` = the stride-2 conv, then ``unit1``,
    ``unit2``, ...), ``dropout``, ``fc1``, ``bn``, and ``classifier`` when ``num_classes > 0``.
    """

    def __init__(
        self,
        *,
        input_size: int = RECOGNITION_INPUT_SIZE,
        embedding_dim: int = EMBEDDING_DIM,
        dropout: float = DROPOUT,
        num_classes: int = 0,
        activation_layer: Callable[..., nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if input_size <= 0 or input_size % STRIDE:
            raise ValueError(f"input_size must be a positive multiple of {STRIDE}, got {input_size}")
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.input_size = (3, input_size, input_size)
        self.num_features = embedding_dim
        self.num_classes = num_classes
        channels = 3
        for name, filters, units in STAGES:
            stage: OrderedDict[str, nn.Module] = OrderedDict(
                down=ConvNormAct(channels, filters, kernel_size=3, stride=2, activation_layer=activation_layer)
            )
            for i in range(units):
                stage[f"unit{i + 1}"] = ResidualUnit(filters, activation_layer=activation_layer)
            self.add_module(name, nn.Sequential(stage))
            channels = filters
        final = input_size // STRIDE
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(channels * final * final, embedding_dim)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.classifier = nn.Linear(embedding_dim, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, embedding_dim)`` embedding."""
        if x.shape[-2:] != self.input_size[1:]:
            raise ValueError(f"RecognitionResNet expects {self.input_size[1:]} inputs, got {tuple(x.shape[-2:])}")
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        return self.bn(self.fc1(self.dropout(x.flatten(1))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim) -> (B, num_classes)`` logits (identity when ``num_classes=0``)."""
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# ----------------------------------------------------------------------------- part 2: the spatial transformer

#: Side of the image the localization network sees (Section 3.1).
LOCALIZATION_INPUT = 64
#: Recognition network input (the transformer's output) and loose-crop input, in pixels.
OUTPUT_SIZE = 112
INPUT_SIZE = 144
#: Smallest projective denominator z allowed in the grid.
Z_MIN = 1e-3

#: Number of predicted parameters per transform type.
TRANSFORM_PARAMS: dict[str, int] = {"identity": 0, "similarity": 4, "affine": 6, "projective": 8}


class LocalizationSetting(NamedTuple):
    name: str
    conv_channels: tuple[int, ...]
    hidden_features: tuple[int, ...]


# Table 2 of paper 002 (its final MSEs live with the chapter's paper values).
# setting: name, conv3x3+BN+ReLU+maxpool(2) widths, hidden FC widths (+ the output FC)
LOCALIZATION_SETTINGS: dict[int, LocalizationSetting] = {
    1: LocalizationSetting("1conv1FC", (32,), ()),
    2: LocalizationSetting("2conv1FC", (32, 64), ()),
    3: LocalizationSetting("3conv1FC", (32, 64, 128), ()),
    4: LocalizationSetting("2conv2FC", (32, 64), (128,)),
    5: LocalizationSetting("3conv2FC", (32, 64, 128), (128,)),
}
#: The setting the paper chooses (Section 3.2: nearly setting 5's fit with fewer parameters).
DEFAULT_SETTING = 3


def _check_setting(setting: int) -> LocalizationSetting:
    if setting not in LOCALIZATION_SETTINGS:
        names = ", ".join(f"{k} ({v.name})" for k, v in LOCALIZATION_SETTINGS.items())
        raise ValueError(f"unknown localization setting {setting!r}: choose one of {names}")
    return LOCALIZATION_SETTINGS[setting]


def _check_transform(transform: str) -> int:
    if transform not in TRANSFORM_PARAMS:
        raise ValueError(f"unknown transform {transform!r}: choose one of {', '.join(TRANSFORM_PARAMS)}")
    return TRANSFORM_PARAMS[transform]


class LocalizationNet(nn.Module):
    """Paper 002's localization network: ``(B, C, H, W)`` image -> ``(B, num_outputs)``.

    The image is resized to 64x64, then ``setting``'s conv3x3 + BN + ReLU + max-pool(2) blocks
    and FC layers (Table 2) regress ``num_outputs`` numbers: the transform's parameters, or 10
    landmark coordinates for the Table 2 experiment. The last FC layer is ``fc_out``.
    """

    def __init__(
        self, *, num_outputs: int, setting: int = DEFAULT_SETTING, in_channels: int = 3, input_size: int = LOCALIZATION_INPUT
    ) -> None:
        super().__init__()
        spec = _check_setting(setting)
        if num_outputs <= 0:
            raise ValueError(f"num_outputs must be positive, got {num_outputs}")
        self.setting = setting
        self.input_size = input_size
        blocks: list[nn.Module] = []
        channels, size = in_channels, input_size
        for width in spec.conv_channels:
            blocks += [ConvNormAct(channels, width, kernel_size=3), nn.MaxPool2d(2)]
            channels, size = width, size // 2
        self.features = nn.Sequential(*blocks)
        hidden: list[nn.Module] = []
        features = channels * size * size
        for width in spec.hidden_features:
            hidden += [nn.Linear(features, width), nn.ReLU(inplace=True)]
            features = width
        self.hidden = nn.Sequential(*hidden)
        self.fc_out = nn.Linear(features, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        return self.fc_out(self.hidden(self.features(x).flatten(1)))


def centre_crop_matrix(crop_fraction: float, batch: int = 1, **tensor_kw) -> torch.Tensor:
    """``(batch, 3, 3)`` matrix of the centre crop keeping ``crop_fraction`` of each side."""
    m = torch.diag(torch.tensor([crop_fraction, crop_fraction, 1.0], **tensor_kw))
    return m.expand(batch, 3, 3)


def similarity_matrix(params: torch.Tensor) -> torch.Tensor:
    """``(B, 4)`` = (lambda, alpha, t1, t2) -> ``(B, 3, 3)``, eq. (6): scale, rotation, shift."""
    scale, angle, t1, t2 = params.unbind(1)
    cos, sin = scale * torch.cos(angle), scale * torch.sin(angle)
    zero, one = torch.zeros_like(scale), torch.ones_like(scale)
    return torch.stack([cos, -sin, t1, sin, cos, t2, zero, zero, one], 1).view(-1, 3, 3)


def affine_matrix(params: torch.Tensor) -> torch.Tensor:
    """``(B, 6)`` = (t11, t12, t13, t21, t22, t23) -> ``(B, 3, 3)`` with last row (0, 0, 1)."""
    last = params.new_tensor([0.0, 0.0, 1.0]).expand(params.shape[0], 3)
    return torch.cat([params, last], 1).view(-1, 3, 3)


def projective_matrix(params: torch.Tensor) -> torch.Tensor:
    """``(B, 8)`` = (t11, t12, t13, t21, t22, t23, t31, t32) -> ``(B, 3, 3)`` with t33 = 1, eq. (1)."""
    return torch.cat([params, params.new_ones(params.shape[0], 1)], 1).view(-1, 3, 3)


def output_coordinates(height: int, width: int, **tensor_kw) -> torch.Tensor:
    """``(height, width, 2)`` normalised (x_t, y_t) of the output pixel centres (``align_corners=False``)."""
    ys = (2 * torch.arange(height, **tensor_kw) + 1) / height - 1
    xs = (2 * torch.arange(width, **tensor_kw) + 1) / width - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], -1)


def projective_grid(matrix: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sampling grid of a projective transform, eq. (1): ``(B, 3, 3) -> (B, H, W, 2)``.

    ``(x_s, y_s) = (t11 x + t12 y + t13, t21 x + t22 y + t23) / z`` with
    ``z = t31 x + t32 y + t33`` for every output pixel centre ``(x, y)``; the layout is that of
    ``F.affine_grid`` (last axis = (x, y)), ready for ``F.grid_sample``.
    """
    height, width = size
    target = output_coordinates(height, width, dtype=matrix.dtype, device=matrix.device)
    homogeneous = torch.cat([target, torch.ones_like(target[..., :1])], -1)  # (H, W, 3)
    source = torch.einsum("bij,hwj->bhwi", matrix, homogeneous)
    return source[..., :2] / source[..., 2:].clamp(min=Z_MIN)


class SpatialTransformer(nn.Module):
    """``(B, C, H, W)`` loose crop -> ``(B, C, output_size, output_size)`` aligned face.

    ``transform`` is one of :data:`TRANSFORM_PARAMS`. ``crop_fraction`` is the part of each
    input side the identity transform keeps (and every other type starts from). ``params(x)``
    gives the predicted parameters, ``matrix(x)`` the ``(B, 3, 3)`` transform, ``grid(x)`` the
    sampling grid. The identity type has no localization network and no parameters.
    """

    def __init__(
        self,
        *,
        transform: str,
        output_size: int = OUTPUT_SIZE,
        crop_fraction: float = OUTPUT_SIZE / INPUT_SIZE,
        setting: int = DEFAULT_SETTING,
    ) -> None:
        super().__init__()
        num_params = _check_transform(transform)
        if not 0.0 < crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
        self.transform = transform
        self.output_size = output_size
        self.crop_fraction = crop_fraction
        self.localization: LocalizationNet | None = None
        if num_params:
            self.localization = LocalizationNet(num_outputs=num_params, setting=setting)
            nn.init.zeros_(self.localization.fc_out.weight)
            with torch.no_grad():
                self.localization.fc_out.bias.copy_(self.initial_params())

    def initial_params(self) -> torch.Tensor:
        """The parameters of the centre crop for this transform type, ``(num_params,)``."""
        c = self.crop_fraction
        return {
            "identity": torch.zeros(0),
            "similarity": torch.tensor([c, 0.0, 0.0, 0.0]),
            "affine": torch.tensor([c, 0.0, 0.0, 0.0, c, 0.0]),
            "projective": torch.tensor([c, 0.0, 0.0, 0.0, c, 0.0, 0.0, 0.0]),
        }[self.transform]

    def params(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, num_params)`` predicted transform parameters."""
        if self.localization is None:
            return x.new_zeros(x.shape[0], 0)
        return self.localization(x)

    def matrix_from_params(self, params: torch.Tensor) -> torch.Tensor:
        """``(B, num_params) -> (B, 3, 3)`` transform matrix (output -> input coordinates)."""
        if self.transform == "identity":
            return centre_crop_matrix(self.crop_fraction, params.shape[0], dtype=params.dtype, device=params.device)
        build = {"similarity": similarity_matrix, "affine": affine_matrix, "projective": projective_matrix}
        return build[self.transform](params)

    def matrix(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, 3, 3)`` the transform predicted for each image."""
        return self.matrix_from_params(self.params(x))

    def grid_from_matrix(self, matrix: torch.Tensor, channels: int) -> torch.Tensor:
        """``(B, 3, 3) -> (B, S, S, 2)`` sampling grid, ``S = output_size``."""
        size = (self.output_size, self.output_size)
        if self.transform == "projective":
            return projective_grid(matrix, size)
        return F.affine_grid(matrix[:, :2], [matrix.shape[0], channels, *size], align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The transform, its grid and the sampling stay float32 under mixed precision (a training step
        # with bf16 autocast, facelab.train.speed): a bf16 grid (8-bit mantissa) would place samples only
        # to 1/256 of the crop, and the localization net's small output is the transform itself.
        with torch.autocast(device_type=x.device.type, enabled=False):
            if x.dtype in (torch.float16, torch.bfloat16):
                x = x.float()
            grid = self.grid_from_matrix(self.matrix(x), x.shape[1])
            return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


class STNFaceNet(nn.Module):
    """Spatial transformer + Table 1 recognition network, trained end to end.

    ``(B, 3, input_size, input_size)`` loose face crop -> ``forward_features`` ``(B, 512)``
    embedding; ``align(x)`` is the transformer's ``(B, 3, 112, 112)`` output. The localization
    network's parameters are ``model.stn.parameters()`` (the paper trains them with a 10-100x
    lower learning rate), the recognizer's ``model.backbone.parameters()``.
    """

    def __init__(
        self,
        *,
        transform: str,
        setting: int = DEFAULT_SETTING,
        input_size: int = INPUT_SIZE,
        output_size: int = OUTPUT_SIZE,
        embedding_dim: int = EMBEDDING_DIM,
        dropout: float = DROPOUT,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if output_size > input_size:
            raise ValueError(f"output_size ({output_size}) must not exceed input_size ({input_size})")
        self.stn = SpatialTransformer(
            transform=transform, output_size=output_size, crop_fraction=output_size / input_size, setting=setting
        )
        self.backbone = RecognitionResNet(
            input_size=output_size, embedding_dim=embedding_dim, dropout=dropout, num_classes=num_classes
        )
        self.transform = transform
        self.input_size = (3, input_size, input_size)
        self.num_features = embedding_dim
        self.num_classes = num_classes

    def align(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` loose crops -> ``(B, 3, S, S)`` the faces the recognizer sees."""
        return self.stn(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` loose crops -> ``(B, embedding_dim)`` embeddings."""
        return self.backbone.forward_features(self.stn(x))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, embedding_dim) -> (B, num_classes)`` plain linear logits (identity when 0)."""
        return self.backbone.forward_head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _builder(transform: str):
    def build(
        *, num_classes: int = 0, setting: int = DEFAULT_SETTING, input_size: int = INPUT_SIZE, output_size: int = OUTPUT_SIZE
    ) -> STNFaceNet:
        return STNFaceNet(
            transform=transform, setting=setting, input_size=input_size, output_size=output_size, num_classes=num_classes
        )

    build.__name__ = f"stn_resnet_{transform}"
    build.__qualname__ = build.__name__
    build.__doc__ = f"Paper 002's network with a {transform} spatial transformer (setting {DEFAULT_SETTING} by default)."
    return register_model(build)


stn_resnet_identity = _builder("identity")
stn_resnet_similarity = _builder("similarity")
stn_resnet_affine = _builder("affine")
stn_resnet_projective = _builder("projective")
