"""Training a single-stage face detector on images with boxes and landmarks (:mod:`facelab.losses.detection`).

:func:`fit_detector` runs epochs of shuffled batches over ``uint8[N, H, W, 3]`` images of one size
(e.g. composite scenes, :class:`facelab.data.datasets.CompositeScenes`), with random horizontal flips
(boxes and landmarks mirrored, left and right landmarks swapped), the multibox loss, an optimizer
(AdamW or SGD with momentum) and a cosine learning-rate schedule; it writes a checkpoint after every
epoch and resumes from it (same configuration, seed and data size). torch's global RNG is seeded from
``(seed, epoch)`` inside and restored on return; the caller's thread count is kept.

Images are fed as float in [-1, 1] (:data:`facelab.train.inputs.MEAN`/``STD``), NCHW.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facelab.fileio import atomic_save_torch

#: Landmark order under a horizontal flip: the left eye becomes the right one, and so on.
FLIP_ORDER = (1, 0, 2, 4, 3)


@dataclass(frozen=True)
class DetectorTrainConfig:
    """``epochs`` of batches of ``batch_size``; ``optimizer`` "adamw" or "sgd" (momentum 0.9) at ``lr``
    decayed by a cosine to ``min_lr``; multibox loss with ``neg_pos`` hard negatives per positive,
    matching at ``iou_threshold``, the landmark term weighted ``landmark_weight``; flips with ``flip_p``."""

    epochs: int
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 5e-4
    neg_pos: int = 3
    iou_threshold: float = 0.35
    landmark_weight: float = 1.0
    flip_p: float = 0.5

    def check(self) -> DetectorTrainConfig:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd' (got {self.optimizer!r})")
        return self


def flip_targets(target: dict, width: int) -> dict:
    """Boxes ``[G, 4]`` xyxy and landmarks ``[G, 5, 2]`` of an image mirrored left-right (pixel ``i`` at
    ``i``, as OpenCV's warps: ``x -> width - 1 - x``)."""
    b = np.asarray(target["boxes"], np.float32).reshape(-1, 4)
    lm = np.asarray(target["landmarks"], np.float32).reshape(-1, 5, 2)
    boxes = np.stack([width - 1 - b[:, 2], b[:, 1], width - 1 - b[:, 0], b[:, 3]], axis=1)
    marks = lm[:, FLIP_ORDER].copy()
    marks[..., 0] = width - 1 - marks[..., 0]
    return {"boxes": boxes, "landmarks": marks}


def _key(config: DetectorTrainConfig, seed: int, n: int, shape) -> str:
    text = json.dumps({"config": dataclasses.asdict(config), "seed": seed, "n": n, "shape": list(shape)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_detector(model: nn.Module, images: np.ndarray, targets: list[dict], config: DetectorTrainConfig, *,
                 seed: int = 0, device: str = "cpu", checkpoint: Path | None = None, progress: bool = True,
                 on_epoch=None) -> dict:
    """Train ``model`` (a :class:`facelab.models.lefv_detector.LEFVDetector`-like module with ``anchors``)
    on ``images`` / ``targets`` (``{"boxes", "landmarks"}`` per image). Returns the history:
    per epoch the mean loss and its three terms, positives per image, learning rate, seconds, images/s.
    ``on_epoch(epoch, history)`` is called after each epoch's checkpoint is written."""
    from tqdm.auto import tqdm

    from facelab.losses.detection import multibox_loss
    from facelab.train.inputs import MEAN, STD

    config.check()
    n, h, w = images.shape[:3]
    if len(targets) != n:
        raise ValueError(f"{n} images but {len(targets)} targets")
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay) if config.optimizer == "adamw"
           else torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay))
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs

    def lr_at(step: int) -> float:
        return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * step / total))

    anchors = model.anchors(h, w).to(device)
    key = _key(config, seed, n, images.shape[1:])
    history: dict[str, list[float]] = {k: [] for k in ("loss", "cls", "box", "landmarks", "positives_per_image", "lr",
                                                       "seconds", "images_per_s")}
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state.get("key") == key:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            history = state["history"]
            start = state["epoch"] + 1
            print(f"resuming from {checkpoint} after epoch {start}")
    rng_devices = [torch.device(device).index or 0] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=rng_devices):
        for epoch in range(start, config.epochs):
            model.train()
            rng = np.random.default_rng([seed, epoch])
            torch.manual_seed(int(rng.integers(2**31)))
            order = rng.permutation(n)
            flips = rng.random(n) < config.flip_p
            sums = dict.fromkeys(("loss", "cls", "box", "landmarks", "positives"), 0.0)
            t0 = time.perf_counter()
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", disable=not progress,
                       leave=False)
            for s in bar:
                idx = order[s * config.batch_size:(s + 1) * config.batch_size]
                batch = images[idx]
                tg = [targets[i] for i in idx]
                fl = flips[idx]
                if fl.any():
                    batch = batch.copy()
                    batch[fl] = batch[fl][:, :, ::-1]
                    tg = [flip_targets(t, w) if f else t for t, f in zip(tg, fl)]
                x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2))).to(device).float()
                x = (x / 255.0 - MEAN) / STD
                for g in opt.param_groups:
                    g["lr"] = lr_at(epoch * steps_per_epoch + s)
                out = model(x)
                losses = multibox_loss(out["logits"], out["boxes"], out["landmarks"], tg, anchors,
                                       neg_pos=config.neg_pos, iou_threshold=config.iou_threshold,
                                       landmark_weight=config.landmark_weight)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt.step()
                for k in sums:
                    sums[k] += float(losses[k].detach()) * (len(idx) if k != "positives" else 1)
                bar.set_postfix(loss=f"{float(losses['loss'].detach()):.3f}")
            seconds = time.perf_counter() - t0
            for k in ("loss", "cls", "box", "landmarks"):
                history[k].append(sums[k] / n)
            history["positives_per_image"].append(sums["positives"] / n)
            history["lr"].append(opt.param_groups[0]["lr"])
            history["seconds"].append(seconds)
            history["images_per_s"].append(n / seconds)
            if checkpoint is not None:
                atomic_save_torch({"key": key, "epoch": epoch, "model": model.state_dict(),
                                   "optimizer": opt.state_dict(), "history": history}, checkpoint)
            if on_epoch is not None:
                on_epoch(epoch, history)
    model.eval()
    return history
