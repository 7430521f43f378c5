#!/usr/bin/env python3
"""Latency of exported ONNX models on an edge device (Jetson, Raspberry Pi), in facelab's result format.

This file is STANDALONE: it needs only Python >= 3.8, ``numpy`` and ``onnxruntime`` (no facelab,
no torch), so a reader can copy it with the ``.onnx`` files to a device and add its rows to the
book's tables. On the device::

    pip install numpy onnxruntime
    python3 edge_bench.py squeezefaceposenet-1a2b.onnx --threads 1 --batch 1 8 \
        --device-label "Raspberry Pi 4B" --results-dir results

(on a slow board, ``--matmul-size 2048`` keeps the floor measurement to seconds)
writes ``results/bench/latency.<model>.<device-label>.t<threads>--small.json``, which
``python -m facelab tables PAPER`` reads like any other result (copy it back into the
book's ``results/`` folder).

What is measured (the same as :mod:`facelab.bench.latency` does on the host):

* the timed region is one ``session.run`` on an already prepared float32 array of shape
  ``(batch, C, H, W)``: no image decoding, resizing, normalisation (pre-processing) and no
  distance computation or NMS (post-processing);
* ``warmup`` untimed runs, then ``repeats`` timed runs, each timed separately with
  ``time.perf_counter``; the result reports the median, the 10th and 90th percentiles
  (numpy's linear interpolation) and the mean, in milliseconds per call;
* ONNX Runtime's intra-op thread count is set explicitly (``--threads``; it counts the calling
  thread), inter-op parallelism is off (sequential execution);
* the *FLOP floor*: the model's FLOPs (from the ``.onnx.json`` sidecar that
  :func:`facelab.bench.onnx_export.export_onnx` writes: torch FlopCounterMode, 2 FLOPs per
  multiply-add) divided by the measured throughput of an ``N x N`` float32 matrix product
  (numpy's BLAS with the same thread count, timed in the same run, before and after the model
  runs), and the ratio
  ``median / floor``. Without a sidecar the floor is reported as missing, with the reason.

numpy reads its BLAS thread count from the environment when it is first imported, so this
script sets ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` from ``--threads``
before it imports numpy (numpy and onnxruntime are therefore imported inside functions).

The helpers here (:func:`summarize_times`, :func:`run_record`, :func:`latency_result`, ...)
are also what :mod:`facelab.bench.latency` uses, so both write one format.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

#: Must equal ``facelab.results.SCHEMA_VERSION`` (a test checks it).
SCHEMA_VERSION = 1
#: Chapter folder that latency and complexity results go to unless told otherwise.
DEFAULT_CHAPTER = "bench"
DEFAULT_PROFILE = "small"
#: Side of the square float32 matrices whose product measures the machine's throughput.
DEFAULT_MATMUL_SIZE = 4096
PERCENTILES = (10, 50, 90)
TIMED_REGION_ORT = ("one InferenceSession.run on a prepared float32 (batch, C, H, W) array; "
                    "no pre-processing (decode, resize, normalise) and no post-processing")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# ----------------------------------------------------------------------------- statistics


def time_calls(fn, *, repeats: int, warmup: int, sync=None, progress=None) -> list:
    """Run ``fn()`` ``warmup`` times untimed, then ``repeats`` times; seconds per call.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called after every call inside the timed
    region, so asynchronous devices are measured to completion. ``progress`` is called
    with no argument after each timed call, outside the timed region.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0 (got repeats={repeats}, warmup={warmup})")
    for _ in range(warmup):
        fn()
        if sync is not None:
            sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - t0)
        if progress is not None:
            progress()
    return times


def summarize_times(times_s) -> dict:
    """Median, p10, p90, mean, min, max (milliseconds) of per-call times given in seconds."""
    import numpy as np

    t = np.asarray(times_s, dtype=np.float64) * 1e3
    if t.size == 0:
        raise ValueError("no timings to summarize")
    p10, p50, p90 = np.percentile(t, PERCENTILES)
    return {"median_ms": float(p50), "p10_ms": float(p10), "p90_ms": float(p90),
            "mean_ms": float(t.mean()), "min_ms": float(t.min()), "max_ms": float(t.max()),
            "repeats": int(t.size)}


def floor_ms(flops, gflops):
    """Time (ms) to do ``flops`` floating-point operations at ``gflops`` GFLOP/s; None if unknown."""
    if flops is None or not gflops:
        return None
    return float(flops) / (float(gflops) * 1e9) * 1e3


