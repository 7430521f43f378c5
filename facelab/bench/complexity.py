"""Model complexity: parameters, fp32 size, FLOPs / multiply-accumulates, embedding size, layer table.

Conventions (every table that shows these numbers says which one it shows):

* **parameters**: ``sum(p.numel() for p in model.parameters())`` (shared tensors once);
  batch-norm running statistics are buffers, not parameters.
* **size**: bytes of the state dict stored as float32 (every floating tensor, buffers
  included, at 4 bytes per element; integer buffers such as ``num_batches_tracked`` at their
  own width; shared tensors once). ``size_mb`` is that divided by **MB = 10^6 bytes** (not
  MiB = 2^20). It is the raw tensor payload; a ``.pt``/``.onnx`` file adds a small header.
* **FLOPs** come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts
  **2 FLOPs per multiply-add** and only counts convolutions, matrix products (linear,
  ``mm``/``bmm``/``addmm``) and attention. Element-wise operations, normalisation, activations
  and pooling are not counted. **MACs = FLOPs / 2** (multiply-accumulates, the unit most
  papers call "FLOPs"; paper 000's Table 2 does not say which it uses).
* **embedding size**: the number of values per sample of the model's output in eval mode
  (for a recognizer, its descriptor; for an ImageNet classifier, its 1000 logits).
* **layer summary**: one row per module (leaves by default, or the modules at a given name
  depth, or named ones) with the per-sample output shape seen by a forward hook, its
  parameters (recursively) and its FLOPs. :func:`paper_shape` writes a shape the way paper
  001's Table 2 does (``113²×64``), so the table can be regenerated and compared cell by cell.

The input shape of a registered model is the model's ``input_shape`` attribute ``(C, H, W)``
unless the caller passes one (:func:`resolve_input_shape`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: Bytes in a megabyte as this module reports it (SI megabyte, not MiB).
MB = 10**6
FP32_BYTES = 4
FLOP_CONVENTION = ("torch.utils.flop_counter.FlopCounterMode: 2 FLOPs per multiply-add; counts convolutions, "
                   "matrix products and attention only (not element-wise ops, normalisation, pooling); "
                   "MACs = FLOPs / 2")


def resolve_input_shape(model: nn.Module, input_shape: Sequence[int] | None = None) -> tuple[int, ...]:
    """Per-sample input shape ``(C, H, W)``: ``input_shape`` if given, else ``model.input_shape``,
    else ``model.input_size`` when it is a ``(C, H, W)`` tuple (timm's convention, used by the
    facelab models)."""
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    size = getattr(model, "input_size", None)
    if shape is None and isinstance(size, (tuple, list)) and len(size) == 3:
        shape = size
    if shape is None:
        raise ValueError(f"{type(model).__name__} has no `input_shape` attribute: pass the per-sample input "
                         "shape, e.g. input_shape=(3, 112, 112) (CLI: --input-shape 3,112,112)")
    shape = tuple(int(v) for v in shape)
    if not shape or min(shape) < 1:
        raise ValueError(f"input shape must be positive integers (C, H, W), got {shape}")
    return shape


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def fp32_state_dict_bytes(model: nn.Module) -> int:
    """Bytes of the state dict with every floating tensor stored as float32 (see module docstring)."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    total = 0
    for t in model.state_dict(keep_vars=False).values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * (FP32_BYTES if t.is_floating_point() else t.element_size())
    return total


def _example_input(model: nn.Module, input_shape: Sequence[int], batch: int) -> torch.Tensor:
    p = next(iter(model.parameters()), None)
    device = p.device if p is not None else torch.device("cpu")
    # Fixed values: complexity does not depend on them, and the caller's RNG stays untouched.
    numel = batch * int(torch.Size(input_shape).numel())
    x = torch.linspace(-1.0, 1.0, numel, device=device, dtype=torch.float32)
    return x.reshape(batch, *input_shape)


class eval_mode:
    """Put a model in eval mode for a measurement and restore its training flags afterwards."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.flags = {m: m.training for m in model.modules()}

    def __enter__(self) -> nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        for m, flag in self.flags.items():
            m.training = flag


def first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (list, tuple)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    if isinstance(out, dict):
        for o in out.values():
            t = first_tensor(o)
            if t is not None:
                return t
    return None


def count_flops(model: nn.Module, input_shape: Sequence[int] | None = None, *, batch: int = 1) -> int:
    """FLOPs of one forward pass on ``batch`` samples (FlopCounterMode: 2 per multiply-add)."""
    shape = resolve_input_shape(model, input_shape)
    with eval_mode(model), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(_example_input(model, shape, batch))
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class LayerRow:
    """One module's row: per-sample ``output_shape`` (batch dimension dropped), recursive ``params``,
    FLOPs of one sample (FlopCounterMode), and how often the module ran in one forward pass."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    flops: int
    calls: int

    @property
    def paper_shape(self) -> str:
        return paper_shape(self.output_shape)


