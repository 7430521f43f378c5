"""Inference latency: PyTorch eager and ONNX Runtime, batch 1 and batch N, with the FLOP floor.

How a number is measured (recorded in every result):

* **Timed region**: one forward call on an input tensor that is already prepared (float32,
  ``(batch, C, H, W)``, on the device): no image decoding, resizing or normalisation
  (pre-processing) and no distance computation or NMS (post-processing) —
  ``preprocessing_included`` and ``postprocessing_included`` are ``False``. Eager PyTorch runs
  under ``torch.inference_mode()`` in eval mode; ONNX Runtime runs ``session.run`` on the
  exported model (:mod:`facelab.bench.onnx_export`, outputs checked against PyTorch first).
* **Repeats**: ``warmup`` untimed calls, then ``repeats`` calls timed one by one with
  ``time.perf_counter``; median, p10 and p90 (numpy's linear interpolation) in ms per call.
  On CUDA every call is followed by ``torch.cuda.synchronize()`` inside the timed region.
* **Threads**: set explicitly for both runtimes: ``torch.set_num_threads(threads)`` (restored
  afterwards) and ONNX Runtime's ``intra_op_num_threads = threads`` with sequential execution.
  ``threads=1`` is the book's stand-in for an ARM/Jetson-class CPU core; on a real device use
  the standalone :mod:`facelab.bench.edge_bench`, which writes the same result format.
* **FLOP floor**: the model's FLOPs (:mod:`facelab.bench.complexity`, FlopCounterMode, 2 FLOPs
  per multiply-add) divided by the throughput of a large float32 matrix product (``torch.mm``
  of two ``N x N`` matrices, N = 4096 by default, same threads and device, timed in the same
  run before and after the model runs: ``2 N^3 / median time``; both throughputs are kept, so
  a change of machine load during the run is visible). ``floor_ratio = median / floor`` says how close a runtime
  gets to what the hardware does on its best-shaped work; a ratio near 1 means the runtime
  keeps the arithmetic units as busy as a big sgemm does.
* The machine (CPU model, threads, library versions, git commit) is in the result's
  provenance (:func:`facelab.results.environment`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facelab.bench import complexity, edge_bench
from facelab.config import check_device, check_profile
from facelab.results import Result, make_provenance
from facelab.train import speed

RUNTIMES = ("torch", "onnxruntime")
TIMED_REGION_TORCH = ("one model(x) call under torch.inference_mode() in eval mode on a prepared float32 "
                      "(batch, C, H, W) tensor on the device (CUDA: synchronised); no pre-/post-processing")


@dataclass(frozen=True)
class LatencyConfig:
    """What a latency run measures. ``batches`` are the batch sizes (1 = single image)."""

    threads: int = 1
    batches: tuple[int, ...] = (1,)
    repeats: int = 30
    warmup: int = 5
    runtimes: tuple[str, ...] = RUNTIMES
    device: str = "cpu"
    matmul_size: int = edge_bench.DEFAULT_MATMUL_SIZE
    matmul_repeats: int = 3
    onnx_tolerance: float = 1e-4  # max |ort - torch| / max |torch|
    seed: int = 0

    @classmethod
    def for_profile(cls, profile: str, **overrides) -> LatencyConfig:
        """Repeats per profile: smoke 5 (warm-up 1, 2048² floor matmul), small 30/5, full 100/10."""
        check_profile(profile)
        base = {"smoke": dict(repeats=5, warmup=1, matmul_size=2048, matmul_repeats=2),
                "small": dict(repeats=30, warmup=5),
                "full": dict(repeats=100, warmup=10)}[profile]
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def check(self) -> LatencyConfig:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1 (got {self.threads})")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batch sizes must be >= 1 (got {self.batches})")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"need repeats >= 1 and warmup >= 0 (got {self.repeats}, {self.warmup})")
        unknown = [r for r in self.runtimes if r not in RUNTIMES]
        if unknown or not self.runtimes:
            raise ValueError(f"unknown runtime(s) {unknown or self.runtimes}: choose from {', '.join(RUNTIMES)}")
        if self.matmul_size < 0:
            raise ValueError(f"matmul_size must be >= 0 (0 skips the floor), got {self.matmul_size}")
        check_device(self.device)
        return self


# Run a block with a torch thread count, restored after (shared with the training levers).
torch_threads = speed.torch_threads


def _sync_for(device: str):
    return torch.cuda.synchronize if device.startswith("cuda") else None


def torch_matmul_throughput(n: int = edge_bench.DEFAULT_MATMUL_SIZE, *, device: str = "cpu", repeats: int = 3,
                            warmup: int = 1, dtype: torch.dtype = torch.float32) -> dict:
    """GFLOP/s of ``torch.mm`` on two ``n x n`` matrices of ``dtype`` (2 n^3 FLOPs), median of ``repeats``.

    Uses the current torch thread count; wrap it in :func:`torch_threads` to choose it.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    times = edge_bench.time_calls(lambda: torch.mm(a, b), repeats=repeats, warmup=warmup, sync=_sync_for(device))
    median = float(np.median(times))
    kind = str(dtype).removeprefix("torch.")
    return {"n": n, "gflops": 2.0 * n**3 / median / 1e9, "median_s": median, "times_s": times, "dtype": kind,
            "method": f"torch.mm {kind} {n}x{n} on {device}, {torch.get_num_threads()} torch thread(s)"}


