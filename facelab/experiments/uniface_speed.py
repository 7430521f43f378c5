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
calls. A least-squares line ``ms = intercept + slope · K`` per system and thread count is the
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
    teacher: str = "sface"


def configure_speed(profile: str) -> SpeedConfig:
    check_profile(profile)
    if profile == "smoke":
        return SpeedConfig(data_profile="smoke", face_counts=(1, 4), scenes_per_count=1, size=160,
                           face_size=(24.0, 32.0), threads=(1,), repeats=1, warmup=0, networks=("uniface_a",))
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


def fit_line(counts, ms) -> dict:
    """Least-squares ``ms = intercept + slope · faces``."""
    slope, intercept = np.polyfit(np.asarray(counts, float), np.asarray(ms, float), 1)
    return {"intercept_ms": float(intercept), "slope_ms_per_face": float(slope)}


def run_speed(config: SpeedConfig, ctx: RunContext):
    import torch

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
    for threads in config.threads:
        teacher = load_teacher(config.teacher, threads=threads)
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

__all__ = ["SpeedConfig", "fit_line", "flop_breakdown"]
