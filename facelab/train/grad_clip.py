"""Per-tensor gradient-norm clipping with backward hooks.

The spatial transformer of paper 002 sits in front of a recognizer trained with ArcFace
(s = 64): at initialisation the gradient reaching the localization network's output layer is
four orders of magnitude larger than its weights (we measured a norm of ~4.5e4 for ``fc_out.weight``
at 32x32), so even the paper's 10-100x lower learning rate moves the predicted transform by
more than the image per step and the sampling grid leaves the crop. Clipping the gradient norm
of each localization tensor bounds that step without touching the recognizer's gradients, which
a global ``clip_grad_norm_`` would also shrink.

The hooks run inside ``loss.backward()``, so any training loop (e.g.
:func:`facelab.train.loop.fit`) applies them without knowing about them.
"""

from __future__ import annotations

import torch
from torch import nn


def clip_grad_norm_per_tensor(module: nn.Module, max_norm: float) -> list[torch.utils.hooks.RemovableHandle]:
    """Rescale every parameter gradient of ``module`` whose L2 norm exceeds ``max_norm`` to that norm.

    Each tensor is clipped on its own (direction kept): ``g <- g * min(1, max_norm / ||g||)``.
    Returns the hook handles (``handle.remove()`` undoes it).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")

    def hook(grad: torch.Tensor) -> torch.Tensor:
        norm = grad.norm()
        return grad * (max_norm / norm).clamp(max=1.0) if norm > 0 else grad

    return [p.register_hook(hook) for p in module.parameters() if p.requires_grad]


__all__ = ["clip_grad_norm_per_tensor"]
