"""Chapter 1 (paper 000, LEFV): cost formulas, the detector family's complexity, latency and roofline.

Experiments (``python -m facelab run NAME --profile P``):

* ``lefv.table1``: Table 1's parameter and computation formulas evaluated on a grid of real layers
  (a standard and a depthwise separable convolution, counted by ``numel`` and FlopCounterMode),
  and the two side claims of Section 2.2 measured on real networks: VGG-16 has "32 times" the
  parameters of MobileNet, and 1×1 convolutions are "93%" (ResNet) and "94.86%" (MobileNet) of the
  computation (:mod:`facelab.bench.conv_cost`; ResNet-50, ResNeXt-50 and ResNet-34 from torchvision,
  MobileNet V1 from :mod:`facelab.models.mobilenet_v1`).
* ``lefv.complexity_latency``: Table 2's FLOPs of the five detector networks
  (:mod:`facelab.models.lefv_detector`) at the VGA input and at 320×240, their sizes, and their
  latency on a VGA input (eager PyTorch and ONNX Runtime, 1 and 2 threads); Table 3's model sizes and
  the latency of MTCNN (facenet-pytorch) and YuNet (yuface) on the same real VGA image (a WIDER FACE
  validation image resized to 640×480; their whole pipelines, beside our detector's network: its
  decoding + NMS is timed once it is trained); Table 5's recognizers (ours with and without MSFF at 112×112, VGG-16 and ResNet-34
  at 224×224) as frames per second; the whole detect → align → normalize → recognize chain on that
  image with 1 and 4 faces (:func:`system_times`); and the roofline floor of every timed network
  (:mod:`facelab.bench.roofline`: FLOPs ÷ matmul rate and bytes ÷ memory bandwidth, both measured in the run).

What the paper measured on a Jetson TX2 and a Raspberry Pi 3B+ is measured here on this machine's
CPU: the chapter says so beside every number.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import MissingDataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("lefv")
CHAPTER = CH.folder
#: Table 2's networks in the paper's column order, then the ReLU row it promises.
DETECTORS = ("lefv_detector_cf", "lefv_detector_cf_sdc", "lefv_detector", "lefv_detector_baseline",
             "lefv_detector_relu")
RECOGNIZERS = ("lefv_recognizer", "lefv_recognizer_no_msff")
#: Table 5's large models (torchvision, random weights: latency does not depend on their values).
REFERENCE_RECOGNIZERS = ("torchvision:vgg16", "torchvision:resnet34")
VGA = (480, 640)


# ----------------------------------------------------------------------------- Table 1


@dataclass(frozen=True)
class Table1Config:
    """Layers on which Table 1's formulas are checked: ``(n, N_in, N_out, H, W)`` each, both kinds."""

    layers: tuple[tuple[int, int, int, int, int], ...] = (
        (3, 32, 64, 112, 112), (3, 64, 128, 56, 56), (3, 128, 128, 28, 28), (3, 512, 512, 14, 14),
        (5, 16, 32, 20, 20), (7, 3, 64, 112, 112), (1, 64, 64, 7, 7))
    share_models: tuple[str, ...] = ("mobilenet_v1", "torchvision:resnet50", "torchvision:resnext50_32x4d",
                                     "torchvision:resnet34")


def configure_table1(profile: str) -> Table1Config:
    check_profile(profile)
    if profile == "smoke":
        return Table1Config(layers=((3, 8, 16, 10, 12), (5, 4, 8, 7, 9)),
                            share_models=("mobilenet_v1", "torchvision:resnet50"))
    return Table1Config()


def _reference_model(name: str):
    import torchvision

    from facelab.models.mobilenet_v1 import MobileNetV1

    if name == "mobilenet_v1":
        return MobileNetV1()
    return torchvision.models.get_model(name.split(":", 1)[1], weights=None)