def run_record(*, runtime: str, runtime_version: str, batch: int, threads: int, device: str,
               times_s, warmup: int, flops_per_image=None, matmul_gflops=None) -> dict:
    """One row of a latency result: a (runtime, batch) measurement with its FLOP floor."""
    rec = {"runtime": runtime, "runtime_version": runtime_version, "batch": int(batch),
           "threads": int(threads), "device": device, "warmup": int(warmup)}
    rec.update(summarize_times(times_s))
    rec["per_image_median_ms"] = rec["median_ms"] / batch
    rec["images_per_s"] = 1e3 * batch / rec["median_ms"]
    flops = None if flops_per_image is None else flops_per_image * batch
    rec["floor_ms"] = floor_ms(flops, matmul_gflops)
    # A model without counted FLOPs (no convolution or matrix product) has no meaningful floor.
    rec["floor_ratio"] = rec["median_ms"] / rec["floor_ms"] if rec["floor_ms"] else None
    return rec


def run_id(rec: dict) -> str:
    """Key of a run's raw timings in a result's ``arrays['times_ms']``, e.g. 'onnxruntime.b1'."""
    return f"{rec['runtime']}.b{rec['batch']}"


# ----------------------------------------------------------------------------- machine


def cpu_model(cpuinfo=None) -> str:
    """CPU name from /proc/cpuinfo ('model name' on x86, 'Model'/'Hardware' on ARM boards).

    ``cpuinfo`` is the file's text (read from /proc/cpuinfo when None).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    lines = cpuinfo.splitlines()
    for field in ("model name", "Model", "Hardware", "cpu model"):
        for line in lines:
            if line.split(":", 1)[0].strip() == field and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def edge_environment(device_label: str, threads: int) -> dict:
    """Provenance fields that need neither torch nor git (what a device can tell about itself)."""
    import numpy as np
    import onnxruntime as ort

    return {"host": socket.gethostname(), "platform": platform.platform(), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "device": "cpu", "device_label": device_label,
            "ort_intra_op_threads": int(threads),
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "onnxruntime": ort.__version__},
            "git_commit": None, "git_dirty": None}


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` ('torchvision:mobilenet_v2' -> 'torchvision-mobilenet_v2')."""
    out = "".join(c if (c.isalnum() or c in "_.") else "-" for c in text.strip())
    return "-".join(p for p in out.split("-") if p) or "unnamed"


def latency_experiment_name(model: str, device_label: str, threads: int) -> str:
    return f"latency.{slug(model)}.{slug(device_label)}.t{int(threads)}"


# ----------------------------------------------------------------------------- onnxruntime


def ort_session(path, *, threads: int, providers=None):
    """An InferenceSession with exactly ``threads`` intra-op threads and sequential execution."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1 (got {threads})")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist: export it with "
                                f"facelab.bench.onnx_export.export_onnx (or `python -m facelab bench NAME`)")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=so, providers=providers or ["CPUExecutionProvider"])


def session_input_shape(session, input_shape=None) -> tuple:
    """Per-image input shape (C, H, W): given, or read from the model's static dimensions."""
    if input_shape is not None:
        return tuple(int(v) for v in input_shape)
    dims = session.get_inputs()[0].shape[1:]
    if not all(isinstance(d, int) for d in dims):
        raise ValueError(f"the model's input has symbolic dimensions {dims}: pass --input-shape C,H,W")
    return tuple(dims)


def time_ort(session, input_shape, *, batch: int, repeats: int, warmup: int, seed: int = 0,
             progress=None) -> list:
    """Seconds per ``session.run`` on a fixed random float32 batch of ``input_shape`` images."""
    import numpy as np

    x = np.random.default_rng(seed).standard_normal((batch, *input_shape)).astype(np.float32)
    feed = {session.get_inputs()[0].name: x}
    return time_calls(lambda: session.run(None, feed), repeats=repeats, warmup=warmup, progress=progress)


