"""Chapter 5's Table II stand-in: the unified pass against a detector + recognizer pipeline, by number of faces;
registered by :mod:`facelab.experiments.uniface`.

``uniface.speed``: on composite 300×300 scenes of real LFW faces holding 1, 4 and 16 faces
(:mod:`facelab.data.scenes`; faces 28-48 px so that 16 fit), per image:

* **unified** (model A, and the Inception-v3 version): one forward pass (backbone, detection heads,
  top-down fusion, deconvolutions), decoding + NMS, then landmark attention once per face: the K
  ground-truth faces (so that both systems run recognition exactly K times; an untrained network's
  detections would not be K);
* **pipeline**: MTCNN (facenet-pytorch, its P/R/O cascade on the image) + per face alignment to
  112×112 (:func:`facelab.data.align.align_face`, the ground-truth landmarks) + SFace (ONNX Runtime,
  the K crops batched).

Eager PyTorch at batch 1 image for the networks (random weights: time does not depend on values,
except NMS, which gets at most 50 boxes per image here), 1 and 2 threads; median of ``repeats``
calls. For the networks of ``onnx_networks`` also ``<name>_ort``: the dense part of the pass (backbone,
detection heads, fusion, deconvolutions: everything that runs once per image) in ONNX Runtime, exported
with :func:`facelab.bench.onnx_export.export_onnx` and checked against eager PyTorch, then decoding, NMS
and the per-face head in PyTorch as before (RoIAlign and NMS are data-dependent and stay eager), so the
pipeline's SFace (ONNX Runtime) and the unified pass are compared on the same runtime where it matters. A least-squares line ``ms = intercept + slope · K`` per system and thread count is the
testable form of the paper's claim ("the recognition network runs N times for an image with N
faces"). A FLOP breakdown (FlopCounterMode) splits the unified network into backbone + extras,
detection heads, fusion + deconvolutions, and the per-face head. The paper's GPU at batch 32 is not
here: its row stays paper-only unless a GPU is present (``device="cuda"`` times the networks there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("uniface")


@dataclass(frozen=True)
class SpeedConfig:
    """Scenes of ``face_counts`` faces (``scenes_per_count`` each) at ``size`` px, timed at each of ``threads``
    with ``repeats`` calls after ``warmup``; ``networks``: the unified networks timed."""

    data_profile: str
    face_counts: tuple[int, ...] = (1, 4, 16)
    scenes_per_count: int = 3
    size: int = 300
    face_size: tuple[float, float] = (28.0, 48.0)
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 10
    warmup: int = 2
    networks: tuple[str, ...] = ("uniface_a", "uniface_a_inception_v3")
    onnx_networks: tuple[str, ...] = ("uniface_a",)
    teacher: str = "sface"


def configure_speed(profile: str) -> SpeedConfig:
    check_profile(profile)
    if profile == "smoke":
        return SpeedConfig(data_profile="smoke", face_counts=(1, 4), scenes_per_count=1, size=160,
                           face_size=(24.0, 32.0), threads=(1,), repeats=1, warmup=0, networks=("uniface_a",),
                           onnx_networks=())
    return SpeedConfig(data_profile=profile)


def scenes_with(n_faces: int, config: SpeedConfig, ctx: RunContext, faces, backgrounds) -> list:
    """Scenes holding exactly ``n_faces`` faces (drawn until that many were placed)."""
    from facelab.data.scenes import compose_scene

    out, i = [], 0
    while len(out) < config.scenes_per_count and i < 200 * config.scenes_per_count:
        sc = compose_scene(faces, backgrounds, np.random.default_rng([ctx.seed, n_faces, i]),
                           size=(config.size, config.size), n_faces=(n_faces, n_faces), face_size=config.face_size)
        i += 1
        if len(sc.boxes) == n_faces:
            out.append(sc)
    if not out:
        raise RuntimeError(f"could not place {n_faces} faces of {config.face_size} px in a {config.size}-px scene")
    return out


def flop_breakdown(model, size: int) -> dict:
    """FLOPs (multiply-adds × 2, FlopCounterMode) of the unified network's parts at ``size`` px, one face."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as c, torch.no_grad():
            fn()
        return int(c.get_total_flops())

    x = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        maps = model.bottom_up(x)
        fr = model.fusion(maps)
    box = torch.tensor([[size * 0.3, size * 0.25, size * 0.7, size * 0.75]])
    marks = torch.tensor([[[0.42, 0.45], [0.58, 0.45], [0.5, 0.55], [0.44, 0.65], [0.56, 0.65]]]) * size
    return {"backbone_and_extras": flops(lambda: model.bottom_up(x)),
            "detection_heads": flops(lambda: [h(f) for h, f in zip(model.heads, maps)]),
            "fusion_and_deconvolutions": flops(lambda: model.fusion(maps)),
            "per_face_head": flops(lambda: model.attention(fr, box, marks, torch.tensor([0]), size))}


class DensePass:
    """``[B, 3, H, W] -> (logits, boxes, landmarks, recognition_map)``: the part of a unified network that runs
    once per image, as a module with tensor outputs (for ONNX export); :meth:`as_output` turns an ONNX Runtime
    result back into the network's output dict for ``decode`` and ``embed``."""

    NAMES = ("logits", "boxes", "landmarks", "recognition_map")

    @staticmethod
    def build(net):
        from torch import nn

        class _Dense(nn.Module):
            def __init__(self):
                super().__init__()
                self.net, self.input_size = net, net.input_size

            def forward(self, x):
                o = self.net(x)
                return tuple(o[k] for k in DensePass.NAMES)

        return _Dense().eval()

    @staticmethod
    def as_output(arrays) -> dict:
        import torch

        return {k: torch.from_numpy(a) for k, a in zip(DensePass.NAMES, arrays)}