def run_table1(config: Table1Config, ctx: RunContext):
    import torch

    from facelab.bench.conv_cost import evaluate_formula, measure_conv, pointwise_share
    from facelab.tables import cells

    table = cells(CH.paper)
    checks = []
    for n, c_in, c_out, h, w in config.layers:
        symbols = {"n": n, "N_in": c_in, "N_out": c_out, "H": h, "W": w}
        for row, separable in (("standard", False), ("depthwise_separable", True)):
            got = measure_conv(n, c_in, c_out, h, w, separable=separable)
            checks.append({"row": row, **symbols, "parameters": got["parameters"], "macs": got["macs"],
                           "parameters_formula": evaluate_formula(table[f"table1.{row}.parameters"]["formula"], symbols),
                           "macs_formula": evaluate_formula(table[f"table1.{row}.computation"]["formula"], symbols)})
    exact = all(c["parameters"] == c["parameters_formula"] and c["macs"] == c["macs_formula"] for c in checks)
    # the reduction Table 1 implies, per layer: 1/N_out + 1/n^2 (MobileNets, eq. 5)
    for c in checks:
        c["reduction_closed_form"] = 1 / c["N_out"] + 1 / c["n"] ** 2
    shares = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        for name in config.share_models:
            shares[name] = pointwise_share(_reference_model(name), (3, 224, 224))
    metrics = {"checks": checks, "formulas_exact": exact, "pointwise_share": shares}
    if "mobilenet_v1" in shares:
        vgg = sum(p.numel() for p in _reference_model("torchvision:vgg16").parameters())
        mob = shares["mobilenet_v1"]["parameters"]
        metrics["vgg16_vs_mobilenet"] = {"vgg16_parameters": vgg, "mobilenet_parameters": mob, "ratio": vgg / mob}
    return metrics, {}, None


# ----------------------------------------------------------------------------- complexity + latency


@dataclass(frozen=True)
class ComplexityLatencyConfig:
    """What ``lefv.complexity_latency`` measures (see the module docstring); ``repeats`` timed calls
    after ``warmup`` per runtime and thread count; ``flop_sizes``: input sizes ``(H, W)`` of the FLOP counts."""

    detectors: tuple[str, ...] = DETECTORS
    latency_detectors: tuple[str, ...] = DETECTORS
    recognizers: tuple[str, ...] = RECOGNIZERS + REFERENCE_RECOGNIZERS
    flop_sizes: tuple[tuple[int, int], ...] = (VGA, (240, 320))
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 20
    warmup: int = 3
    pipeline_repeats: int = 20
    matmul_size: int = 4096
    matmul_repeats: int = 3
    baselines: bool = True  # MTCNN and YuNet on the VGA image
    system_faces: tuple[int, ...] = (1, 4)  # Table 5's whole system with this many faces of the image


def configure_complexity(profile: str) -> ComplexityLatencyConfig:
    check_profile(profile)
    if profile == "smoke":
        return ComplexityLatencyConfig(latency_detectors=("lefv_detector",), recognizers=("lefv_recognizer",),
                                       threads=(1,), repeats=2, warmup=1, pipeline_repeats=2, matmul_size=1024,
                                       matmul_repeats=2, system_faces=(1,))
    if profile == "small":
        return ComplexityLatencyConfig()
    return ComplexityLatencyConfig(repeats=100, warmup=10, pipeline_repeats=50)


class RawDetector:
    """Factory of the export wrapper: the detector's head outputs as one tensor ``[B, A, 16]``
    (2 logits, 4 box and 10 landmark offsets per anchor), what a deployed runtime returns."""

    @staticmethod
    def wrap(model):
        import torch
        from torch import nn

        class _Raw(nn.Module):
            def __init__(self, det):
                super().__init__()
                self.det = det
                self.input_size = (3, *VGA)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = self.det(x)
                return torch.cat([out["logits"], out["boxes"], out["landmarks"]], dim=-1)

        return _Raw(model).eval()


def vga_image(data_root) -> tuple[np.ndarray, str]:
    """The first WIDER FACE validation image of the mirror, resized to 640×480 (``uint8[480, 640, 3]`` RGB)."""
    import cv2

    from facelab.data.imageio import read_rgb
    from facelab.data.widerface import images_dir, read_gt

    gt = read_gt(data_root)
    if not gt:
        raise MissingDataError("no WIDER FACE validation image: the data root has no widerface/ folder "
                               "(see ../shared/data/README.md, or set FACELAB_DATA)")
    rel = gt[0].path
    image = read_rgb(images_dir(data_root) / rel)
    return cv2.resize(image, (VGA[1], VGA[0]), interpolation=cv2.INTER_AREA), rel


