"""Chapter 1's detection experiments on the real WIDER FACE images (registered by :mod:`facelab.experiments.lefv`).

* ``lefv.detection_baselines``: MTCNN (facenet-pytorch's packaged weights) and YuNet (yuface) on the
  19 WIDER FACE validation images of the data mirror at their original resolution: AP on facelab's
  WIDER-style splits (:data:`facelab.eval.detection.WIDER_SPLIT_RULES`, not the official lists), a
  per-image bootstrap interval of each AP, and recall against face height at each detector's own
  operating threshold. Table 3's MTCNN row and the YuNet row come from here; our detector joins them
  once it is trained on composite scenes (none of these 19 images).

The 19 images hold 519 faces, 268 of them in one image and 123 under 16 px: AP over them depends
heavily on that one image, which the bootstrap interval shows.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import MissingDataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("lefv")
SPLITS = ("all", "easy", "medium", "hard")
#: Face-height bins (pixels, original image) of the recall-by-height curve.
HEIGHT_BINS = (0.0, 8.0, 16.0, 32.0, 64.0, 128.0, 4096.0)


@dataclass(frozen=True)
class BaselinesConfig:
    """MTCNN at ``mtcnn_min_face`` px (pyramid down to it) with its default stage thresholds; YuNet keeping
    detections scoring at least ``yunet_min_score`` (of 100) for the PR curve and ``yunet_threshold`` as its
    operating point; ``max_images``: the first images only (smoke); ``n_boot`` bootstrap draws."""

    mtcnn_min_face: int = 10
    mtcnn_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    yunet_min_score: float = 0.3
    yunet_threshold: float = 0.5
    max_images: int | None = None
    n_boot: int = 1000


def configure_baselines(profile: str) -> BaselinesConfig:
    check_profile(profile)
    if profile == "smoke":
        return BaselinesConfig(n_boot=20, mtcnn_min_face=40)  # every image (each split needs faces), a coarse pyramid
    return BaselinesConfig()


_YUNET_SCRIPT = """
import json, sys
import cv2, numpy as np, warnings, yuface
warnings.simplefilter("ignore")
out = []
for path in json.loads(sys.argv[1]):
    img = cv2.imread(path)  # BGR, as yuface expects
    confs, boxes, marks = yuface.detect(img, conf=float(sys.argv[2]))
    out.append({"scores": (np.asarray(confs, float) / 100).tolist(), "xywh": np.asarray(boxes, float).tolist()})
print(json.dumps(out))
"""


def yunet_detect(paths: list[Path], *, min_score: float, threads: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """YuNet's ``(boxes [N, 4] xyxy, scores [N] in 0-1)`` per image, in a child process (yuface's OpenMP
    pool reads ``OMP_NUM_THREADS`` at load)."""
    try:
        import yuface  # noqa: F401
    except ImportError as err:
        raise MissingDataError("YuNet needs yuface: pip install yuface==2023.5.1 (the Makefile does)") from err
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    res = subprocess.run([sys.executable, "-c", _YUNET_SCRIPT, json.dumps([str(p) for p in paths]), str(min_score)],
                         capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"YuNet failed: {res.stderr.strip().splitlines()[-1:]}")
    out = []
    for r in json.loads(res.stdout.strip().splitlines()[-1]):
        xywh = np.asarray(r["xywh"], np.float64).reshape(-1, 4)
        out.append((np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], np.asarray(r["scores"], np.float64)))
    return out


def mtcnn_detect(images: list[np.ndarray], *, min_face: int, thresholds) -> list[tuple[np.ndarray, np.ndarray]]:
    from facelab.data.detect import detect_faces, load_mtcnn

    mtcnn = load_mtcnn(min_face_size=min_face, thresholds=tuple(thresholds))
    out = []
    for image in images:
        d = detect_faces(mtcnn, image)
        out.append((np.asarray(d.boxes, np.float64).reshape(-1, 4), np.asarray(d.scores, np.float64).reshape(-1)))
    return out


def evaluate(predictions, gt, *, settings, n_boot: int, seed: int, operating_threshold: float) -> dict:
    """Per split: AP (all-point), the bootstrap interval, max recall; recall by face height at the
    operating threshold."""
    from facelab.eval.detection import bootstrap_ap, evaluate_wider_splits, recall_by_height, wider_split_mask

    boxes = [g.boxes for g in gt]
    heights = [g.boxes[:, 3] - g.boxes[:, 1] for g in gt]
    blur = [g.blur for g in gt]
    reports = evaluate_wider_splits(predictions, boxes, heights, blur, settings=settings, splits=SPLITS)
    out = {}
    for split, rep in reports.items():
        ignore = [~wider_split_mask(h, b, split) for h, b in zip(heights, blur)]
        boot = bootstrap_ap(predictions, boxes, settings=settings, gt_ignore=ignore, n_boot=n_boot, seed=seed)
        out[split] = rep.as_dict() | {"bootstrap": boot,
                                      "pr": {"precision": np.round(rep.precision, 4).tolist(),
                                             "recall": np.round(rep.recall, 4).tolist()}}
    out["recall_by_height"] = recall_by_height(predictions, boxes, heights, bins=HEIGHT_BINS,
                                               score_threshold=operating_threshold)
    return out


def run_baselines(config: BaselinesConfig, ctx: RunContext):
    from facelab.data.imageio import read_rgb
    from facelab.data.widerface import images_dir, read_gt
    from facelab.eval.detection import DetectionSettings

    gt = read_gt(ctx.data_root)
    if config.max_images is not None:
        gt = gt[:config.max_images]
    paths = [images_dir(ctx.data_root) / g.path for g in gt]
    images = [read_rgb(p) for p in paths]
    metrics: dict = {"n_images": len(gt), "n_faces": int(sum(len(g) for g in gt)),
                     "faces_per_image": [len(g) for g in gt]}
    arrays: dict = {"images": [g.path for g in gt]}
    runs = {
        "mtcnn": (mtcnn_detect(images, min_face=config.mtcnn_min_face, thresholds=config.mtcnn_thresholds),
                  DetectionSettings(detector="MTCNN (facenet-pytorch)", test_scale=f"original resolution, pyramid "
                                    f"down to {config.mtcnn_min_face} px faces", score_threshold=config.mtcnn_thresholds[2],
                                    nms_iou=0.7), config.mtcnn_thresholds[2]),
        "yunet": (yunet_detect(paths, min_score=config.yunet_min_score),
                  DetectionSettings(detector="YuNet (yuface 2023.5.1)", test_scale="original resolution",
                                    score_threshold=config.yunet_min_score, nms_iou=None), config.yunet_threshold),
    }
    for name, (preds, settings, operating) in runs.items():
        metrics[name] = evaluate(preds, gt, settings=settings, n_boot=config.n_boot, seed=ctx.seed,
                                 operating_threshold=operating)
        arrays[f"{name}_detections"] = [{"boxes": np.round(b, 1).tolist(), "scores": np.round(s, 4).tolist()}
                                        for b, s in preds]
    digest = hashlib.sha256("\n".join(g.path for g in gt).encode()).hexdigest()[:16]
    return metrics, arrays, digest


register_experiment(Experiment(
    name=CH.experiment("detection_baselines"), chapter=CH.folder,
    description="Table 3: MTCNN and YuNet on the 19 real WIDER FACE images: AP per split, bootstrap intervals, "
                "recall by face height",
    configure=configure_baselines, run=run_baselines))

__all__ = ["HEIGHT_BINS", "SPLITS", "configure_baselines", "mtcnn_detect", "yunet_detect"]