def numpy_matmul_throughput(n: int = DEFAULT_MATMUL_SIZE, *, repeats: int = 3, warmup: int = 1) -> dict:
    """GFLOP/s of an ``n x n`` float32 matrix product with numpy's BLAS (2 n^3 FLOPs per product)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    times = time_calls(lambda: a @ b, repeats=repeats, warmup=warmup)
    median = float(np.median(times))
    return {"n": n, "gflops": 2.0 * n ** 3 / median / 1e9, "median_s": median, "times_s": times,
            "method": f"numpy float32 {n}x{n} matmul (BLAS threads from {'/'.join(THREAD_ENV_VARS)})"}


def combine_matmul(before: dict, after: dict) -> dict:
    """One throughput from matmuls timed before and after the model runs (median of all their times).

    Timing the matmul on both sides of the model runs brackets them in time, so a change of
    machine load during the run shows as ``gflops_before != gflops_after`` instead of skewing
    the floor unnoticed.
    """
    import numpy as np

    times = list(before["times_s"]) + list(after["times_s"])
    n = before["n"]
    median = float(np.median(times))
    return {"n": n, "gflops": 2.0 * n ** 3 / median / 1e9, "median_s": median, "times_s": times,
            "gflops_before": before["gflops"], "gflops_after": after["gflops"],
            "method": before["method"] + "; timed before and after the model runs, median of both"}


def read_sidecar(onnx_path) -> dict:
    """The ``<model>.onnx.json`` written at export (model name, input shape, FLOPs); {} if absent."""
    side = Path(str(onnx_path) + ".json")
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{side} is not valid JSON ({err}); re-export the model") from None


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- result format


def latency_metrics(*, model: str, input_shape, runs: list, matmul: dict, flops_per_image=None,
                    macs_per_image=None, flop_counter=None, threads: int, device: str, cpu: str,
                    timed_region: dict, extra=None) -> dict:
    """The ``metrics`` of a latency result (host and edge write exactly these keys).

    ``timed_region`` says, per runtime, what one timed call covers.
    """
    metrics = {
        "model": model,
        "input_shape": [int(v) for v in input_shape],
        "threads": int(threads),
        "device": device,
        "cpu": cpu,
        "flops_per_image": flops_per_image,
        "macs_per_image": macs_per_image,
        "flop_counter": flop_counter,
        "matmul_floor": {k: v for k, v in matmul.items() if k != "times_s"} if matmul else None,
        "preprocessing_included": False,
        "postprocessing_included": False,
        "timed_region": dict(timed_region),
        "percentiles": "numpy.percentile with linear interpolation over the timed repeats",
        "runs": runs,
    }
    if extra:
        metrics.update(extra)
    return metrics


def latency_result(*, experiment: str, chapter: str, profile: str, seed: int, config: dict,
                   metrics: dict, times_ms: dict, provenance: dict, matmul_times_s=None) -> dict:
    """A result record with the fields of ``facelab.results.Result``; ``arrays`` keeps every timed
    call (``times_ms[run_id]``) and the floor matmul's times."""
    arrays = {"times_ms": times_ms}
    if matmul_times_s is not None:
        arrays["matmul_times_s"] = list(matmul_times_s)
    return {"chapter": chapter, "experiment": experiment, "profile": profile, "seed": int(seed),
            "config": config, "metrics": metrics, "arrays": arrays,
            "provenance": provenance, "schema_version": SCHEMA_VERSION}


def write_result(result: dict, results_dir) -> Path:
    """Write ``result`` atomically to ``<results_dir>/<chapter>/<experiment>--<profile>.json``."""
    path = Path(results_dir) / result["chapter"] / f"{result['experiment']}--{result['profile']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, str(path))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _utc(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="seconds")