def _time(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _summary(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    return {"median_ms": float(np.median(ms)), "p10_ms": float(np.percentile(ms, 10)),
            "p90_ms": float(np.percentile(ms, 90)), "repeats": len(ms), "fps": float(1e3 / np.median(ms))}


_YUNET_SCRIPT = """
import json, sys, time
import numpy as np, yuface
img = np.load(sys.argv[1])
repeats, warmup = int(sys.argv[2]), int(sys.argv[3])
bgr = np.ascontiguousarray(img[:, :, ::-1])
for _ in range(warmup):
    yuface.detect(bgr, conf=0.5)
times = []
for _ in range(repeats):
    t = time.perf_counter(); c, b, l = yuface.detect(bgr, conf=0.5); times.append(time.perf_counter() - t)
print(json.dumps({"times_s": times, "faces": int(len(c))}))
"""


def yunet_times(image: np.ndarray, *, threads: int, repeats: int, warmup: int, workdir: Path) -> dict:
    """YuNet (yuface, libfacedetection compiled with its weights) on ``image``, in a child process:
    its OpenMP pool reads ``OMP_NUM_THREADS`` once, at load."""
    try:
        import yuface  # noqa: F401
    except ImportError as err:
        raise MissingDataError("YuNet needs yuface: pip install yuface==2023.5.1 (the Makefile does)") from err
    path = workdir / "vga.npy"
    np.save(path, image)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _YUNET_SCRIPT, str(path), str(repeats), str(warmup)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the YuNet timing process failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_sizes() -> dict:
    """Bytes of the weight files MTCNN (facenet-pytorch: pnet/rnet/onet) and YuNet (yuface: the library,
    which holds its weights compiled in, so an upper bound) ship."""
    from importlib import resources

    out = {}
    try:
        data = resources.files("facenet_pytorch") / "data"
        files = sorted(p for p in data.iterdir() if p.name in ("pnet.pt", "rnet.pt", "onet.pt"))
        out["mtcnn"] = {"bytes": sum(p.stat().st_size for p in files), "files": [p.name for p in files],
                        "what": "facenet-pytorch's P-, R- and O-Net weight files"}
    except ModuleNotFoundError:
        out["mtcnn"] = None
    try:
        lib = resources.files("yuface") / "libfacedetection.so"
        out["yunet"] = {"bytes": lib.stat().st_size, "files": [lib.name],
                        "what": "libfacedetection's shared library, code and compiled-in weights (an upper bound)"}
    except ModuleNotFoundError:
        out["yunet"] = None
    return out


def run_complexity(config: ComplexityLatencyConfig, ctx: RunContext):
    import tempfile

    import torch

    from facelab.bench import complexity, latency
    from facelab.bench.cli import load_model
    from facelab.bench.roofline import layer_traffic, memory_bandwidth, roofline_floor_ms
    from facelab.registry import create_model
    from facelab.train.speed import torch_threads

    metrics: dict = {"detectors": {}, "recognizers": {}, "baselines": {}}
    arrays: dict = {"times_ms": {}}
    for name in config.detectors:
        model = create_model(name).eval()
        entry = {"parameters": complexity.count_parameters(model), "fp32_bytes": complexity.fp32_state_dict_bytes(model),
                 "flops": {f"{h}x{w}": complexity.count_flops(model, (3, h, w)) for h, w in config.flop_sizes}}
        entry["fp32_mib"] = entry["fp32_bytes"] / 2**20
        metrics["detectors"][name] = entry
    bandwidth = {t: memory_bandwidth(threads=t) for t in config.threads}
    metrics["memory_bandwidth"] = {f"t{t}": {k: v for k, v in b.items() if k != "times_s"} for t, b in bandwidth.items()}

    def timed(name, model, shape, kind):
        rows = layer_traffic(model, shape)
        out = {"bytes_moved": int(sum(r["bytes"] for r in rows)), "latency": {}}
        for t in config.threads:
            cfg = latency.LatencyConfig(threads=t, batches=(1,), repeats=config.repeats, warmup=config.warmup,
                                        runtimes=latency.RUNTIMES, matmul_size=config.matmul_size,
                                        matmul_repeats=config.matmul_repeats, seed=ctx.seed)
            m, a = latency.benchmark(model, shape, name=name, config=cfg, progress=ctx.progress)
            gflops = (m.get("matmul_floor") or {}).get("gflops")
            # eager PyTorch runs every module (unfused); ONNX Runtime folds BN and activations into the convs
            roof = ({kind_: roofline_floor_ms(rows, gflops=gflops, gb_per_s=bandwidth[t]["gb_per_s"], fused=fused)
                     for kind_, fused in (("unfused", False), ("fused", True))} if gflops else None)
            runs = {f"{r['runtime']}": {k: r.get(k) for k in ("median_ms", "p10_ms", "p90_ms", "floor_ms", "floor_ratio",
                                                              "images_per_s", "repeats", "runtime_version")}
                    for r in m["runs"]}
            for runtime, r in runs.items():
                if roof:
                    r["roofline_ms"] = roof["unfused" if runtime == "torch" else "fused"]["floor_ms"]
                    r["roofline_ratio"] = r["median_ms"] / r["roofline_ms"]
            out["latency"][f"t{t}"] = {"runs": runs, "matmul_gflops": gflops, "roofline": roof, "cpu": m.get("cpu")}
            arrays["times_ms"][f"{kind}.{name}.t{t}"] = a["times_ms"]
        return out

    for name in config.latency_detectors:
        torch.manual_seed(ctx.seed)
        raw = RawDetector.wrap(create_model(name))
        metrics["detectors"][name].update(timed(name, raw, (3, *VGA), "detector"))
    for name in config.recognizers:
        model, shape = load_model(name, seed=ctx.seed)
        entry = {"parameters": complexity.count_parameters(model), "input_shape": list(shape),
                 "flops": complexity.count_flops(model, shape)}
        entry.update(timed(name, model, shape, "recognizer"))
        metrics["recognizers"][name] = entry

    # the same real VGA image through MTCNN and YuNet (their whole pipelines: pyramid or network, decoding,
    # NMS); ours is timed as a network above: its decoding + NMS is timed once it is trained (an untrained
    # detector passes thousands of anchors to NMS, which would time the wrong thing)
    image, rel = vga_image(ctx.data_root)
    metrics["vga_image"] = rel
    metrics["baseline_sizes"] = baseline_sizes()
    pipelines: dict = {"mtcnn": {}, "yunet": {}}
    mtcnn = None
    if config.baselines:
        from facelab.data.detect import detect_faces, load_mtcnn

        mtcnn = load_mtcnn(min_face_size=20)
    with tempfile.TemporaryDirectory() as tmp:
        for t in config.threads:
            with torch_threads(t):
                if mtcnn is not None:
                    faces = detect_faces(mtcnn, image)
                    times = _time(lambda: detect_faces(mtcnn, image), config.pipeline_repeats, config.warmup)
                    pipelines["mtcnn"][f"t{t}"] = _summary(times) | {"faces": int(len(faces.boxes))}
            if config.baselines:
                y = yunet_times(image, threads=t, repeats=config.pipeline_repeats, warmup=config.warmup,
                                workdir=Path(tmp))
                pipelines["yunet"][f"t{t}"] = _summary(y["times_s"]) | {"faces": y["faces"]}
    metrics["pipelines"] = pipelines
    boxes = vga_boxes(ctx.data_root)
    metrics["system"] = {}
    for k in config.system_faces:
        lms = box_landmarks(boxes[:k])
        metrics["system"][f"k{len(lms)}"] = {f"t{t}": system_times(image, lms, threads=t,
                                                                   repeats=config.pipeline_repeats,
                                                                   warmup=config.warmup, seed=ctx.seed)
                                             for t in config.threads}
    return metrics, arrays, None


def vga_boxes(data_root) -> np.ndarray:
    """The ground-truth face boxes of :func:`vga_image`'s image in its 640x480 pixels, largest first, ``float32[N, 4]`` xyxy."""
    from facelab.data.imageio import read_rgb
    from facelab.data.widerface import images_dir, read_gt

    first = read_gt(data_root)[0]
    h, w = read_rgb(images_dir(data_root) / first.path).shape[:2]
    b = first.boxes * np.array([VGA[1] / w, VGA[0] / h, VGA[1] / w, VGA[0] / h], np.float32)
    return b[np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")]


def box_landmarks(boxes: np.ndarray) -> np.ndarray:
    """``float32[K, 5, 2]``: the ArcFace template's five points placed inside each xyxy box (WIDER FACE has
    boxes, not landmarks; alignment costs the same whatever the points are)."""
    from facelab.data.align import template

    t = template(112) / 112.0
    wh = boxes[:, 2:] - boxes[:, :2]
    return (boxes[:, None, :2] + t[None] * wh[:, None]).astype(np.float32)


def system_times(image: np.ndarray, landmarks: np.ndarray, *, threads: int, repeats: int, warmup: int,
                 seed: int = 0) -> dict:
    """Table 5's whole system on one real image: our detector's network on the ``uint8[H, W, 3]`` RGB image,
    then per face (``float[K, 5, 2]`` landmarks: :func:`box_landmarks` of the image's ground-truth boxes) alignment to 112x112
    (:func:`facelab.data.align.align_face`), the normalizer (Section 3.2) and the recognizer with MSFF, the K
    faces batched. Eager PyTorch, batch 1 image; medians over ``repeats`` calls per stage and for the whole
    chain. Random weights: a network's time does not depend on its values; our detector's decoding and NMS
    are not included (an untrained detector would hand NMS thousands of boxes)."""
    import torch

    from facelab.data.align import align_face
    from facelab.registry import create_model
    from facelab.train.inputs import MEAN, STD, to_model_input
    from facelab.train.speed import torch_threads

    torch.manual_seed(seed)
    det = RawDetector.wrap(create_model("lefv_detector")).eval()
    norm = create_model("lefv_normalizer").eval()
    rec = create_model("lefv_recognizer").eval()
    frame = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
    frame = (frame - MEAN) / STD  # the book's input normalisation at the image's own size
    state: dict = {}

    def detect():
        det(frame)

    def align():
        crops = np.stack([align_face(image, lm)[0] for lm in landmarks])
        state["crops"] = to_model_input(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0, 112)

    def normalize():
        state["normalized"] = norm(state["crops"])

    def recognize():
        rec.forward_features(state["normalized"])

    stages = {"detect": detect, "align": align, "normalize": normalize, "recognize": recognize}
    out: dict = {"faces": int(len(landmarks)), "stages": {}}
    with torch_threads(threads), torch.inference_mode():
        if not len(landmarks):
            return out | {"note": "no face found on the image: nothing to time after detection"}
        for name, fn in stages.items():
            out["stages"][name] = _summary(_time(fn, repeats, warmup))
        chain = _summary(_time(lambda: [fn() for fn in stages.values()], repeats, warmup))
    out["total"] = chain  # its "fps": whole frames per second
    return out


register_experiment(Experiment(
    name=CH.experiment("table1"), chapter=CHAPTER,
    description="Table 1: the convolution cost formulas on real layers; VGG-16 vs MobileNet parameters; 1x1 shares",
    configure=configure_table1, run=run_table1))
register_experiment(Experiment(
    name=CH.experiment("complexity_latency"), chapter=CHAPTER,
    description="Tables 2, 3 (size), 5: detector FLOPs and sizes, latency and roofline; MTCNN and YuNet on a VGA image; "
                "the whole system's chain",
    configure=configure_complexity, run=run_complexity))

__all__ = ["DETECTORS", "RECOGNIZERS", "REFERENCE_RECOGNIZERS", "configure_complexity", "configure_table1"]

# the detection experiments on the real WIDER FACE images live in their own module
from facelab.experiments import lefv_detection  # noqa: E402,F401
# Table 4's verification protocol and its reference rows
from facelab.experiments import lefv_verification  # noqa: E402,F401
# Section 3.2's normalizer, and Table 4 with and without it
from facelab.experiments import lefv_normalization  # noqa: E402,F401
# Table 4's recognizer trained with softmax, as the paper does
from facelab.experiments import lefv_softmax  # noqa: E402,F401