def paper_shape(shape: Sequence[int] | None) -> str:
    """A per-sample shape as paper 001's Table 2 writes it: (C, H, W) -> 'H²×C' when H == W."""
    if shape is None:
        return "-"
    shape = tuple(shape)
    if len(shape) == 3 and shape[1] == shape[2]:
        return f"{shape[1]}²×{shape[0]}"
    if len(shape) == 3:
        return f"{shape[1]}×{shape[2]}×{shape[0]}"
    return "×".join(str(v) for v in shape)


def _select_modules(model: nn.Module, depth: int | None, names: Sequence[str] | None) -> list[tuple[str, nn.Module]]:
    named = dict(model.named_modules())
    if names is not None:
        missing = [n for n in names if n not in named]
        if missing:
            raise KeyError(f"no module named {', '.join(missing)} in {type(model).__name__}; "
                           f"top-level modules: {', '.join(n for n, _ in model.named_children())}")
        return [(n, named[n]) for n in names]
    if depth is not None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1 (got {depth})")
        return [(n, m) for n, m in named.items() if n and (n.count(".") + 1 == depth
                                                            or (n.count(".") + 1 < depth and not list(m.children())))]
    return [(n, m) for n, m in named.items() if n and not list(m.children())]


def layer_summary(model: nn.Module, input_shape: Sequence[int] | None = None, *, depth: int | None = None,
                  names: Sequence[str] | None = None) -> list[LayerRow]:
    """Per-module output shapes, parameters and FLOPs from one forward pass (batch 1).

    Modules: ``names`` if given (in that order); else every module at name depth ``depth``
    (``'features'`` is depth 1, ``'features.3'`` depth 2; leaves shallower than ``depth`` too);
    else every leaf module. Rows are in order of first execution; modules that never ran
    are listed last with ``output_shape=None``.
    """
    shape = resolve_input_shape(model, input_shape)
    selected = _select_modules(model, depth, names)
    outputs: dict[str, tuple[int, ...] | None] = {}
    calls: dict[str, int] = {}
    order: list[str] = []

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if name not in outputs:
                t = first_tensor(out)
                outputs[name] = tuple(t.shape[1:]) if t is not None else None
                order.append(name)
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in selected]
    try:
        with eval_mode(model), torch.inference_mode(), FlopCounterMode(display=False, depth=None) as counter:
            model(_example_input(model, shape, 1))
    finally:
        for h in handles:
            h.remove()
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    modules = dict(selected)
    ran = [n for n in order] + [n for n, _ in selected if n not in outputs]
    return [LayerRow(name=n, type=type(modules[n]).__name__, output_shape=outputs.get(n),
                     params=count_parameters(modules[n]), flops=int(per_module.get(f"{root}.{n}", 0)),
                     calls=calls.get(n, 0))
            for n in ran]


def layer_table(model: nn.Module, input_shape: Sequence[int] | None = None, *, depth: int | None = None,
                names: Sequence[str] | None = None):
    """:func:`layer_summary` as a pandas DataFrame (columns: layer, type, output size, output shape,
    params, FLOPs), with an ``input`` row first — the layout of paper 001's Table 2."""
    import pandas as pd

    shape = resolve_input_shape(model, input_shape)
    rows = [{"layer": "input", "type": "-", "output size": paper_shape(shape), "output shape": shape,
             "params": 0, "FLOPs": 0}]
    for r in layer_summary(model, shape, depth=depth, names=names):
        rows.append({"layer": r.name, "type": r.type, "output size": r.paper_shape, "output shape": r.output_shape,
                     "params": r.params, "FLOPs": r.flops})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ModelComplexity:
    """Complexity of one model at one input shape (see the module docstring for conventions)."""

    model: str
    input_shape: tuple[int, ...]
    params: int
    trainable_params: int
    size_bytes: int
    size_mb: float
    flops: int
    macs: int
    embedding_size: int | None
    output_shape: tuple[int, ...] | None
    flop_counter: str = FLOP_CONVENTION
    size_convention: str = "fp32 state dict (parameters and buffers, 4 bytes per float), MB = 10^6 bytes"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape) if self.output_shape is not None else None
        return d


def summarize(model: nn.Module, input_shape: Sequence[int] | None = None, *, name: str = "") -> ModelComplexity:
    """Parameters, fp32 size, FLOPs, MACs and output size of ``model`` for one sample."""
    shape = resolve_input_shape(model, input_shape)
    with eval_mode(model), torch.inference_mode(), FlopCounterMode(display=False) as counter:
        out = model(_example_input(model, shape, 1))
    flops = int(counter.get_total_flops())
    t = first_tensor(out)
    out_shape = tuple(t.shape[1:]) if t is not None else None
    size = fp32_state_dict_bytes(model)
    return ModelComplexity(
        model=name or type(model).__name__, input_shape=shape, params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True), size_bytes=size, size_mb=size / MB,
        flops=flops, macs=flops // 2,
        embedding_size=int(torch.Size(out_shape).numel()) if out_shape is not None else None,
        output_shape=out_shape,
    )