def fit_line(counts, ms) -> dict:
    """Least-squares ``ms = intercept + slope · faces``."""
    slope, intercept = np.polyfit(np.asarray(counts, float), np.asarray(ms, float), 1)
    return {"intercept_ms": float(intercept), "slope_ms_per_face": float(slope)}


def run_speed(config: SpeedConfig, ctx: RunContext):
    import torch

    from facelab.bench.onnx_export import export_onnx, onnx_session
    from facelab.data.align import align_face
    from facelab.data.datasets import face_sources
    from facelab.data.detect import load_mtcnn
    from facelab.data.manifest import load_prepared
    from facelab.experiments.lefv import _summary, _time
    from facelab.experiments.uniface import read_originals
    from facelab.models.uniface import to_input
    from facelab.registry import create_model
    from facelab.results import cpu_model
    from facelab.teachers import load_teacher
    from facelab.train.speed import torch_threads

    p = load_prepared("lfw", config.data_profile)
    rows = np.sort(np.random.default_rng(ctx.seed).permutation(len(p.manifest))[:200])
    faces, backgrounds = face_sources(p, rows), read_originals(p, rows[:40], ctx.data_root)
    scenes = {k: scenes_with(k, config, ctx, faces, backgrounds) for k in config.face_counts}
    torch.manual_seed(ctx.seed)
    nets = {n: create_model(n).eval() for n in config.networks}
    mtcnn = load_mtcnn(min_face_size=20)
    out: dict = {"systems": {}, "flops": {}, "parameters": {}}
    for name, net in nets.items():
        out["flops"][name] = flop_breakdown(net, config.size)
        out["parameters"][name] = int(sum(q.numel() for q in net.parameters()))
    exported = {}
    for name in config.onnx_networks:
        net = nets[name] if name in nets else create_model(name).eval()
        dense = DensePass.build(net)
        path = export_onnx(dense, (3, config.size, config.size), name=f"{name}_dense_{config.size}")
        check = onnx_session(path, threads=1)
        x0 = torch.randn(1, 3, config.size, config.size, generator=torch.Generator().manual_seed(ctx.seed))
        with torch.no_grad():
            ref = dense(x0)
        got = check.run(None, {check.get_inputs()[0].name: x0.numpy()})
        err = max(float(np.abs(g - r.numpy()).max() / max(float(r.abs().max()), 1e-12)) for g, r in zip(got, ref))
        exported[name] = (net, path)
        out.setdefault("onnx", {})[name] = {"max_relative_error": err, "file_bytes": path.stat().st_size}
    for threads in config.threads:
        teacher = load_teacher(config.teacher, threads=threads)
        for name, (net, path) in exported.items():
            session = onnx_session(path, threads=threads)
            input_name = session.get_inputs()[0].name
            per_count = {}
            with torch_threads(threads), torch.inference_mode():
                for k, scs in scenes.items():
                    times = []
                    for sc in scs:
                        x = to_input(sc.image).numpy()
                        boxes = torch.as_tensor(sc.boxes)
                        marks = torch.as_tensor(sc.landmarks)
                        idx = torch.zeros(k, dtype=torch.long)

                        def unified_ort():
                            o = DensePass.as_output(session.run(None, {input_name: x}))
                            net.decode(o, config.size, config.size, score_threshold=0.5, iou_threshold=0.4,
                                       max_detections=50)
                            net.embed(o, boxes, marks, idx, config.size)

                        times += _time(unified_ort, config.repeats, config.warmup)
                    per_count[str(k)] = _summary(times)
            out["systems"].setdefault(f"{name}_ort", {})[str(threads)] = per_count
        with torch_threads(threads), torch.inference_mode():
            for name, net in nets.items():
                per_count = {}
                for k, scs in scenes.items():
                    times = []
                    for sc in scs:
                        x = to_input(sc.image)
                        boxes = torch.as_tensor(sc.boxes)
                        marks = torch.as_tensor(sc.landmarks)
                        idx = torch.zeros(k, dtype=torch.long)

                        def unified():
                            o = net(x)
                            net.decode(o, config.size, config.size, score_threshold=0.5, iou_threshold=0.4,
                                       max_detections=50)
                            net.embed(o, boxes, marks, idx, config.size)

                        times += _time(unified, config.repeats, config.warmup)
                    per_count[str(k)] = _summary(times)
                out["systems"].setdefault(name, {})[str(threads)] = per_count
            per_count = {}
            for k, scs in scenes.items():
                times = []
                for sc in scs:
                    def pipeline():
                        mtcnn.detect(sc.image, landmarks=True)
                        crops = np.stack([align_face(sc.image, lm)[0] for lm in sc.landmarks])
                        teacher.embed(crops)

                    times += _time(pipeline, config.repeats, config.warmup)
                per_count[str(k)] = _summary(times)
            out["systems"].setdefault("mtcnn_sface", {})[str(threads)] = per_count
    out["fits"] = {s: {t: fit_line([int(k) for k in v], [v[k]["median_ms"] for k in v]) for t, v in per.items()}
                   for s, per in out["systems"].items()}
    out["face_counts"] = list(config.face_counts)
    out["cpu"] = cpu_model()
    digest = hashlib.sha256("\n".join(p.manifest["path"].iloc[rows]).encode()).hexdigest()[:16]
    return out, {}, digest


register_experiment(Experiment(
    name=CH.experiment("speed"), chapter=CH.folder,
    description="Table II: unified pass vs MTCNN + SFace on scenes of 1, 4, 16 faces; per-face slopes; FLOP breakdown",
    configure=configure_speed, run=run_speed))

__all__ = ["DensePass", "SpeedConfig", "fit_line", "flop_breakdown"]
