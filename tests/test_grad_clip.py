import math

import pytest
import torch
from torch import nn

from facelab.train.grad_clip import clip_grad_norm_per_tensor


def test_large_gradients_are_scaled_to_max_norm_small_ones_kept():
    lin = nn.Linear(4, 3)
    other = nn.Linear(3, 1)
    clip_grad_norm_per_tensor(lin, 1.0)
    x = torch.ones(2, 4)
    # d/dW of sum(100 * W x) over a batch of 2 ones: every entry 200 -> norm 200 * sqrt(12)
    (100 * lin(x)).sum().backward()
    assert lin.weight.grad.norm().item() == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(lin.weight.grad, torch.full((3, 4), 1 / math.sqrt(12)))  # direction kept
    assert lin.bias.grad.norm().item() == pytest.approx(1.0, rel=1e-6)
    # a module without hooks is untouched, and a small gradient stays as it is
    lin.zero_grad()
    (0.01 * other(lin.bias.detach()[None])).sum().backward()
    assert other.weight.grad.norm().item() < 1.0
    y = (0.001 * lin(x)).sum()
    y.backward()
    assert torch.allclose(lin.weight.grad, torch.full((3, 4), 0.002))


def test_max_norm_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        clip_grad_norm_per_tensor(nn.Linear(2, 2), 0.0)
