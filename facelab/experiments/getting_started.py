"""Chapter 0 (Getting started): LFW verification with the packaged reference recognizer.

Pipeline per image: read (OpenCV) -> MTCNN detection (facenet-pytorch weights) -> pick the
central face -> dlib 5-point landmarks inside the MTCNN box -> dlib's aligned 150x150 chip
-> 128-d ResNet descriptor. A pair's score is the negated Euclidean distance of its two
descriptors (dlib's convention). When MTCNN finds no face, the image's fixed central box is
used instead (LFW images are centred on the subject) and the image is counted as a fallback;
an unreadable image drops its pairs, counted. Metrics are computed by the chapter from the
stored per-pair scores, so a change to ``facelab.eval`` never makes this result stale.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("getting_started")

#: LFW deep-funneled images are 250x250 with the subject centred; this box covers the face.
LFW_CENTRE_BOX = (70.0, 65.0, 180.0, 190.0)


@dataclass(frozen=True)
class LFWReferenceConfig:
    """``pairs_per_fold``: matched + mismatched pairs taken from each of the 10 folds (None: all 600)."""

    pairs_per_fold: int | None
    min_face_size: int = 20


def configure(profile: str) -> LFWReferenceConfig:
    return LFWReferenceConfig(pairs_per_fold={"smoke": 10, "small": None, "full": None}[profile])


# Per-process models for the worker pool (loaded once per worker by the initializer).
_WORKER: dict = {}


def _init_worker(min_face_size: int) -> None:
    import torch

    from facelab.data.detect import load_mtcnn
    from facelab.models.dlib_resnet import DlibFaceEmbedder

    # One thread per worker: parallelism comes from the processes, and results do not
    # depend on the number of workers.
    torch.set_num_threads(1)
    _WORKER["mtcnn"] = load_mtcnn("cpu", min_face_size=min_face_size)
    _WORKER["dlib"] = DlibFaceEmbedder.from_package()


def _embed_one(path: str) -> tuple[str, np.ndarray | None, str, float]:
    """-> (path, descriptor or None, outcome, detector score)."""
    from facelab.data.detect import detect_faces, select_face
    from facelab.data.imageio import ImageReadError, read_rgb

    try:
        image = read_rgb(path)
    except ImageReadError as err:
        return path, None, err.reason, float("nan")
    dets = detect_faces(_WORKER["mtcnn"], image)
    i = select_face(dets, image.shape)
    if i is None:
        box, outcome, score = np.array(LFW_CENTRE_BOX), "fallback_centre_box", float("nan")
    else:
        box, outcome, score = dets.boxes[i], "detected", float(dets.scores[i])
    return path, _WORKER["dlib"].embed(image, box), outcome, score


def embed_images(paths: list[str], *, min_face_size: int = 20, workers: int = 0,
                 progress: bool = True) -> dict[str, tuple[np.ndarray | None, str, float]]:
    """Descriptors of many images with a process pool; ``workers=0`` uses every core."""
    from tqdm.auto import tqdm

    workers = workers or os.cpu_count() or 1
    out: dict[str, tuple[np.ndarray | None, str, float]] = {}
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(min_face_size,)) as pool:
        it = pool.map(_embed_one, paths, chunksize=8)
        for path, desc, outcome, score in tqdm(it, total=len(paths), desc="detect+embed", disable=not progress):
            out[path] = (desc, outcome, score)
    return out


def run(config: LFWReferenceConfig, ctx: RunContext):
    from facelab.data import lfw

    pairs = lfw.read_pairs("view2", ctx.data_root)
    if config.pairs_per_fold is not None:
        pairs = lfw.subsample_pairs(pairs, config.pairs_per_fold)
    root = lfw.images_dir(ctx.data_root)
    rel = sorted({r for p in pairs for r in p.images()})
    emb = embed_images([str(root / r) for r in rel], min_face_size=config.min_face_size,
                       workers=ctx.workers, progress=ctx.progress)
    by_rel = {r: emb[str(root / r)] for r in rel}

    scores, labels, folds, image1, image2, dropped = [], [], [], [], [], []
    for p in pairs:
        r1, r2 = p.images()
        a, b = by_rel[r1][0], by_rel[r2][0]
        if a is None or b is None:
            dropped.append(f"{r1} {r2}")
            continue
        scores.append(-float(np.linalg.norm(a - b)))
        labels.append(int(p.same))
        folds.append(p.fold)
        image1.append(r1)
        image2.append(r2)
    outcomes = [v[1] for v in by_rel.values()]
    det_scores = np.array([v[2] for v in by_rel.values() if v[1] == "detected"])
    metrics = {
        "n_pairs_protocol": len(pairs),
        "n_pairs_scored": len(scores),
        "n_pairs_dropped": len(dropped),
        "n_images": len(rel),
        "image_outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))},
        "mean_detector_score": float(det_scores.mean()) if det_scores.size else None,
        "score": "negated Euclidean distance of dlib 128-d descriptors",
    }
    arrays = {"score": scores, "label": labels, "fold": folds, "image1": image1, "image2": image2,
              "dropped_pairs": dropped,
              "not_detected": {r: v[1] for r, v in by_rel.items() if v[1] != "detected"}}
    manifest = hashlib.sha256("\n".join(rel).encode()).hexdigest()[:16]
    return metrics, arrays, manifest


register_experiment(Experiment(
    name=CH.experiment("lfw_dlib"),
    chapter=CH.folder,
    description="LFW View 2 verification with MTCNN + dlib's ResNet (reference recognizer)",
    configure=configure,
    run=run,
))
