"""Export a model to ONNX (``torch.onnx.export``), open it in ONNX Runtime, check it matches PyTorch.

Exports go to ``<cache_root>/onnx/<model>-<digest>.onnx``, where the digest covers the weights,
the input shape and the torch version, so a model with the same weights is exported once.
Next to each file a sidecar ``<file>.onnx.json`` records the model name, the per-sample input
shape, its FLOPs and MACs (:mod:`facelab.bench.complexity`) and the exporter; the standalone
:mod:`facelab.bench.edge_bench` reads it to report the FLOP floor on a device without torch.

The exporter is torch's default (``dynamo=True``, via ``torch.export``), with a dynamic batch
dimension so one file serves batch 1 and batch N, and the weights inside the file
(``external_data=False``: every model in the book is far below ONNX's 2 GB limit).
Both files are written to a temporary name and renamed, so an interrupted export never
leaves a half-written model behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facelab.bench import complexity
from facelab.bench.edge_bench import ort_session, slug
from facelab.errors import UsageError
from facelab.paths import cache_root
from facelab.fileio import atomic_write_text

INPUT_NAME = "input"
OUTPUT_NAME = "output"
#: Largest difference between ONNX Runtime and eager PyTorch outputs, relative to the largest
#: |output| (float32 kernels reorder sums; 1e-6..1e-5 is typical).
DEFAULT_TOLERANCE = 1e-4


def onnx_dir() -> Path:
    """Where exported models are cached: ``<cache_root>/onnx``."""
    return cache_root() / "onnx"


def weights_digest(model: nn.Module, input_shape: Sequence[int]) -> str:
    """16 hex digits identifying the model's tensors, the input shape and the torch version."""
    h = hashlib.sha256()
    h.update(f"{type(model).__name__}|{tuple(input_shape)}|{torch.__version__}".encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        data = t.detach().cpu()
        if data.dtype == torch.bfloat16:  # numpy has no bfloat16
            data = data.float()
        h.update(data.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def export_onnx(model: nn.Module, input_shape: Sequence[int] | None = None, *, name: str,
                path: str | os.PathLike | None = None, opset: int | None = None, overwrite: bool = False) -> Path:
    """Export ``model`` (eval mode, float32, CPU copy) and write its sidecar; return the .onnx path.

    The input is ``input`` of shape ``(batch, *input_shape)`` with a dynamic batch dimension;
    the first output is ``output``. An existing export with the same digest is reused unless
    ``overwrite``.
    """
    shape = complexity.resolve_input_shape(model, input_shape)
    digest = weights_digest(model, shape)
    path = Path(path) if path is not None else onnx_dir() / f"{slug(name)}-{digest}.onnx"
    side = Path(str(path) + ".json")
    if path.is_file() and side.is_file() and not overwrite:
        return path
    info = complexity.summarize(model, shape, name=name)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    cpu_model = model if device.type == "cpu" else _cpu_copy(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".onnx")
    os.close(fd)
    try:
        x = torch.zeros(1, *shape)
        with complexity.eval_mode(cpu_model), contextlib.redirect_stdout(io.StringIO()):
            # batch 1 as the example: the exporter must not specialise on it, hence the Dim.
            torch.onnx.export(cpu_model, (x,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                              opset_version=opset, external_data=False, dynamo=True, verbose=False)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is meant to be copied to devices
        os.replace(tmp, path)
    except Exception as err:
        Path(tmp).unlink(missing_ok=True)
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()[:1]  # no terminal colours
        raise ValueError(f"torch.onnx.export could not export {name} ({type(err).__name__}: "
                         f"{first[0] if first else ''}); measure it with the torch runtime only "
                         "(--runtime torch)") from err
    except BaseException:  # interrupted: leave no partial file behind
        Path(tmp).unlink(missing_ok=True)
        raise
    sidecar = {"model": name, "input_shape": list(shape), "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
               "flops_per_image": info.flops, "macs_per_image": info.macs, "flop_counter": info.flop_counter,
               "params": info.params, "embedding_size": info.embedding_size,
               "exporter": "torch.onnx.export(dynamo=True, dynamic batch)", "torch_version": torch.__version__,
               "weights_digest": digest}
    atomic_write_text(side, json.dumps(sidecar, indent=1, sort_keys=True) + "\n")
    return path


def _cpu_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu")


def onnx_session(path: str | os.PathLike, *, threads: int, device: str = "cpu"):
    """An ONNX Runtime session with ``threads`` intra-op threads (CUDA provider when ``device`` is cuda).

    Raises ValueError when ``device`` is cuda and this onnxruntime has no CUDA provider.
    """
    providers = None
    if device.startswith("cuda"):
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise UsageError("this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu); "
                             "benchmark ONNX Runtime with device='cpu'")
        index = int(device.split(":")[1]) if ":" in device else 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return ort_session(path, threads=threads, providers=providers)


@dataclass(frozen=True)
class OnnxCheck:
    """Agreement of ONNX Runtime with eager PyTorch on one random batch.

    The difference is judged relative to the output's scale, ``max |torch output|``:
    randomly initialised models produce outputs anywhere from 1e-9 (torchvision's MobileNetV2)
    to 1e2 (ResNet-50), so a fixed absolute tolerance would either accept garbage or reject
    float32 rounding. ``ok`` is ``max_abs_diff <= tolerance * output_scale``.
    """

    max_abs_diff: float
    output_scale: float
    rel_diff: float
    tolerance: float
    batch: int
    ok: bool

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "output_scale": self.output_scale, "rel_diff": self.rel_diff,
                "tolerance": self.tolerance, "batch": self.batch, "ok": self.ok,
                "rule": "max|ort - torch| <= tolerance * max|torch|"}


def check_onnx(model: nn.Module, session, input_shape: Sequence[int] | None = None, *, batch: int = 2,
               tolerance: float = DEFAULT_TOLERANCE, seed: int = 0) -> OnnxCheck:
    """Compare the session's first output with the model's on a random ``batch`` (seeded)."""
    shape = complexity.resolve_input_shape(model, input_shape)
    x = np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with complexity.eval_mode(model), torch.inference_mode():
        ref = complexity.first_tensor(model(torch.from_numpy(x).to(device)))
    if ref is None:
        raise ValueError(f"{type(model).__name__} returns no tensor; cannot compare it with ONNX Runtime")
    ref_np = ref.float().cpu().numpy().astype(np.float64)
    got = session.run(None, {session.get_inputs()[0].name: x})[0].astype(np.float64)
    if got.shape != ref_np.shape:
        raise ValueError(f"ONNX Runtime output shape {got.shape} differs from PyTorch's {ref_np.shape}")
    diff = float(np.max(np.abs(got - ref_np))) if got.size else 0.0
    scale = float(np.max(np.abs(ref_np))) if ref_np.size else 0.0
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return OnnxCheck(max_abs_diff=diff, output_scale=scale, rel_diff=rel, tolerance=tolerance, batch=batch,
                     ok=bool(rel <= tolerance))
