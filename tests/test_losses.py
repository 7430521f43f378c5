"""ArcFace margin against its closed form s*cos(theta + m); the softmax head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from facelab.losses import ArcFaceHead, SoftmaxHead, arcface_logits

M, S = 0.5, 64.0


def _cosines(target_angles: list[float], other_angle: float = 1.0, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, classes) float64 cosines: row i has angle target_angles[i] to class i % classes."""
    b = len(target_angles)
    theta = torch.full((b, classes), other_angle, dtype=torch.float64)
    labels = torch.arange(b) % classes
    theta[torch.arange(b), labels] = torch.tensor(target_angles, dtype=torch.float64)
    return torch.cos(theta), labels


def test_defaults_are_arcface_m05_s64():
    head = ArcFaceHead(8, 3)
    assert (head.margin, head.scale, head.easy_margin) == (0.5, 64.0, False)


@pytest.mark.parametrize("theta", [0.05, 0.3, math.pi / 4, 1.0, math.pi / 2, 2.0, math.pi - M - 1e-3])
def test_target_logit_is_s_cos_theta_plus_m(theta):
    cos, labels = _cosines([theta, theta])
    logits = arcface_logits(cos, labels, margin=M, scale=S)
    target = logits[torch.arange(2), labels]
    assert torch.allclose(target, torch.full_like(target, S * math.cos(theta + M)), atol=1e-6)


def test_non_target_logits_are_s_cos_theta():
    cos, labels = _cosines([0.3, 2.0, 1.2], other_angle=0.7)
    logits = arcface_logits(cos, labels, margin=M, scale=S)
    mask = F.one_hot(labels, 3).bool()
    assert torch.allclose(logits[~mask], S * cos[~mask])


@pytest.mark.parametrize("theta", [math.pi - M + 0.01, 2.8, 3.1])
def test_beyond_pi_minus_m_uses_insightface_fallback(theta):
    # theta + m > pi: target logit s * (cos(theta) - m * sin(m)), not s * cos(theta + m).
    cos, labels = _cosines([theta])
    target = arcface_logits(cos, labels, margin=M, scale=S)[0, labels[0]]
    assert target.item() == pytest.approx(S * (math.cos(theta) - M * math.sin(M)), abs=1e-6)
    assert target.item() != pytest.approx(S * math.cos(theta + M), abs=1e-3)


@pytest.mark.parametrize("theta,expected", [(0.3, S * math.cos(0.3 + M)), (1.4, S * math.cos(1.4 + M)),
                                            (1.7, S * math.cos(1.7)), (2.9, S * math.cos(2.9))])
def test_easy_margin_applies_only_where_cos_is_positive(theta, expected):
    cos, labels = _cosines([theta])
    target = arcface_logits(cos, labels, margin=M, scale=S, easy_margin=True)[0, labels[0]]
    assert target.item() == pytest.approx(expected, abs=1e-6)


def test_target_logit_decreases_with_theta_everywhere():
    thetas = torch.linspace(0.01, math.pi - 0.01, 400, dtype=torch.float64)
    cos = torch.cos(thetas)[:, None]
    target = arcface_logits(cos, torch.zeros(len(thetas), dtype=torch.long), margin=M, scale=S)[:, 0]
    assert (target.diff() < 0).all()
    # without the fallback, s * cos(theta + m) would turn upwards beyond pi - m
    assert (torch.cos(thetas + M).diff()[thetas[1:] > math.pi - M + 0.01] > 0).all()


def test_zero_margin_is_normalised_softmax():
    cos, labels = _cosines([0.2, 1.3, 2.9])
    assert torch.allclose(arcface_logits(cos, labels, margin=0.0, scale=S), S * cos)


def test_head_logits_and_loss_match_a_hand_computation():
    torch.manual_seed(0)
    head = ArcFaceHead(4, 3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 1, 0])
    w = head.weight.detach()
    cos = (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T
    theta_y = torch.arccos(cos[torch.arange(5), y])
    assert (theta_y < math.pi - M).all()  # the closed form applies to every row
    expected = S * cos.clone()
    expected[torch.arange(5), y] = S * torch.cos(theta_y + M)
    assert torch.allclose(head(x, y), expected)
    assert torch.allclose(head(x), S * cos)  # no labels: no margin
    manual = -(expected[torch.arange(5), y] - torch.logsumexp(expected, 1)).mean()
    assert F.cross_entropy(head(x, y), y).item() == pytest.approx(manual.item(), rel=1e-12)


def test_gradients_stay_finite_when_an_embedding_equals_its_class_weight():
    head = ArcFaceHead(4, 3)
    x = head.weight.detach()[[1, 2]].clone().requires_grad_(True)  # cos = 1 for the target
    y = torch.tensor([1, 2])
    F.cross_entropy(head(x, y), y).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_margin_makes_the_loss_larger_than_plain_normalised_softmax():
    torch.manual_seed(1)
    head = ArcFaceHead(8, 10)
    x, y = torch.randn(6, 8), torch.randint(0, 10, (6,))
    assert F.cross_entropy(head(x, y), y) > F.cross_entropy(head(x), y)


def test_softmax_head_is_a_linear_layer_that_ignores_labels():
    torch.manual_seed(0)
    head = SoftmaxHead(4, 3)
    x = torch.randn(2, 4)
    assert torch.equal(head(x, torch.tensor([0, 1])), head.fc(x))
    assert torch.equal(head(x), x @ head.fc.weight.T + head.fc.bias)


@pytest.mark.parametrize("kwargs,match", [({"margin": -0.1}, "margin"), ({"margin": 2.0}, "margin"), ({"scale": 0.0}, "scale")])
def test_bad_parameters_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArcFaceHead(4, 3, **kwargs)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        arcface_logits(torch.zeros(3), torch.zeros(3, dtype=torch.long))
