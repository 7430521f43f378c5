"""The roofline: a model's latency floor from both compute and memory traffic.

The FLOP floor (FLOPs ÷ this machine's measured matmul rate, :mod:`facelab.bench.latency`) says how
fast a model could run if every layer kept the cores as busy as a large matrix product. Depthwise
convolutions do ~9 multiply-adds per value they read, far too few to do that: they wait on memory.
The roofline floor of Williams et al. ("Roofline", CACM 2009) is per layer
``max(FLOPs ÷ peak FLOP rate, bytes moved ÷ memory bandwidth)``, summed over layers.

* :func:`memory_bandwidth`: a streaming copy of an array much larger than the caches (the better of
  numpy's single-threaded copy and torch's on the thread count being measured; read + write bytes ÷
  time), measured in the same run as the matmul rate.
* :func:`layer_traffic`: per leaf module, its forward FLOPs (FlopCounterMode) and the bytes it must
  move at least once: its input and output activations and its parameters, float32. Only leaf modules
  are counted: tensor operations in ``forward`` code (concatenations, residual additions, reshapes)
  move bytes that are not in the count, which lowers the floor of networks that use them (the context
  module, MSFF). Maps small enough to stay in cache make the count pessimistic the other way: the floor
  is an estimate, stated as such.
* :func:`roofline_floor_ms`: the floor of a model from those two rates, *unfused* (every PyTorch
  module moves its tensors, as eager PyTorch runs them) or *fused* (BatchNorm, activations and
  dropout move nothing of their own, as ONNX Runtime folds them into the preceding convolution).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: Bytes of the array copied to measure bandwidth (256 MiB: well beyond any L3 cache here).
BANDWIDTH_BYTES = 256 * 2**20


def _best_copy_s(copy, repeats: int) -> float:
    copy()  # touch every page first
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        copy()
        times.append(time.perf_counter() - t)
    return min(times)


def memory_bandwidth(*, n_bytes: int = BANDWIDTH_BYTES, repeats: int = 5, threads: int | None = None) -> dict:
    """``{"gb_per_s", "n_bytes", "threads", ...}``: streaming copy bandwidth, read + write counted
    (10^9 B/s), the better of a single-threaded ``numpy.copyto`` (which streams past the caches) and
    ``torch.Tensor.copy_`` on ``threads`` torch threads (which splits a large copy across them; None: as
    they are), each the best of ``repeats``."""
    from facelab.train.speed import torch_threads

    a = np.ones(n_bytes // 8, np.float64)
    b = np.empty_like(a)
    numpy_s = _best_copy_s(lambda: np.copyto(b, a), repeats)
    with torch_threads(threads):
        src = torch.ones(n_bytes // 8, dtype=torch.float64)
        dst = torch.empty_like(src)
        torch_s = _best_copy_s(lambda: dst.copy_(src), repeats)
        used = torch.get_num_threads()
    nbytes = int(a.nbytes)
    rates = {"numpy_copyto_gb_per_s": 2 * nbytes / numpy_s / 1e9, "torch_copy_gb_per_s": 2 * nbytes / torch_s / 1e9}
    return {"gb_per_s": max(rates.values()), **rates, "n_bytes": nbytes, "threads": used,
            "method": f"the better of numpy.copyto (1 thread) and torch copy_ ({used} thread(s)) of a "
                      f"{nbytes // 2**20} MiB float64 array, read + write bytes / best time"}


def layer_traffic(model: nn.Module, input_shape: Sequence[int], *, batch: int = 1) -> list[dict]:
    """Per leaf module run in the forward pass: ``{"name", "type", "flops", "bytes"}`` (float32 bytes of
    inputs + outputs + parameters; 2 FLOPs per multiply-add)."""
    rows: list[dict] = []
    hooks = []

    def nbytes(x) -> int:
        if isinstance(x, torch.Tensor):
            return x.numel() * 4
        if isinstance(x, (list, tuple)):
            return sum(nbytes(v) for v in x)
        if isinstance(x, dict):
            return sum(nbytes(v) for v in x.values())
        return 0

    for name, m in model.named_modules():
        if next(m.children(), None) is not None:
            continue  # leaves only

        def hook(mod, inputs, output, _name=name):
            rows.append({"name": _name, "type": type(mod).__name__,
                         "bytes": nbytes(inputs) + nbytes(output) + sum(p.numel() * 4 for p in mod.parameters())})

        hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(torch.zeros(batch, *input_shape))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    counts = fc.get_flop_counts()
    root = type(model).__name__
    for r in rows:
        c = counts.get(f"{root}.{r['name']}") or counts.get(r["name"]) or {}
        r["flops"] = int(sum(c.values()))
    return rows


#: Module types a fusing runtime folds into the layer before them (no traffic of their own).
FUSED_TYPES = frozenset({"BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6", "LeakyReLU", "PReLU", "Hardswish",
                         "Sigmoid", "SiLU", "Dropout", "Identity"})


def roofline_floor_ms(rows: list[dict], *, gflops: float, gb_per_s: float, fused: bool = False) -> dict:
    """``{"floor_ms", "compute_ms", "memory_ms", "memory_bound_layers"}`` of :func:`layer_traffic` rows
    at a peak of ``gflops`` (10^9 FLOP/s) and ``gb_per_s`` (10^9 B/s): the sum over layers of each
    layer's larger time, and the two sums on their own; ``fused``: without the :data:`FUSED_TYPES` rows."""
    floor = compute = memory = 0.0
    bound = 0
    rows = [r for r in rows if not (fused and r["type"] in FUSED_TYPES)]
    for r in rows:
        c = r["flops"] / (gflops * 1e9)
        m = r["bytes"] / (gb_per_s * 1e9)
        floor += max(c, m)
        compute += c
        memory += m
        bound += int(m > c)
    return {"floor_ms": floor * 1e3, "compute_ms": compute * 1e3, "memory_ms": memory * 1e3,
            "memory_bound_layers": bound, "layers": len(rows)}
