"""What a convolution costs, measured on real layers: the check of LEFV's Table 1 (paper 000) and of
the "1×1 convolutions dominate" claims of its Section 2.2.

* :func:`measure_conv` builds a standard or a depthwise separable convolution with PyTorch layers
  and counts its weights (``numel``, no bias) and multiply-accumulates (:class:`torch.utils.flop_counter.FlopCounterMode`,
  which counts 2 FLOPs per multiply-accumulate) on an ``H × W`` output map.
* :func:`evaluate_formula` evaluates a paper-values ``formula`` string (``"H*W*n*n*N_in*N_out"``)
  with the symbols given: only names, numbers, ``+``, ``-``, ``*``, ``/`` and brackets are allowed
  (:mod:`ast`-checked, never ``eval`` of arbitrary text).
* :func:`pointwise_share` splits a model's forward multiply-accumulates into 1×1 convolutions and the
  rest (FlopCounterMode per module: a conv's FLOPs are attributed to the conv module).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def evaluate_formula(formula: str, symbols: Mapping[str, float]) -> float:
    """The value of an arithmetic ``formula`` over ``symbols``; ValueError for anything else."""
    try:
        tree = ast.parse(formula, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"formula {formula!r} is not an arithmetic expression ({err.msg})") from None

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](ev(node.operand))
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in symbols:
                raise ValueError(f"formula {formula!r} uses {node.id!r}, not one of {sorted(symbols)}")
            return symbols[node.id]
        raise ValueError(f"formula {formula!r}: only names, numbers and + - * / are allowed")

    return ev(tree)


def conv_layers(n: int, c_in: int, c_out: int, *, separable: bool) -> nn.Module:
    """A bias-free standard ``n × n`` convolution, or a depthwise ``n × n`` + pointwise ``1 × 1`` pair
    (stride 1, 'same' padding)."""
    pad = (n - 1) // 2
    if not separable:
        return nn.Conv2d(c_in, c_out, n, padding=pad, bias=False)
    return nn.Sequential(nn.Conv2d(c_in, c_in, n, padding=pad, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1, bias=False))


def measure_conv(n: int, c_in: int, c_out: int, h: int, w: int, *, separable: bool) -> dict[str, int]:
    """``{"parameters", "macs"}`` of :func:`conv_layers` on a ``[1, c_in, h, w]`` input (output ``h × w``;
    ``n`` odd, so that 'same' padding keeps the size)."""
    if n < 1 or n % 2 == 0:
        raise ValueError(f"the kernel side n must be odd and >= 1 (got {n}): 'same' padding needs an odd kernel")
    layer = conv_layers(n, c_in, c_out, separable=separable)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        y = layer(torch.zeros(1, c_in, h, w))
    flops = fc.get_total_flops()
    return {"parameters": sum(p.numel() for p in layer.parameters()), "macs": flops // 2}


def pointwise_share(model: nn.Module, input_shape: Sequence[int]) -> dict[str, float]:
    """Forward multiply-accumulates of ``model`` on one ``input_shape`` image: total, in 1×1
    convolutions, in other convolutions, elsewhere (linear layers, ...), and the 1×1 share of the total
    and of the parameters."""
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
    per_module = fc.get_flop_counts()
    total = fc.get_total_flops() / 2

    def flops_of(name: str) -> float:
        counts = per_module.get(name) or per_module.get(f"{type(model).__name__}.{name}") or {}
        return sum(counts.values()) / 2

    one = sum(flops_of(n) for n, m in convs.items() if m.kernel_size == (1, 1))
    other = sum(flops_of(n) for n, m in convs.items() if m.kernel_size != (1, 1))
    p_total = sum(p.numel() for p in model.parameters())
    p_one = sum(p.numel() for m in convs.values() if m.kernel_size == (1, 1) for p in m.parameters())
    return {"macs": total, "macs_1x1": one, "macs_other_conv": other, "macs_rest": total - one - other,
            "share_1x1": one / total if total else float("nan"),
            "parameters": p_total, "parameters_1x1": p_one, "parameter_share_1x1": p_one / p_total}
