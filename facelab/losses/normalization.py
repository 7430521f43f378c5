"""LEFV's face-normalization losses (paper 000, Section 3.2, eqs. 5-9), with FNM's fixes.

LEFV's normalizer is FNM (Qian, Deng, Hu, "Unsupervised Face Normalization with Extreme Pose and
Expression in the Wild", CVPR 2019), with MobileFaceNet as the frozen face expert G_enc; LEFV does not
cite it. FNM's paper is the documented source of what LEFV omits: WGAN-GP critics (gradient penalty
λ = 10), and the adversarial term averaged over the two kinds of generated faces.

* **Eq. 5 as printed** is ``L_adv = Σ_k D_k(x̄_k) + Σ_k D_k(ȳ_k) − Σ_k D_k(y_k)`` and the critics
  minimise it (eq. 9, ``L_D = L_adv``). Two "fake" sums against one "real" one: a critic ``D(v) = f(v) + b``
  lowers ``L_D`` by ``(1 + 1 − 1)·b = b`` through its output bias alone, so ``L_D`` has no lower
  bound and the critic can win without looking at a face. Weight ½ on each fake sum (FNM) makes the
  bias cancel: :func:`critic_loss` with ``fake_weight=0.5`` (the default; ``1.0`` is the printed form,
  kept to show the failure, :func:`bias_gradient`).
* **Eq. 6** ``L_ip``: squared L2 distance between the expert's features of input and output, for both
  sets (:func:`identity_loss`; a mean over feature elements, so its weight does not depend on the
  feature size).
* **Eq. 7** ``L_sym``: the absolute differences between the generated frontal face and its mirror,
  summed over the left half and divided by ``W × H`` as printed (:func:`symmetry_loss`; half the mean
  over the left half).
  The paper says "Laplace space"; eq. 7 is written on pixels, and we follow the equation.
* **Eq. 8** ``L_p``: mean absolute pixel difference between a frontal face and its reconstruction.
* **Gradient penalty** (WGAN-GP, Gulrajani et al. 2017, as FNM): ``λ (‖∇D(x̂)‖₂ − 1)²`` at random
  interpolates of real and generated faces (:func:`gradient_penalty`).

Critic outputs are ``float[B]`` (or ``[B, 1]``) per critic; images ``float[B, C, H, W]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

GP_WEIGHT = 10.0


def critic_loss(real: Sequence[torch.Tensor], fake_x: Sequence[torch.Tensor], fake_y: Sequence[torch.Tensor], *,
                fake_weight: float = 0.5) -> torch.Tensor:
    """Eq. 5 (the critics' objective, eq. 9): ``w·Σ_k mean D_k(x̄) + w·Σ_k mean D_k(ȳ) − Σ_k mean D_k(y)``,
    one tensor of critic outputs per critic ``k`` in each sequence; ``fake_weight`` ``w`` = 0.5 (FNM),
    1.0 as printed (unbounded below through the critics' biases)."""
    if not (len(real) == len(fake_x) == len(fake_y)):
        raise ValueError("one output per critic in each of real, fake_x, fake_y")
    return sum(fake_weight * fx.mean() + fake_weight * fy.mean() - r.mean()
               for r, fx, fy in zip(real, fake_x, fake_y))


def generator_adversarial_loss(fake_x: Sequence[torch.Tensor], fake_y: Sequence[torch.Tensor], *,
                               fake_weight: float = 0.5) -> torch.Tensor:
    """The decoder's adversarial term, ``−L_adv`` without the real term (which does not depend on it)."""
    return -sum(fake_weight * fx.mean() + fake_weight * fy.mean() for fx, fy in zip(fake_x, fake_y))


def bias_gradient(fake_weight: float) -> float:
    """``∂L_D/∂b`` of a one-critic, one-image instance of eq. 5 whose critic is ``D(v) = w·v + b``:
    ``2·fake_weight − 1`` (1.0 for the printed equation: gradient descent pushes ``b`` down forever;
    0.0 with FNM's ½)."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, generator=g)
    b = torch.zeros((), requires_grad=True)

    def critic(v):
        return (v @ w + b).reshape(1)

    real, fx, fy = (torch.randn(4, generator=g) for _ in range(3))
    critic_loss([critic(real)], [critic(fx)], [critic(fy)], fake_weight=fake_weight).backward()
    return float(b.grad)


def identity_loss(features_in: torch.Tensor, features_out: torch.Tensor) -> torch.Tensor:
    """Eq. 6 for one set: mean over the batch of the squared L2 distance between the expert's features of
    the input and of the generated face, per feature element (``[B, ...]`` each)."""
    d = (features_in - features_out).flatten(1)
    return (d * d).mean()


def symmetry_loss(images: torch.Tensor) -> torch.Tensor:
    """Eq. 7: ``1/(W·H) Σ_{i ≤ W/2} Σ_j |x̄_{i,j} − x̄_{W−i+1,j}|`` averaged over batch and channels
    (``[B, C, H, W]``; columns are the width axis)."""
    w = images.shape[-1]
    half = w // 2
    left = images[..., :half]
    mirrored = torch.flip(images, dims=[-1])[..., :half]
    return (left - mirrored).abs().sum(dim=(-1, -2)).mean() / (w * images.shape[-2])


def pixel_loss(target: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Eq. 8: mean absolute difference over pixels and channels (``[B, C, H, W]`` each)."""
    return (target - output).abs().mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     weight: float = GP_WEIGHT, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP: ``weight · mean (‖∇_x̂ D(x̂)‖₂ − 1)²`` at ``x̂ = ε·real + (1 − ε)·fake``, ε ~ U(0, 1) per sample."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), generator=generator, device=real.device,
                     dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(mixed)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=True)
    return weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
