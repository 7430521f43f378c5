"""LEFV's normalization losses (paper 000, eqs. 5-8) against closed forms."""

from __future__ import annotations

import pytest
import torch

from facelab.losses import normalization as N


def test_eq5_as_printed_is_unbounded_through_the_bias_and_fnms_half_is_not():
    assert N.bias_gradient(1.0) == pytest.approx(1.0)
    assert N.bias_gradient(0.5) == pytest.approx(0.0, abs=1e-7)
    # shifting every critic output by a constant: the printed loss moves by it, FNM's does not
    g = torch.Generator().manual_seed(0)
    r, fx, fy = (torch.randn(6, generator=g) for _ in range(3))
    for w, moves in ((1.0, True), (0.5, False)):
        base = N.critic_loss([r], [fx], [fy], fake_weight=w)
        shifted = N.critic_loss([r - 3], [fx - 3], [fy - 3], fake_weight=w)
        assert (abs(float(shifted - base)) > 1) == moves


def test_critic_loss_hand_computed():
    real, fx, fy = [torch.tensor([1.0, 3.0])], [torch.tensor([0.0, 2.0])], [torch.tensor([4.0])]
    # 0.5 * 1 + 0.5 * 4 - 2
    assert float(N.critic_loss(real, fx, fy)) == pytest.approx(0.5)
    assert float(N.generator_adversarial_loss(fx, fy)) == pytest.approx(-2.5)
    with pytest.raises(ValueError):
        N.critic_loss(real, fx, [])


def test_symmetry_loss_closed_form():
    x = torch.zeros(1, 1, 2, 4)
    x[..., 0] = 1.0  # the leftmost column differs from its mirror (the rightmost) by 1
    # sum over i <= W/2 and j of |diff| = 2 rows x 1 = 2; / (W*H = 8)
    assert float(N.symmetry_loss(x)) == pytest.approx(2 / 8)
    assert float(N.symmetry_loss(torch.ones(2, 3, 5, 6))) == 0.0


def test_pixel_and_identity_losses():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert float(N.pixel_loss(a, b)) == pytest.approx(0.5)
    f1, f2 = torch.zeros(2, 8), torch.ones(2, 8) * 2
    assert float(N.identity_loss(f1, f2)) == pytest.approx(4.0)


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    w = torch.zeros(1, 2, 2, 2)
    w.view(-1)[0] = 1.0  # D(x) = x[0]: gradient norm exactly 1 everywhere

    def critic(v):
        return (v * w).flatten(1).sum(1)

    real, fake = torch.randn(3, 1, 2, 2 * 2).view(3, 2, 2, 2), torch.randn(3, 2, 2, 2)
    assert float(N.gradient_penalty(critic, real, fake)) == pytest.approx(0.0, abs=1e-10)
    # slope 3: penalty 10 * (3 - 1)^2
    assert float(N.gradient_penalty(lambda v: 3 * critic(v), real, fake)) == pytest.approx(40.0)