def time_torch(model: nn.Module, input_shape: Sequence[int], *, batch: int, repeats: int, warmup: int,
               device: str = "cpu", seed: int = 0, progress=None) -> list[float]:
    """Seconds per eager forward call on a fixed random batch (model in eval mode, inference mode)."""
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32))
    x = x.to(device)
    with complexity.eval_mode(model), torch.inference_mode():
        return edge_bench.time_calls(lambda: model(x), repeats=repeats, warmup=warmup, sync=_sync_for(device),
                                     progress=progress)


def _model_device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def benchmark(model: nn.Module, input_shape: Sequence[int] | None = None, *, name: str,
              config: LatencyConfig = LatencyConfig(), progress: bool = False) -> tuple[dict, dict]:
    """Measure ``model`` as ``config`` says; return ``(metrics, arrays)`` of a latency result.

    ``model`` must already be on ``config.device``. ``metrics['runs']`` has one record per
    (runtime, batch) with median/p10/p90 ms, images/s, the FLOP floor and the floor ratio;
    ``arrays['times_ms']`` keeps every timed call. A runtime that cannot run here (ONNX Runtime
    without a CUDA provider on a GPU) is listed in ``metrics['skipped']`` with the reason.
    """
    from tqdm.auto import tqdm

    config.check()
    shape = complexity.resolve_input_shape(model, input_shape)
    dev = _model_device(model)
    if torch.device(config.device) != dev and not (config.device == "cuda" and dev.type == "cuda"):
        raise ValueError(f"the model is on {dev} but config.device is {config.device!r}: move it with "
                         f"model.to({config.device!r}) first")
    info = complexity.summarize(model, shape, name=name)
    runs: list[dict] = []
    times_ms: dict[str, list[float]] = {}
    skipped: dict[str, str] = {}
    extra: dict = {"params": info.params, "size_mb": info.size_mb, "embedding_size": info.embedding_size}
    sessions = {}
    with torch_threads(config.threads):
        if "onnxruntime" in config.runtimes:
            from facelab.bench import onnx_export

            onnx_path = onnx_export.export_onnx(model, shape, name=name)
            try:
                session = onnx_export.onnx_session(onnx_path, threads=config.threads, device=config.device)
            except ValueError as err:
                skipped["onnxruntime"] = str(err)
            else:
                check = onnx_export.check_onnx(model, session, shape, tolerance=config.onnx_tolerance,
                                               seed=config.seed)
                if not check.ok:
                    raise ValueError(f"ONNX Runtime's output differs from PyTorch's for {name} (max abs diff "
                                     f"{check.max_abs_diff:.3g} = {check.rel_diff:.2g} of the largest output, "
                                     f"tolerance {check.tolerance:g}): the export is wrong, so its latency would "
                                     "mean nothing")
                sessions["onnxruntime"] = session
                extra.update(onnx_check=check.to_dict(), onnx_file=onnx_path.name)
        before = (torch_matmul_throughput(config.matmul_size, device=config.device, repeats=config.matmul_repeats)
                  if config.matmul_size else None)
        todo = [(r, b) for r in config.runtimes if r not in skipped for b in config.batches]
        import onnxruntime as ort

        timed = []
        with tqdm(total=len(todo) * config.repeats, desc=f"latency {name}", disable=not progress) as bar:
            for runtime, batch in todo:
                bar.set_postfix_str(f"{runtime} batch {batch}")
                if runtime == "torch":
                    times = time_torch(model, shape, batch=batch, repeats=config.repeats, warmup=config.warmup,
                                       device=config.device, seed=config.seed, progress=bar.update)
                    version = torch.__version__
                else:
                    times = edge_bench.time_ort(sessions[runtime], shape, batch=batch, repeats=config.repeats,
                                                warmup=config.warmup, seed=config.seed, progress=bar.update)
                    version = ort.__version__
                timed.append((runtime, version, batch, times))
        matmul = (edge_bench.combine_matmul(before, torch_matmul_throughput(
            config.matmul_size, device=config.device, repeats=config.matmul_repeats, warmup=0))
            if config.matmul_size else None)
    for runtime, version, batch, times in timed:
        rec = edge_bench.run_record(runtime=runtime, runtime_version=version, batch=batch, threads=config.threads,
                                    device=config.device, times_s=times, warmup=config.warmup,
                                    flops_per_image=info.flops, matmul_gflops=matmul["gflops"] if matmul else None)
        runs.append(rec)
        times_ms[edge_bench.run_id(rec)] = [t * 1e3 for t in times]
    if skipped:
        extra["skipped"] = skipped
    if matmul is None:
        extra["floor_missing_reason"] = "matmul_size=0: the floor was not measured"
    metrics = edge_bench.latency_metrics(
        model=name, input_shape=shape, runs=runs, matmul=matmul, flops_per_image=info.flops,
        macs_per_image=info.macs, flop_counter=info.flop_counter, threads=config.threads, device=config.device,
        cpu=edge_bench.cpu_model(),
        timed_region={"torch": TIMED_REGION_TORCH, "onnxruntime": edge_bench.TIMED_REGION_ORT}, extra=extra)
    arrays = {"times_ms": times_ms}
    if matmul is not None:
        arrays["matmul_times_s"] = matmul["times_s"]
    return metrics, arrays


