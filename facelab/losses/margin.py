"""Additive angular margin (ArcFace; Deng et al., "ArcFace: Additive Angular Margin Loss for Deep
Face Recognition", CVPR 2019, eq. 3) and the plain softmax head.

ArcFace normalises the embedding x_i and every class weight W_j, so the logit of class j is
``cos(theta_j)``; it adds the margin m to the angle of the true class y_i and rescales by s:

    logit_y = s * cos(theta_y + m),     logit_j = s * cos(theta_j)  (j != y),

then softmax cross-entropy. Defaults: m = 0.5 (paper 002, Section 4) and s = 64 (ArcFace's
value; paper 002 only says "ArcFace").

``theta + m > pi`` (theta_y > pi - m): there cos(theta + m) rises again with theta, so the
margin would *reward* moving the embedding further from its class. Default: insightface's
"th/mm" fallback (``easy_margin=False``; also that of the common ``ArcMarginProduct`` ports): where
``cos(theta) <= th = cos(pi - m)`` the target logit is ``s * (cos(theta) - mm)`` with
``mm = sin(pi - m) * m`` -- a CosFace-like cosine margin: the first-order expansion
cos(theta + m) ~ cos(theta) - m sin(theta) with sin(theta) frozen at its value at
theta = pi - m. The target logit then decreases with theta everywhere; at the switch it steps
down by ``m sin(m) + cos(m) - 1`` (0.117 s for m = 0.5).
``easy_margin=True`` instead applies the margin only where ``cos(theta) > 0`` and keeps
``s * cos(theta)`` elsewhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ARCFACE_MARGIN = 0.5
ARCFACE_SCALE = 64.0
#: cos(theta) is clamped to [-1 + eps, 1 - eps]: sin = sqrt(1 - cos^2) has an infinite
#: derivative at |cos| = 1.
COS_EPS = 1e-7


def arcface_logits(
    cosine: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = ARCFACE_MARGIN,
    scale: float = ARCFACE_SCALE,
    easy_margin: bool = False,
) -> torch.Tensor:
    """``(B, C)`` cosines and ``(B,)`` integer labels -> ``(B, C)`` ArcFace logits.

    Non-target entries are ``scale * cosine``; the target entry is ``scale * cos(theta + margin)``
    (with the ``theta + margin > pi`` fallback described in the module docstring).
    """
    if cosine.ndim != 2 or labels.shape != cosine.shape[:1]:
        raise ValueError(f"arcface_logits: expected (B, C) cosines and (B,) labels, got {tuple(cosine.shape)} and {tuple(labels.shape)}")
    target_cos = cosine.gather(1, labels[:, None]).clamp(-1 + COS_EPS, 1 - COS_EPS)
    target_sin = torch.sqrt(1.0 - target_cos**2)
    # cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m); sin(theta) >= 0 as theta is in [0, pi].
    phi = target_cos * math.cos(margin) - target_sin * math.sin(margin)
    if easy_margin:
        phi = torch.where(target_cos > 0, phi, target_cos)
    else:
        threshold = math.cos(math.pi - margin)
        phi = torch.where(target_cos > threshold, phi, target_cos - math.sin(math.pi - margin) * margin)
    logits = cosine.scatter(1, labels[:, None], phi)
    return scale * logits


class ArcFaceHead(nn.Module):
    """ArcFace class weights and margin: ``(B, D)`` embeddings, ``(B,)`` labels -> ``(B, C)`` logits.

    ``F.cross_entropy(head(x, y), y)`` is the ArcFace loss. Without labels (evaluation) it returns
    ``scale * cos(theta)`` for every class, with no margin.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        *,
        margin: float = ARCFACE_MARGIN,
        scale: float = ARCFACE_SCALE,
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"ArcFace margin must be in [0, pi/2) radians, got {margin}")
        if scale <= 0:
            raise ValueError(f"ArcFace scale must be positive, got {scale}")
        self.margin, self.scale, self.easy_margin = margin, scale, easy_margin
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, D) -> (B, C)``: cosine between each embedding and each class weight."""
        return F.linear(F.normalize(embeddings, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = self.cosine(embeddings)
        if labels is None:
            return self.scale * cosine
        return arcface_logits(cosine, labels, margin=self.margin, scale=self.scale, easy_margin=self.easy_margin)


class SoftmaxHead(nn.Module):
    """A linear layer over the classes: ``(B, D)`` embeddings -> ``(B, C)`` logits.

    ``labels`` are accepted and ignored so the head can replace :class:`ArcFaceHead`.
    """

    def __init__(self, embedding_dim: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(embedding_dim, num_classes, bias=bias)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(embeddings)
