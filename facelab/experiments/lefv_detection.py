"""Chapter 1's detection experiments on the real WIDER FACE images (registered by :mod:`facelab.experiments.lefv`).

* ``lefv.detection_baselines``: MTCNN (facenet-pytorch's packaged weights) and YuNet (yuface) on the
  19 WIDER FACE validation images of the data mirror at their original resolution: AP on facelab's
  WIDER-style splits (:data:`facelab.eval.detection.WIDER_SPLIT_RULES`, not the official lists), a
  per-image bootstrap interval of each AP, and recall against face height at each detector's own
  operating threshold. Table 3's MTCNN row and the YuNet row come from here; our detector's row comes
  from ``lefv.detector.lefv_detector`` (trained on composite scenes, none of these 19 images).
* ``lefv.detector.<network>``: one of Table 2's networks (:data:`facelab.models.lefv_detector.VARIANTS`)
  trained from scratch (Xavier initialisation, as Section 4) on composite scenes of real LFW faces on
  shuffled-tile LFW backgrounds (:mod:`facelab.data.scenes`; WIDER FACE's training set is not
  available), then tested twice: on the 19 real WIDER FACE images at their original resolution, and on
  held-out composite scenes built from LFW identities the training scenes never show (a clearly
  synthetic second test, large enough to resolve AP differences of a few points).

The 19 images hold 519 faces, 309 of them in one image and 123 under 16 px: AP over them depends
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
#: Points kept of each stored precision-recall curve.
PR_POINTS = 200


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
        # the PR curve at (at most) PR_POINTS evenly spaced thresholds: enough for a figure, small enough
        # to commit (held-out scenes give ~10^5 distinct scores)
        keep = np.unique(np.linspace(0, len(rep.recall) - 1, min(PR_POINTS, len(rep.recall))).astype(int))
        out[split] = rep.as_dict() | {"bootstrap": boot,
                                      "pr": {"precision": np.round(rep.precision[keep], 4).tolist(),
                                             "recall": np.round(rep.recall[keep], 4).tolist()}}
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


# ----------------------------------------------------------------------------- our detectors


@dataclass(frozen=True)
class DetectorConfig:
    """Training scenes: ``n_scenes`` of ``scene_size`` (H, W) with ``faces_per_scene`` faces of
    ``face_size`` px (longer box side); ``heldout_share`` of the LFW identities (by a hash of the name)
    give the held-out scenes' faces and backgrounds. Training: :class:`facelab.train.detection.DetectorTrainConfig`
    fields. Test: detections above ``test_score`` (the PR curve's floor), NMS at ``nms_iou``; WIDER images
    at original resolution (``max_wider``: the first images only), ``n_heldout`` held-out scenes at
    ``heldout_size``; ``n_boot`` bootstrap draws."""

    network: str
    data_profile: str
    n_scenes: int
    scene_size: tuple[int, int]
    epochs: int
    n_heldout: int
    heldout_size: tuple[int, int] = (480, 640)
    faces_per_scene: tuple[int, int] = (1, 8)
    face_size: tuple[float, float] = (10.0, 200.0)
    heldout_share: float = 0.2
    n_backgrounds: int = 300
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 5e-4
    neg_pos: int = 3
    iou_threshold: float = 0.35
    test_score: float = 0.05
    nms_iou: float = 0.4
    max_wider: int | None = None
    n_boot: int = 1000
    n_boot_heldout: int = 200


def configure_detector(network: str):
    def configure(profile: str) -> DetectorConfig:
        check_profile(profile)
        if profile == "smoke":
            return DetectorConfig(network=network, data_profile="smoke", n_scenes=16, scene_size=(128, 128), epochs=1,
                                  n_heldout=8, heldout_size=(128, 160), n_backgrounds=8, n_boot=10,
                                  n_boot_heldout=10, batch_size=8)
        if profile == "small":
            # ~10 min for the paper's detector on 2 cores: 2,400 scenes x 8 epochs at 320x320
            return DetectorConfig(network=network, data_profile="small", n_scenes=2400, scene_size=(320, 320), epochs=8,
                                  n_heldout=400)
        return DetectorConfig(network=network, data_profile="full", n_scenes=20000, scene_size=(640, 640), epochs=40,
                              n_heldout=2000)

    return configure


def _heldout(identity: str, share: float) -> bool:
    return int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16) / 16**8 < share


def scene_sources(prepared, *, share: float, n_backgrounds: int, seed: int, data_root):
    """``{"train", "heldout"}`` -> (face sources, background photos): the prepared set's loose crops and
    original photos split by identity (a hash of the name, so the split does not depend on the profile)."""
    from facelab.data.datasets import face_sources
    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import resolve_image

    df = prepared.manifest
    held = np.array([_heldout(str(i), share) for i in df["identity"]])
    rng = np.random.default_rng(seed)
    out = {}
    for name, mask in (("train", ~held), ("heldout", held)):
        rows = np.flatnonzero(mask)
        if not len(rows):
            raise MissingDataError(f"no prepared {prepared.dataset} face for the {name} scenes at profile "
                                   f"{prepared.profile!r}: run `python -m facelab data prepare --profile {prepared.profile}`")
        bg_rows = rng.permutation(rows)[:n_backgrounds]
        backgrounds = [read_rgb(resolve_image(prepared.dataset, df["path"].iloc[r], data_root)) for r in bg_rows]
        out[name] = (face_sources(prepared, rows), backgrounds, len(set(df["identity"].iloc[rows])))
    return out


def compose_scenes(faces, backgrounds, n: int, *, size, faces_per_scene, face_size, seed: int, progress: bool):
    """``(uint8[n, H, W, 3], targets)`` of ``n`` composite scenes, scene ``i`` from ``default_rng([seed, i])``."""
    from tqdm.auto import tqdm

    from facelab.data.scenes import compose_scene

    images = np.empty((n, *size, 3), np.uint8)
    targets = []
    for i in tqdm(range(n), desc="scenes", disable=not progress, leave=False):
        sc = compose_scene(faces, backgrounds, np.random.default_rng([seed, i]), size=tuple(size),
                           n_faces=tuple(faces_per_scene), face_size=tuple(face_size))
        images[i] = sc.image
        targets.append({"boxes": sc.boxes, "landmarks": sc.landmarks})
    return images, targets


def detect_images(model, images, *, score: float, nms_iou: float, batch: int = 1):
    """``[(boxes [N, 4] xyxy, scores [N])]`` of ``uint8[H, W, 3]`` images (any sizes), one at a time."""
    import torch

    from facelab.train.inputs import MEAN, STD

    out = []
    model.eval()
    for image in images:
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()
        x = (x / 255.0 - MEAN) / STD
        d = model.detect(x, score_threshold=score, iou_threshold=nms_iou)[0]
        out.append((d.boxes.numpy().astype(np.float64), d.scores.numpy().astype(np.float64)))
    return out


def run_detector(config: DetectorConfig, ctx: RunContext):
    import time

    import torch

    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import load_prepared
    from facelab.data.widerface import WiderImage, images_dir, read_gt
    from facelab.eval.detection import DetectionSettings
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.train.detection import DetectorTrainConfig, fit_detector

    t0 = time.time()
    prepared = load_prepared("lfw", config.data_profile)
    sources = scene_sources(prepared, share=config.heldout_share, n_backgrounds=config.n_backgrounds, seed=ctx.seed,
                            data_root=ctx.data_root)
    faces, backgrounds, n_ids = sources["train"]
    images, targets = compose_scenes(faces, backgrounds, config.n_scenes, size=config.scene_size,
                                     faces_per_scene=config.faces_per_scene, face_size=config.face_size,
                                     seed=ctx.seed, progress=ctx.progress)
    t_scenes = time.time() - t0
    torch.manual_seed(ctx.seed)
    model = create_model(config.network)
    train = DetectorTrainConfig(epochs=config.epochs, batch_size=config.batch_size, optimizer=config.optimizer,
                                lr=config.lr, weight_decay=config.weight_decay, neg_pos=config.neg_pos,
                                iou_threshold=config.iou_threshold)
    ckpt = cache_root() / "checkpoints" / CH.folder / f"{config.network}-{config_hash([str(config), ctx.seed])}.pt"
    t1 = time.time()
    history = fit_detector(model, images, targets, train, seed=ctx.seed, device=ctx.device,
                           checkpoint=ckpt if config.data_profile != "smoke" else None, progress=ctx.progress)
    t_train = time.time() - t1
    model.cpu().eval()
    del images
    settings = DetectionSettings(detector=config.network, test_scale="original resolution",
                                 score_threshold=config.test_score, nms_iou=config.nms_iou)
    # the real WIDER FACE images
    gt = read_gt(ctx.data_root)[:config.max_wider] if config.max_wider else read_gt(ctx.data_root)
    with torch.no_grad():
        wider_preds = detect_images(model, [read_rgb(images_dir(ctx.data_root) / g.path) for g in gt],
                                    score=config.test_score, nms_iou=config.nms_iou)
    metrics: dict = {"network": config.network, "wider": evaluate(wider_preds, gt, settings=settings,
                                                                    n_boot=config.n_boot, seed=ctx.seed,
                                                                    operating_threshold=0.5)}
    # the held-out composite scenes (other identities, other backgrounds, another seed)
    h_faces, h_backgrounds, h_ids = sources["heldout"]
    h_images, h_targets = compose_scenes(h_faces, h_backgrounds, config.n_heldout, size=config.heldout_size,
                                         faces_per_scene=config.faces_per_scene, face_size=config.face_size,
                                         seed=ctx.seed + 10_000, progress=ctx.progress)
    with torch.no_grad():
        h_preds = detect_images(model, list(h_images), score=config.test_score, nms_iou=config.nms_iou)
    h_gt = [WiderImage(f"scene{i}", t["boxes"], np.zeros(len(t["boxes"]), np.int8), np.zeros(len(t["boxes"]), bool))
            for i, t in enumerate(h_targets)]
    metrics["heldout"] = evaluate(h_preds, h_gt, settings=settings, n_boot=config.n_boot_heldout, seed=ctx.seed,
                                  operating_threshold=0.5)
    metrics.update({"history": history, "train_seconds": round(t_train, 1), "scene_seconds": round(t_scenes, 1),
                    "seconds": round(time.time() - t0, 1), "n_train_scenes": config.n_scenes,
                    "n_train_faces": int(sum(len(t["boxes"]) for t in targets)),
                    "train_identities": n_ids, "heldout_identities": h_ids,
                    "n_heldout_faces": int(sum(len(t["boxes"]) for t in h_targets)),
                    "parameters": sum(p.numel() for p in model.parameters())})
    arrays = {"images": [g.path for g in gt],
              "wider_detections": [{"boxes": np.round(b, 1).tolist(), "scores": np.round(s, 4).tolist()}
                                   for b, s in wider_preds]}
    digest = hashlib.sha256(("\n".join(prepared.manifest["path"]) + "\n".join(g.path for g in gt)).encode()).hexdigest()[:16]
    return metrics, arrays, digest


for _network in ("lefv_detector_cf", "lefv_detector_cf_sdc", "lefv_detector", "lefv_detector_baseline",
                 "lefv_detector_relu"):
    register_experiment(Experiment(
        name=CH.experiment(f"detector.{_network}"), chapter=CH.folder,
        description=f"Tables 2-3: {_network} trained on composite scenes; AP on the WIDER images and held-out scenes",
        configure=configure_detector(_network), run=run_detector))

register_experiment(Experiment(
    name=CH.experiment("detection_baselines"), chapter=CH.folder,
    description="Table 3: MTCNN and YuNet on the 19 real WIDER FACE images: AP per split, bootstrap intervals, "
                "recall by face height",
    configure=configure_baselines, run=run_baselines))

__all__ = ["HEIGHT_BINS", "SPLITS", "configure_baselines", "mtcnn_detect", "yunet_detect"]
