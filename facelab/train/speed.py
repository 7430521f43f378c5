"""Training speed levers: memory format, bf16 autocast, ``torch.compile``, threads; and the CPU
features that decide whether bf16 pays.

Every lever is opt-in (:class:`Speed`, all off by default) and none changes global state for
longer than a block: threads are set inside :func:`torch_threads`, which restores them.

What each lever does, and what it costs in numerics:

* ``channels_last``: the model's 4-D weights and every input batch are stored NHWC
  (``torch.channels_last``), the layout oneDNN's convolutions run natively; NCHW tensors are
  reordered inside every convolution otherwise. Same arithmetic up to summation order.
* ``autocast_bf16``: the model's forward runs under ``torch.autocast("cpu", torch.bfloat16)``:
  convolutions, linear layers and matrix products run in bfloat16 (8-bit mantissa) with float32
  master weights (the optimizer updates float32 parameters; no loss scaling is needed, bf16 has
  float32's exponent range). CPU autocast has no float32 list entry for ``batch_norm`` or
  ``log_softmax`` (see ``torch.testing._internal.autocast_test_lists.AutocastCPUTestLists``:
  only convolutions/matmuls are cast down, a few losses are kept up): batch norm therefore
  sees bf16 activations, keeps float32 weights and running statistics and accumulates its
  mean/variance in float32 internally. The head (margin heads) and the cross-entropy loss run
  *outside* autocast on ``float32`` logits (:class:`facelab.train.loop.TrainStep`), because
  CPU autocast would otherwise run ``log_softmax`` in bf16. bf16 is used only on CPUs with
  native bf16 dot products (AMX-BF16 or AVX512-BF16, :func:`bf16_support`); elsewhere it would
  be emulated and slower, so the step stays float32 and the reason is recorded.
* ``compile``: ``torch.compile`` (Inductor: generated C++/OpenMP kernels, needs a C++ compiler)
  of the model's forward; the backward is compiled with it (AOTAutograd). The first step pays
  the compile time, which the benchmark reports separately.
* ``threads``: torch's intra-op thread count for the run (None: leave it as it is). Inter-op
  threads are not a lever: eager training never runs ops in parallel *across* ops (they only
  serve ``torch.jit.fork``), and torch allows setting them only once per process, before any
  parallel work, so library code cannot set and restore them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

#: /proc/cpuinfo flags that matter for training throughput (recorded in benchmark results).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16", "amx_int8")
#: Flags meaning native bf16 dot products (oneDNN uses them for bf16 convolutions and matmuls).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The ISA flags of the first CPU in ``cpuinfo`` (the text of /proc/cpuinfo; read when None).

    x86 lists them on a ``flags`` line, ARM on ``Features``; an unreadable file gives no flags.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def bf16_support(device: str = "cpu", cpuinfo: str | None = None) -> tuple[bool, str]:
    """Whether bf16 autocast should be used on ``device``, and why (a sentence for the record)."""
    if device.startswith("cuda"):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(torch.device(device))} supports bf16"
        return False, "this GPU does not support bf16: training stays float32"
    flags = cpu_flags(cpuinfo)
    native = [f for f in BF16_FLAGS if f in flags]
    if native:
        return True, f"the CPU has native bf16 dot products ({', '.join(native)} in /proc/cpuinfo)"
    return False, ("the CPU has neither amx_bf16 nor avx512_bf16 (/proc/cpuinfo flags): bf16 would be emulated "
                   "and slower than float32, so training stays float32")


def cpu_description(cpuinfo: str | None = None) -> dict:
    """CPU model, the :data:`ISA_FLAGS` it has, torch's kernel dispatch level and bf16 support."""
    from facelab.results import cpu_model

    flags = cpu_flags(cpuinfo)
    bf16, reason = bf16_support("cpu", cpuinfo)
    return {"model": cpu_model(), "isa_flags": {f: f in flags for f in ISA_FLAGS},
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": bf16, "bf16_reason": reason}


def compiler_available() -> tuple[bool, str]:
    """Whether Inductor can build CPU kernels here: it needs a C++ compiler (``g++`` by default)."""
    try:
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx[-1] if isinstance(inductor_config.cpp.cxx, tuple) else inductor_config.cpp.cxx
    except Exception:  # noqa: BLE001 - any failure to import Inductor means compile cannot run
        return False, "torch._inductor could not be imported"
    cxx = cxx or "g++"
    found = shutil.which(cxx)
    if found:
        return True, f"Inductor compiles CPU kernels with {found}"
    return False, f"no C++ compiler {cxx!r} on PATH: torch.compile's Inductor backend cannot build CPU kernels"


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (None: unchanged); restore the count after."""
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Speed:
    """Opt-in training speed levers (all off: float32, NCHW, eager, threads as they are).

    ``autocast_bf16`` asks for bf16 autocast; it is used only where :func:`bf16_support` says
    so (:meth:`resolve` records what was used and why).
    """

    channels_last: bool = False
    autocast_bf16: bool = False
    compile: bool = False
    threads: int | None = None

    def check(self) -> Speed:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"Speed.threads must be >= 1 or None (got {self.threads})")
        return self

    @property
    def numerics(self) -> dict:
        """The levers that change the arithmetic (threads only change the summation order)."""
        return {"channels_last": self.channels_last, "autocast_bf16": self.autocast_bf16, "compile": self.compile}

    @property
    def label(self) -> str:
        """'fp32' for the baseline, else the levers joined with '+': 'bf16+channels_last+compile'."""
        parts = [name for on, name in ((self.autocast_bf16, "bf16"), (self.channels_last, "channels_last"),
                                       (self.compile, "compile")) if on]
        return "+".join(parts) or "fp32"

    def resolve(self, device: str = "cpu") -> dict:
        """What this run actually uses on ``device``: the levers, bf16 used or not and why, threads."""
        bf16, reason = bf16_support(device) if self.autocast_bf16 else (False, "not requested")
        out = dataclasses.asdict(self) | {"bf16_used": bf16, "bf16_reason": reason, "label": self.label}
        out["threads"] = self.threads if self.threads is not None else torch.get_num_threads()
        return out


def autocast(device: str, enabled: bool):
    """``torch.autocast`` in bf16 on ``device``'s type when ``enabled`` (a no-op context otherwise)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bool(enabled))