def latency_experiment_name(name: str, config: LatencyConfig) -> str:
    """'latency.<model>.<device>.t<threads>' (one stored result per model, device and thread count)."""
    return edge_bench.latency_experiment_name(name, config.device.replace(":", ""), config.threads)


def latency_result(model: nn.Module, input_shape: Sequence[int] | None = None, *, name: str,
                   config: LatencyConfig = LatencyConfig(), chapter: str = edge_bench.DEFAULT_CHAPTER,
                   profile: str = edge_bench.DEFAULT_PROFILE, progress: bool = False) -> Result:
    """:func:`benchmark` wrapped as a :class:`~facelab.results.Result` with provenance."""
    check_profile(profile)
    from facelab.codedeps import track_modules

    started = time.time()
    with track_modules() as used:
        metrics, arrays = benchmark(model, input_shape, name=name, config=config, progress=progress)
    finished = time.time()
    cfg = dataclasses.asdict(config) | {"model": name, "input_shape": metrics["input_shape"]}
    with torch_threads(config.threads):  # so provenance's torch_threads is the measured setting
        prov = make_provenance(config=cfg, modules=used.modules, device=config.device,
                               started=started, finished=finished)
    prov["ort_intra_op_threads"] = config.threads
    return Result(chapter=chapter, experiment=latency_experiment_name(name, config), profile=profile,
                  seed=config.seed, config=cfg, metrics=metrics, arrays=arrays, provenance=prov)