def bench_onnx_file(path, *, threads: int, batches=(1,), repeats: int = 30, warmup: int = 5,
                    matmul_size: int = DEFAULT_MATMUL_SIZE, matmul_repeats: int = 3,
                    device_label: str = "edge", input_shape=None, chapter: str = DEFAULT_CHAPTER,
                    profile: str = DEFAULT_PROFILE, seed: int = 0, log=None) -> dict:
    """Benchmark one exported model with ONNX Runtime on this machine; return the result record."""
    started = time.time()
    side = read_sidecar(path)
    session = ort_session(path, threads=threads)
    shape = session_input_shape(session, input_shape or side.get("input_shape"))
    model = side.get("model") or Path(path).stem
    import onnxruntime as ort

    if log:
        log(f"{model}: {shape}, {threads} thread(s), batches {list(batches)}, measuring the matmul floor ...")
    before = numpy_matmul_throughput(matmul_size, repeats=matmul_repeats) if matmul_size else None
    flops = side.get("flops_per_image")
    timed = [(b, time_ort(session, shape, batch=b, repeats=repeats, warmup=warmup, seed=seed)) for b in batches]
    matmul = (combine_matmul(before, numpy_matmul_throughput(matmul_size, repeats=matmul_repeats, warmup=0))
              if matmul_size else None)
    runs, times_ms = [], {}
    for b, times in timed:
        rec = run_record(runtime="onnxruntime", runtime_version=ort.__version__, batch=b, threads=threads,
                         device="cpu", times_s=times, warmup=warmup, flops_per_image=flops,
                         matmul_gflops=matmul["gflops"] if matmul else None)
        runs.append(rec)
        times_ms[run_id(rec)] = [t * 1e3 for t in times]
        if log:
            floor = f", {rec['floor_ratio']:.2f}x its FLOP floor" if rec["floor_ratio"] else ""
            log(f"  batch {b}: median {rec['median_ms']:.3f} ms (p10 {rec['p10_ms']:.3f}, "
                f"p90 {rec['p90_ms']:.3f}){floor}")
    env = edge_environment(device_label, threads)
    extra = {"onnx_sha256": file_sha256(path), "device_label": device_label}
    if flops is None:
        extra["floor_missing_reason"] = (f"no sidecar {Path(path).name}.json with flops_per_image next to the "
                                         "model: export it with facelab.bench.onnx_export.export_onnx")
    metrics = latency_metrics(model=model, input_shape=shape, runs=runs, matmul=matmul,
                              flops_per_image=flops, macs_per_image=side.get("macs_per_image"),
                              flop_counter=side.get("flop_counter"), threads=threads, device="cpu",
                              cpu=env["cpu"], timed_region={"onnxruntime": TIMED_REGION_ORT}, extra=extra)
    config = {"model": model, "onnx_file": Path(path).name, "input_shape": list(shape), "batches": list(batches),
              "threads": threads, "repeats": repeats, "warmup": warmup, "runtimes": ["onnxruntime"],
              "device": "cpu", "device_label": device_label, "matmul_size": matmul_size,
              "matmul_repeats": matmul_repeats}
    finished = time.time()
    env.update(started=_utc(started), finished=_utc(finished), wall_time_s=round(finished - started, 2),
               script="facelab/bench/edge_bench.py")
    return latency_result(experiment=latency_experiment_name(model, device_label, threads), chapter=chapter,
                          profile=profile, seed=seed, config=config, metrics=metrics, times_ms=times_ms,
                          provenance=env, matmul_times_s=matmul["times_s"] if matmul else None)


# ----------------------------------------------------------------------------- command line


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 (got {v})")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge_bench.py",
        description="Latency of exported .onnx models with ONNX Runtime (numpy + onnxruntime only); "
                    "writes facelab result JSON files.")
    p.add_argument("models", nargs="+", help=".onnx files exported by facelab (with their .onnx.json sidecars)")
    p.add_argument("--threads", type=_positive, default=1,
                   help="intra-op threads for ONNX Runtime and BLAS threads for the matmul floor (default 1)")
    p.add_argument("--batch", type=_positive, nargs="+", default=[1], help="batch sizes (default 1)")
    p.add_argument("--repeats", type=_positive, default=30, help="timed runs per batch size (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--matmul-size", type=int, default=DEFAULT_MATMUL_SIZE,
                   help="side N of the NxN float32 matmul that measures the FLOP floor; 0 skips it")
    p.add_argument("--matmul-repeats", type=_positive, default=3)
    p.add_argument("--input-shape", default=None, help="C,H,W when the model has no sidecar and symbolic dims")
    p.add_argument("--device-label", default=platform.node() or "edge",
                   help="short name of the device, e.g. 'Jetson Nano' or 'Raspberry Pi 4B' (default: host name)")
    p.add_argument("--results-dir", default="results", help="where to write <chapter>/<experiment>--<profile>.json")
    p.add_argument("--chapter", default=DEFAULT_CHAPTER)
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--seed", type=int, default=0)
    return p


def _parse_shape(text):
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise ValueError(f"--input-shape must look like 3,112,112 (got {text!r})") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"--input-shape must be three positive integers C,H,W (got {text!r})")
    return shape


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Before numpy is imported: its BLAS reads the thread count once, at load time.
    for var in THREAD_ENV_VARS:
        os.environ[var] = str(args.threads)
    if "numpy" in sys.modules:
        print("warning: numpy was imported before the thread count was set; the matmul floor may use "
              "another thread count", file=sys.stderr)
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        print(f"error: {err.name} is missing: pip install numpy onnxruntime", file=sys.stderr)
        return 2
    try:
        shape = _parse_shape(args.input_shape)
        for path in args.models:
            result = bench_onnx_file(path, threads=args.threads, batches=tuple(args.batch), repeats=args.repeats,
                                     warmup=args.warmup, matmul_size=args.matmul_size,
                                     matmul_repeats=args.matmul_repeats, device_label=args.device_label,
                                     input_shape=shape, chapter=args.chapter, profile=args.profile,
                                     seed=args.seed, log=lambda m: print(m, file=sys.stderr))
            out = write_result(result, args.results_dir)
            print(f"wrote {out}", file=sys.stderr)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: results of finished models are kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
