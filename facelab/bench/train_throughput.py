"""Training throughput: images/s of one SGD step per speed lever, against the matmul floor.

How a number is measured (recorded in every result):

* **Timed region**: one :class:`facelab.train.loop.TrainStep` call, the step :func:`facelab.train.loop.fit`
  runs: forward, float32 cross-entropy, backward, gradient clipping (norm 10) and SGD with
  momentum 0.9 and weight decay 5e-4 (:func:`facelab.train.loop.make_optimizer`), on a fixed
  random ``float32[batch, C, H, W]`` batch already in memory (no data loading: that is measured
  on its own, below). Each lever trains its own copy of the same initial weights.
* **Quiet steps**: during each timed step the benchmark reads how many cores *other* processes
  kept busy (/proc/stat minus this process); steps where they held more than ``quiet_cores``
  (0.25) are left out of the median when more than half the steps remain (``quiet: True``;
  otherwise every step is used and ``quiet: False`` says the number was measured under load).
* **Repeats**: each lever's first step is timed alone (with ``compile`` it includes compiling),
  then the levers take turns, one step each per round (rotating order): ``warmup`` untimed
  rounds, ``steps`` timed rounds (``time.perf_counter`` per step); the median gives images/s =
  batch / median. Interleaving keeps the ratios between levers honest when the machine's load
  changes during the run.
* **Levers** (:class:`facelab.train.speed.Speed`), each measured in the same run and reported
  as a ratio to the float32 NCHW eager baseline: ``channels_last``, ``bf16`` (autocast, only
  where the CPU has native bf16; elsewhere the lever is recorded as skipped with the reason),
  both, and ``compile`` (Inductor; skipped with the reason when no C++ compiler is found or
  compiling fails).
* **Training FLOPs per image**: ``FlopCounterMode`` over one forward *and* backward pass
  (2 FLOPs per multiply-add; convolutions and matrix products only, so batch norm, activations
  and the optimizer's element-wise update are not counted). The backward of a convolution is
  two convolutions (input and weight gradients) except for the first layer, which needs no
  input gradient, so a CNN's training FLOPs are a little under 3x its forward FLOPs. torch's own
  formula for ``convolution_backward`` counts the weight gradient of a *grouped* convolution as
  if it were dense (``groups`` times too many: MobileNetV2's backward came out at 19x its
  forward), so each backward convolution is counted here as its forward's FLOPs
  (:func:`conv_backward_flops`).
* **Floor**: the throughput of ``torch.mm`` on two ``N x N`` matrices in float32 and, where the
  CPU has native bf16, in bfloat16 (:func:`facelab.bench.latency.torch_matmul_throughput`), same
  threads, timed before and after the steps. ``floor_ratio = median step / (FLOPs x batch /
  fp32 matmul GFLOP/s)``: 1 means the step keeps the arithmetic units as busy as a big sgemm;
  bf16 levers also get ``bf16_floor_ratio`` against the bf16 matmul.
* **Data path**: seconds to produce one batch with the per-sample path
  (:class:`~facelab.train.inputs.ModelInput` over :class:`~facelab.data.datasets.AlignedFaces`,
  flip + shift augmentation, DataLoader collation) and the batched path
  (:class:`~facelab.train.inputs.PackedFaces`), from random ``uint8[112, 112, 3]`` crops resized
  to the model's input; ``stall`` = data time / (data time + step time) for the baseline and the
  fastest lever.
* **Machine**: CPU model, its ISA flags (/proc/cpuinfo: avx2, avx512f, avx512_bf16, amx_bf16...),
  threads (intra-op, set for the run and restored; inter-op reported), the 1/5/15-minute load
  averages before and after, and the mean number of cores *other* processes kept busy during the
  run (/proc/stat minus this process): on a shared machine a number measured under load is low
  (two threads lose far more than a share of the cores: their OpenMP barriers wait for a thread
  that another process has descheduled).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from facelab.bench import edge_bench, latency
from facelab.config import check_device, check_profile
from facelab.errors import UnknownNameError, UsageError
from facelab.results import Result, make_provenance
from facelab.train.speed import Speed, bf16_support, compiler_available, cpu_description, torch_threads

#: Every lever the benchmark knows, by label (``Speed.label``).
LEVERS: dict[str, Speed] = {s.label: s for s in (
    Speed(),
    Speed(channels_last=True),
    Speed(autocast_bf16=True),
    Speed(autocast_bf16=True, channels_last=True),
    Speed(compile=True),
    Speed(autocast_bf16=True, channels_last=True, compile=True),
)}
#: Measured unless told otherwise (compile is opt-in: it costs a minute or more per lever).
DEFAULT_LEVERS = ("fp32", "channels_last", "bf16", "bf16+channels_last")
BASELINE = "fp32"
#: Side of the packed aligned crops (facelab.data.prepare) that the data path resizes.
PACKED_CROP_SIZE = 112
TIMED_REGION = ("one facelab.train.loop.TrainStep call (forward, float32 cross-entropy, backward, gradient "
                "clipping, SGD momentum step) on a fixed random float32 batch already in memory")
EXPERIMENT_PREFIX = "trainspeed"


@dataclass(frozen=True)
class TrainBenchConfig:
    """What a training-throughput run measures (``threads`` = torch intra-op threads for the run)."""

    threads: int = 2
    batch: int = 32
    steps: int = 10
    warmup: int = 2
    levers: tuple[str, ...] = DEFAULT_LEVERS
    num_classes: int = 500
    device: str = "cpu"
    matmul_size: int = edge_bench.DEFAULT_MATMUL_SIZE
    matmul_repeats: int = 3
    data: bool = True
    seed: int = 0
    #: Steps during which other processes kept more cores than this busy are left out of the
    #: median (when more than half the steps remain; None keeps every step).
    quiet_cores: float | None = 0.25

    @classmethod
    def for_profile(cls, profile: str, *, heavy: bool = False, **overrides) -> TrainBenchConfig:
        """Steps per profile: smoke 2 (warm-up 1, 1024² floor), small 10/2, full 30/3; ``heavy``
        models (ResNet-50 at 224) small 4/1, full 10/2."""
        check_profile(profile)
        base = {"smoke": dict(steps=2, warmup=1, matmul_size=1024, matmul_repeats=2),
                "small": dict(steps=4, warmup=1) if heavy else dict(steps=10, warmup=2),
                "full": dict(steps=10, warmup=2) if heavy else dict(steps=30, warmup=3)}[profile]
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def check(self) -> TrainBenchConfig:
        if self.threads < 1 or self.batch < 2:
            raise UsageError(f"need threads >= 1 and batch >= 2 (batch norm needs 2), got {self.threads}, {self.batch}")
        if self.steps < 1 or self.warmup < 0:
            raise UsageError(f"need steps >= 1 and warmup >= 0 (got {self.steps}, {self.warmup})")
        unknown = [lv for lv in self.levers if lv not in LEVERS]
        if unknown or not self.levers:
            raise UnknownNameError(f"unknown lever(s) {unknown or list(self.levers)}: choose from {', '.join(LEVERS)}")
        if self.num_classes < 2:
            raise UsageError(f"num_classes must be >= 2 (got {self.num_classes})")
        if self.matmul_size < 0:
            raise UsageError(f"matmul_size must be >= 0 (0 skips the floor), got {self.matmul_size}")
        check_device(self.device)
        return self


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **_kwargs) -> int:
    """FLOPs of ``aten.convolution_backward`` (FlopCounterMode formula, shapes in): the input
    gradient and the weight gradient each multiply every (output position, weight) pair once,
    exactly like the forward, whose count (``w_shape`` holds channels per group) is exact for
    grouped convolutions too."""
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def training_flops(model: nn.Module, input_shape: Sequence[int], *, num_classes: int, batch: int = 2,
                   device: str = "cpu") -> dict:
    """FLOPs per image of one training forward and backward (FlopCounterMode, 2 per multiply-add).

    Counted on a copy of ``model`` in train mode (its weights, gradients and batch-norm
    statistics are left alone) on ``batch`` random images; FLOPs are linear in the batch.
    """
    net = copy.deepcopy(model).to(device).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *input_shape, generator=g).to(device)
    y = torch.randint(0, num_classes, (batch,), generator=g).to(device)
    with FlopCounterMode(display=False) as fwd:
        loss = nn.functional.cross_entropy(net(x).float(), y)
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as bwd:
        loss.backward()
    forward, backward = fwd.get_total_flops() / batch, bwd.get_total_flops() / batch
    return {"forward": forward, "backward": backward, "total": forward + backward, "counted_batch": batch}


def _batch(input_shape: Sequence[int], batch: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch, *input_shape)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, num_classes, batch).astype(np.int64))
    return x, y


def quiet_steps(times_s: Sequence[float], others: Sequence[float | None], max_others: float | None):
    """The timed steps during which other processes kept at most ``max_others`` cores busy, and
    whether that is what was used (True) or too few steps were quiet (at most half) so all are
    used (False); ``max_others=None`` or no /proc/stat: all steps, None."""
    if max_others is None or any(o is None for o in others):
        return list(times_s), None
    kept = [t for t, o in zip(times_s, others) if o <= max_others]
    return (kept, True) if len(kept) > len(times_s) / 2 else (list(times_s), False)


def time_levers(model: nn.Module, input_shape: Sequence[int], levers: Sequence[str],
                config: TrainBenchConfig) -> dict[str, dict]:
    """Time :class:`~facelab.train.loop.TrainStep` per lever, each on its own copy of ``model``.

    Every lever's first step is timed alone (with ``compile`` it compiles), then the levers take
    turns: ``warmup`` untimed rounds and ``steps`` timed rounds of one step each, the order
    rotating every round. Interleaving makes the ratios between levers robust to a change of
    machine load during the run (a slow minute slows every lever, not only the one running then).

    Returns, per lever, ``{"first_step_s", "times_s", "others_cores", "speed"}`` (``others_cores``:
    cores other processes kept busy during each timed step; ``speed``: what was used, bf16 or not
    and why) or ``{"skipped": reason}`` when the lever cannot run here.
    """
    from facelab.train.loop import TrainConfig, TrainStep, make_optimizer

    train_config = TrainConfig(epochs=1, batch_size=config.batch)
    x, y = _batch(input_shape, config.batch, config.num_classes, config.seed)
    x, y = x.to(config.device), y.to(config.device)
    sync = latency._sync_for(config.device)
    out: dict[str, dict] = {}
    steps: dict[str, TrainStep] = {}

    def run(step: TrainStep) -> tuple[float, float | None]:
        busy0 = cpu_seconds()
        t0 = time.perf_counter()
        step(x, y)
        if sync:
            sync()
        elapsed = time.perf_counter() - t0
        others = other_cores(busy0, cpu_seconds())
        # Free the gradients outside the timed region (the next step's zero_grad would): several
        # copies of a ResNet-50 then fit in memory. set_to_none means every step allocates them anyway.
        step.optimizer.zero_grad(set_to_none=True)
        return elapsed, others

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # dropout masks
        for label in levers:
            speed = LEVERS[label]
            if speed.autocast_bf16 and not bf16_support(config.device)[0]:
                out[label] = {"skipped": bf16_support(config.device)[1]}
                continue
            if speed.compile and not compiler_available()[0]:
                out[label] = {"skipped": compiler_available()[1]}
                continue
            net = copy.deepcopy(model).to(config.device).train()
            step = TrainStep(net, make_optimizer({"": net}, train_config), speed=speed,
                             grad_clip=train_config.grad_clip, device=config.device)
            try:
                first = run(step)[0]
            except Exception as err:  # noqa: BLE001 - a compile that fails here is reported, not fatal
                if not speed.compile:
                    raise
                out[label] = {"skipped": f"torch.compile failed: {type(err).__name__}: "
                                         f"{str(err).splitlines()[0][:300] if str(err) else ''}"}
                continue
            steps[label] = step
            out[label] = {"first_step_s": first, "times_s": [], "others_cores": [], "speed": step.resolved}
        order = list(steps)
        for k in range(config.warmup + config.steps):
            for label in order[k % len(order):] + order[:k % len(order)] if order else []:
                elapsed, others = run(steps[label])
                if k >= config.warmup:
                    out[label]["times_s"].append(elapsed)
                    out[label]["others_cores"].append(others)
    return out


def time_data_paths(input_size: int, *, batch: int, steps: int, seed: int = 0) -> dict:
    """Seconds per batch of the per-sample and the batched data path (DataLoader, no workers).

    Both read random ``uint8[112, 112, 3]`` crops, flip and shift them (``FlipJitter(0.5, 4)``)
    and resize them to ``input_size``: the per-sample path is ``ModelInput(AlignedFaces(...))``
    collated by the DataLoader, the batched one :class:`~facelab.train.inputs.PackedFaces`.
    """
    import pandas as pd
    from torch.utils.data import DataLoader

    from facelab.data.augment import FlipJitter
    from facelab.data.datasets import AlignedFaces
    from facelab.train.inputs import ModelInput, PackedFaces, collate_batches

    n = batch * (steps + 1)
    crops = np.random.default_rng(seed).integers(0, 256, (n, PACKED_CROP_SIZE, PACKED_CROP_SIZE, 3), dtype=np.uint8)
    # Stand-in for a PreparedSet: the two attributes AlignedFaces reads.
    prepared = _InMemoryCrops(manifest=pd.DataFrame({"identity": [f"id{i % 50}" for i in range(n)]}), aligned=crops)
    faces = AlignedFaces(prepared, augment=FlipJitter(0.5, 4), seed=seed)
    out = {}
    for path, dataset in (("per_sample", ModelInput(faces, input_size)),
                          ("batched", PackedFaces.from_faces(faces, input_size))):
        loader = iter(DataLoader(dataset, batch_size=batch, shuffle=True, collate_fn=collate_batches,
                                 generator=torch.Generator().manual_seed(seed)))
        next(loader)  # first batch: DataLoader start-up
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            next(loader)
            times.append(time.perf_counter() - t0)
        out[path] = {"median_s": float(np.median(times)), "times_s": times}
    out["method"] = (f"DataLoader (no workers) over {n} random uint8 112x112 crops, FlipJitter(0.5, 4), resized to "
                     f"{input_size}x{input_size}; median seconds per batch of {batch} over {steps} batches")
    return out


@dataclass
class _InMemoryCrops:
    manifest: object
    aligned: np.ndarray


def cpu_seconds() -> dict | None:
    """Busy CPU seconds of the whole machine (/proc/stat) and of this process (threads included), now.

    Two samples give the cores other processes used in between (:func:`other_cores`); None
    where /proc/stat cannot be read.
    """
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    jiffies = [int(v) for v in fields]
    busy = sum(jiffies) - jiffies[3] - (jiffies[4] if len(jiffies) > 4 else 0)  # minus idle and iowait
    t = os.times()
    return {"wall": time.monotonic(), "machine_busy": busy / os.sysconf("SC_CLK_TCK"), "own": t.user + t.system}


def other_cores(before: dict | None, after: dict | None) -> float | None:
    """Mean number of cores that *other* processes kept busy between two :func:`cpu_seconds` samples."""
    if not before or not after or after["wall"] <= before["wall"]:
        return None
    others = (after["machine_busy"] - before["machine_busy"]) - (after["own"] - before["own"])
    return max(0.0, others / (after["wall"] - before["wall"]))


def _matmuls(config: TrainBenchConfig, bf16: bool) -> dict:
    out = {"float32": latency.torch_matmul_throughput(config.matmul_size, device=config.device,
                                                      repeats=config.matmul_repeats)}
    if bf16:
        out["bfloat16"] = latency.torch_matmul_throughput(config.matmul_size, device=config.device,
                                                          repeats=config.matmul_repeats, dtype=torch.bfloat16)
    return out


def benchmark(model: nn.Module, input_shape: Sequence[int], *, name: str,
              config: TrainBenchConfig = TrainBenchConfig(), progress: bool = False) -> tuple[dict, dict]:
    """Measure the training step of ``model`` (logits over ``config.num_classes``) per lever.

    Returns ``(metrics, arrays)`` of a result: ``metrics['runs']`` has one record per lever
    (images/s, GFLOP/s, ratios to the baseline and to the floors, or ``skipped`` with the
    reason); ``arrays`` keeps every timed step and matmul.
    """
    config.check()
    shape = tuple(int(v) for v in input_shape)
    load_before, cpu_before = os.getloadavg(), cpu_seconds()
    cpu = cpu_description()
    bf16_ok, bf16_why = bf16_support(config.device)
    arrays: dict = {"step_times_s": {}}
    with torch_threads(config.threads):
        flops = training_flops(model, shape, num_classes=config.num_classes, device=config.device)
        before = _matmuls(config, bf16_ok) if config.matmul_size else {}
        if progress:
            print(f"  {name}: {', '.join(config.levers)} ...", file=sys.stderr, flush=True)
        timed = time_levers(model, shape, config.levers, config)
        data = (time_data_paths(shape[-1], batch=config.batch, steps=min(config.steps, 10), seed=config.seed)
                if config.data and len(shape) == 3 and shape[0] == 3 and shape[1] == shape[2] else None)
        after = _matmuls(config, bf16_ok) if config.matmul_size else {}
        interop = torch.get_num_interop_threads()
    floors = {k: edge_bench.combine_matmul(before[k], after[k]) for k in before}
    runs = []
    base = timed.get(BASELINE, {})
    base_median = (float(np.median(quiet_steps(base["times_s"], base["others_cores"], config.quiet_cores)[0]))
                   if "times_s" in base else None)
    for label, t in timed.items():
        rec: dict = {"lever": label}
        if "skipped" in t:
            rec["skipped"] = t["skipped"]
            runs.append(rec)
            continue
        times, quiet = quiet_steps(t["times_s"], t["others_cores"], config.quiet_cores)
        median = float(np.median(times))
        rec.update(speed=t["speed"], median_s=median, p10_s=float(np.percentile(times, 10)),
                   p90_s=float(np.percentile(times, 90)), first_step_s=t["first_step_s"],
                   steps_used=len(times), quiet=quiet,
                   others_cores_mean=float(np.mean([o for o in t["others_cores"] if o is not None] or [np.nan])),
                   images_per_s=config.batch / median, gflops=flops["total"] * config.batch / median / 1e9,
                   speedup=base_median / median if base_median else None)
        # With compile, the first step compiles the forward and the backward graphs.
        rec["compile_s"] = t["first_step_s"] - median if LEVERS[label].compile else None
        for key, dtype in (("floor_ratio", "float32"), ("bf16_floor_ratio", "bfloat16")):
            if dtype in floors and (dtype == "float32" or t["speed"]["bf16_used"]) and flops["total"]:
                rec[key] = floors[dtype]["gflops"] / rec["gflops"]
        arrays["step_times_s"][label] = t["times_s"]
        arrays.setdefault("step_others_cores", {})[label] = t["others_cores"]
        runs.append(rec)
    if data is not None:
        done = [r for r in runs if "median_s" in r]
        against = [r for r in done if r["lever"] == BASELINE] + ([min(done, key=lambda r: r["median_s"])] if done else [])
        for path in ("per_sample", "batched"):
            d = data[path]
            d["stall_vs"] = {r["lever"]: d["median_s"] / (d["median_s"] + r["median_s"]) for r in against}
        data["stall_definition"] = "data seconds / (data seconds + step seconds) per batch, without overlap"
        arrays["data_times_s"] = {p: data[p].pop("times_s") for p in ("per_sample", "batched")}
    for k, f in floors.items():
        arrays[f"matmul_times_s_{k}"] = f["times_s"]
    metrics = {
        "model": name, "input_shape": list(shape), "batch": config.batch, "num_classes": config.num_classes,
        "threads": config.threads, "interop_threads": interop, "device": config.device, "cpu": cpu,
        "bf16_supported": bf16_ok, "bf16_reason": bf16_why,
        "train_flops_per_image": flops,
        "flop_counter": "torch.utils.flop_counter.FlopCounterMode over forward and backward, 2 FLOPs per "
                        "multiply-add; convolutions and matrix products only",
        "matmul_floor": {k: {kk: vv for kk, vv in f.items() if kk != "times_s"} for k, f in floors.items()} or None,
        "timed_region": TIMED_REGION, "steps": config.steps, "warmup": config.warmup,
        "runs": runs, "data_path": data,
        "load_average": {"before": list(load_before), "after": list(os.getloadavg())},
        # The load average counts this benchmark too (and decays over minutes); this does not. With
        # compile, Inductor's compile workers (subprocesses of this one) count as other processes.
        "other_processes_cores": other_cores(cpu_before, cpu_seconds()),
    }
    if not bf16_ok:
        metrics["bf16_floor_missing_reason"] = bf16_why
    return metrics, arrays


def train_experiment_name(name: str, input_shape: Sequence[int], config: TrainBenchConfig) -> str:
    """'trainspeed.<model>.<H>px.b<batch>.<device>.t<threads>' (one result per model, size, batch, threads)."""
    return (f"{EXPERIMENT_PREFIX}.{edge_bench.slug(name)}.{int(input_shape[-1])}px.b{config.batch}."
            f"{edge_bench.slug(config.device.replace(':', ''))}.t{config.threads}")


def train_throughput_result(model: nn.Module, input_shape: Sequence[int], *, name: str,
                            config: TrainBenchConfig = TrainBenchConfig(), model_kwargs: dict | None = None,
                            chapter: str = edge_bench.DEFAULT_CHAPTER, profile: str = edge_bench.DEFAULT_PROFILE,
                            progress: bool = False) -> Result:
    """:func:`benchmark` wrapped as a :class:`~facelab.results.Result` with provenance."""
    from facelab.codedeps import track_modules

    check_profile(profile)
    started = time.time()
    with track_modules() as used:
        metrics, arrays = benchmark(model, input_shape, name=name, config=config, progress=progress)
    finished = time.time()
    cfg = dataclasses.asdict(config) | {"model": name, "input_shape": list(input_shape),
                                        "model_kwargs": dict(model_kwargs or {})}
    with torch_threads(config.threads):  # so provenance's torch_threads is the measured setting
        prov = make_provenance(config=cfg, modules=used.modules, device=config.device,
                               started=started, finished=finished)
    return Result(chapter=chapter, experiment=train_experiment_name(name, input_shape, config), profile=profile,
                  seed=config.seed, config=cfg, metrics=metrics, arrays=arrays, provenance=prov)


def wait_for_quiet(max_cores: float, *, window_s: float = 10.0, timeout_s: float = 1800.0, log=None) -> dict:
    """Wait until other processes keep fewer than ``max_cores`` cores busy (or ``timeout_s`` passed).

    Each check sleeps ``window_s`` and reads how busy the machine was meanwhile (/proc/stat:
    this process is idle then, so it is all other processes); unlike the load average, this does
    not remember the minutes before, when this benchmark itself was running. Where /proc/stat
    is missing, the 1-minute load average stands in. Returns what happened (``quiet``, seconds
    waited, the busy cores of the last window, the load average), stored with the result.
    """
    t0 = time.monotonic()
    while True:
        before = cpu_seconds()
        time.sleep(window_s)
        busy = other_cores(before, cpu_seconds())
        busy = os.getloadavg()[0] if busy is None else busy
        waited = time.monotonic() - t0
        if busy < max_cores or waited >= timeout_s:
            return {"max_cores": max_cores, "quiet": busy < max_cores, "waited_s": round(waited, 1),
                    "busy_cores": round(busy, 3), "load_average": list(os.getloadavg())}
        if log:
            log(f"  other processes keep {busy:.2f} cores busy (>= {max_cores}): waiting ({waited:.0f} s so far, "
                f"at most {timeout_s:.0f} s)")


# ----------------------------------------------------------------------------- the suite of the book


@dataclass(frozen=True)
class SuiteEntry:
    """One model of the throughput table, at the input and batch its chapter trains with."""

    name: str
    batch: int
    input_shape: tuple[int, int, int] | None = None  # None: the model's own
    model_kwargs: dict = field(default_factory=dict)
    heavy: bool = False  # fewer timed steps (ResNet-50 class at 224x224)
    levers: tuple[str, ...] | None = None  # None: DEFAULT_LEVERS
    note: str = ""


_STN_SMALL = {"input_size": 40, "output_size": 32}
#: Every registered model, at the input its chapter's ``small`` profile trains on, plus MobileNetV2.
TRAIN_SUITE: tuple[SuiteEntry, ...] = (
    # name, batch, input, model kwargs, heavy, note
    SuiteEntry("squeezefaceposenet", 32, levers=tuple(LEVERS), note="chapter 2, 113x113 (with torch.compile)"),
    SuiteEntry("squeezefaceposenet_dwc", 32, note="chapter 2, 113x113"),
    SuiteEntry("squeezefaceposenet_gdc", 32, note="chapter 2, 113x113"),
    SuiteEntry("squeezefaceposenet_dwc_gdc", 32, note="chapter 2, 113x113"),
    SuiteEntry("resnet50", 16, heavy=True, note="chapter 2 baseline, 224x224, batch 16 as at small"),
    SuiteEntry("se_resnet50", 16, heavy=True, note="chapter 2 baseline, 224x224, batch 16 as at small"),
    SuiteEntry("stn_resnet_identity", 32, model_kwargs=_STN_SMALL, note="chapter 3 small: 40 px in, 32 px out"),
    SuiteEntry("stn_resnet_similarity", 32, model_kwargs=_STN_SMALL, note="chapter 3 small: 40 px in, 32 px out"),
    SuiteEntry("stn_resnet_affine", 32, model_kwargs=_STN_SMALL, note="chapter 3 small: 40 px in, 32 px out"),
    SuiteEntry("stn_resnet_projective", 32, model_kwargs=_STN_SMALL, note="chapter 3 small: 40 px in, 32 px out"),
    SuiteEntry("torchvision:mobilenet_v2", 32, input_shape=(3, 112, 112), levers=tuple(LEVERS),
               note="reference, 112x112 (with torch.compile)"),
)


def suite_entries(names: Sequence[str] | None = None) -> list[SuiteEntry]:
    """The :data:`TRAIN_SUITE` entries (all, or those named); a registered model missing from the
    suite is a bug of the suite, so it is added at its own input shape, batch 32."""
    from facelab.registry import list_models

    entries = list(TRAIN_SUITE)
    listed = {e.name for e in entries}
    entries += [SuiteEntry(n, 32, note="registered model, its own input shape") for n in list_models()
                if n not in listed]
    if names:
        unknown = sorted(set(names) - {e.name for e in entries})
        if unknown:
            raise UnknownNameError(f"not in the training suite: {', '.join(unknown)} (suite: {', '.join(e.name for e in entries)})")
        entries = [e for e in entries if e.name in names]
    return entries


def run_entry(entry: SuiteEntry, *, profile: str, seed: int = 0, progress: bool = False,
              quiet: dict | None = None, **overrides) -> Result:
    """Benchmark one suite entry at ``profile`` (``overrides`` go to :meth:`TrainBenchConfig.for_profile`).

    ``quiet``: keyword arguments of :func:`wait_for_quiet` (wait for a quiet machine first; what
    happened is stored in ``metrics['waited_for_quiet']``).
    """
    from facelab.bench.cli import load_model

    own = {"batch": entry.batch, "seed": seed} | ({"levers": entry.levers} if entry.levers else {})
    config = TrainBenchConfig.for_profile(profile, heavy=entry.heavy,
                                          **(own | {k: v for k, v in overrides.items() if v is not None})).check()
    model, shape = load_model(entry.name, seed=seed, input_shape=entry.input_shape, device=config.device,
                              num_classes=config.num_classes, **entry.model_kwargs)
    waited = wait_for_quiet(**quiet) if quiet else None
    result = train_throughput_result(model, shape, name=entry.name, config=config, model_kwargs=entry.model_kwargs,
                                     profile=profile, progress=progress)
    if waited is not None:
        result.metrics["waited_for_quiet"] = waited
    return result


# ----------------------------------------------------------------------------- the table


def load_throughput_results(results_dir: str | os.PathLike | None = None, *, profile: str = "small",
                            chapter: str = edge_bench.DEFAULT_CHAPTER) -> list[Result]:
    """Every stored training-throughput result of ``profile`` (``<results>/<chapter>/trainspeed.*``)."""
    from facelab.paths import results_root
    from facelab.results import load_result

    folder = Path(results_root(results_dir)) / chapter
    return [load_result(p) for p in sorted(folder.glob(f"{EXPERIMENT_PREFIX}.*--{profile}.json"))]


def _fit_columns(metrics: dict, base: dict, best: dict | None) -> dict:
    """Images/s of a whole training iteration (data + step, no overlap: fit loads in the training
    process): before = float32 step + per-sample data path, after = best lever + batched path."""
    data = metrics.get("data_path")
    if not data or "median_s" not in base or best is None:
        return {"fit img/s before": None, "fit img/s after": None}
    b = metrics["batch"]
    before = b / (base["median_s"] + data["per_sample"]["median_s"])
    after = b / (best["median_s"] + data["batched"]["median_s"])
    return {"fit img/s before": before, "fit img/s after": after}


def throughput_table(results: Sequence[Result | dict]):
    """One row per result: training FLOPs, float32 images/s, each lever's speed-up, the best lever,
    its GFLOP/s and its time over the float32 matmul floor, a whole iteration's images/s before
    (float32 step + per-sample data path) and after (best lever + batched data path), the floor
    itself and the machine load.

    Returns a pandas DataFrame indexed by (model, input, batch); a skipped lever shows as NaN and
    its reason is in the result.
    """
    import pandas as pd

    rows = []
    for res in results:
        m = res.metrics if isinstance(res, Result) else res["metrics"]
        runs = {r["lever"]: r for r in m["runs"]}
        done = [r for r in m["runs"] if "median_s" in r]
        best = max(done, key=lambda r: r["images_per_s"]) if done else None
        base = runs.get(BASELINE, {})
        floor = (m.get("matmul_floor") or {}).get("float32", {})
        row = {"model": m["model"], "input": "x".join(str(v) for v in m["input_shape"][1:]), "batch": m["batch"],
               "train GFLOP/image": m["train_flops_per_image"]["total"] / 1e9,
               f"{BASELINE} img/s": base.get("images_per_s")}
        for label in LEVERS:
            if label != BASELINE and label in runs:
                row[f"{label} ×"] = runs[label].get("speedup")
        row.update({"best lever": best["lever"] if best else None,
                    "best img/s": best["images_per_s"] if best else None,
                    "best GFLOP/s": best["gflops"] if best else None,
                    "best / fp32 floor": best.get("floor_ratio") if best else None,
                    **_fit_columns(m, base, best),
                    "sgemm GFLOP/s": floor.get("gflops"),
                    "bf16 mm GFLOP/s": (m.get("matmul_floor") or {}).get("bfloat16", {}).get("gflops"),
                    "load (1 min)": m["load_average"]["before"][0],
                    "others' cores": m.get("other_processes_cores"),
                    # every lever's median over steps when other processes were (nearly) idle
                    "quiet": all(r.get("quiet") for r in done) if done else None})
        rows.append(row)
    return pd.DataFrame(rows).set_index(["model", "input", "batch"]) if rows else pd.DataFrame()
