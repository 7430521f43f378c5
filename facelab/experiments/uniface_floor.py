"""Chapter 5's floor (``uniface.imagenet_floor``): what the students' ImageNet backbone knows about faces before
any mimic training, on the same LFW pairs as Table I.

The Uniface students (``uniface.train.*``) start from ImageNet MobileNetV2 and learn their recognition branch
(laterals, deconvolutions, landmark attention) from scratch by mimicking SFace. A student's LFW accuracy means
little without the accuracy that needs no face training at all: if a short schedule leaves a student *below*
this floor, its from-scratch branch has not yet learned to pass on what the backbone already carries. Not a
paper row: the paper reports no such baseline. Three rows, all on torchvision's ImageNet MobileNetV2
(:func:`facelab.models.mobilenet_v2_face.imagenet_weights_path`), no training, cosine scores. Each row is given
its face (an aligned crop, a centre box, MTCNN's box); the students find theirs with their own detector, so a
student below a row may localise worse as well as recognise worse (their landmark error is in Table I's
selection table):

* ``aligned_crop``: the book's prepared 112×112 aligned crop (the crop the teacher sees), globally average-
  pooled stride-32 features (1280-d), the input ImageNet-normalised. An aligned crop is more than any
  student gets at test (they are fed the whole image), so this is the floor of a crop recognizer.
* ``whole_image_roi``: the image fed whole as the students are (padded to a square, resized to
  ``input_size``), the backbone's stride-16 and stride-32 maps (the taps of
  :data:`facelab.models.uniface.BACKBONES`) RoI-aligned (:func:`torchvision.ops.roi_align`, 7×7) over a
  fixed centre box of ``centre_box`` px of the original image (LFW's deep-funneled faces are centred;
  :data:`facelab.experiments.uniface.CENTRE_CROP` is the teacher's "not aligned" row's box), each
  average-pooled and L2-normalised, then concatenated (96 + 320 = 416-d): what the students' heads could read
  off their backbone with no detection and no training.
* ``untrained_student``: Uniface model A itself before training (ImageNet backbone, recognition branch at
  torch's default initialisation, seeded), fed whole, its landmark attention on MTCNN's box and landmarks from
  the prepare step (what training feeds it; no detection at test): how much the random branch alone loses of
  what the backbone carries.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("uniface")
#: RoIAlign output side on each tapped map.
ROI_SIDE = 7


@dataclass(frozen=True)
class FloorConfig:
    """``pairs_per_fold`` LFW View 2 pairs per fold (None: all; the same subsample as Table I's networks at
    the same value), images at ``input_size`` px, the centre box ``centre_box`` px of the original image."""

    data_profile: str
    pairs_per_fold: int | None
    input_size: int = 300
    centre_box: int = 128
    batch_size: int = 32


def configure_floor(profile: str) -> FloorConfig:
    check_profile(profile)
    if profile == "smoke":
        return FloorConfig(data_profile="smoke", pairs_per_fold=4, input_size=128, batch_size=8)
    if profile == "small":
        return FloorConfig(data_profile="small", pairs_per_fold=100)
    return FloorConfig(data_profile="full", pairs_per_fold=None)


def imagenet_body():
    """torchvision's MobileNetV2 ``features`` with the packaged ImageNet weights, in eval mode."""
    import torch
    import torchvision

    from facelab.models.mobilenet_v2_face import imagenet_weights_path

    body = torchvision.models.mobilenet_v2(weights=None).features
    state = torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)
    body.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    return body.eval()


def _check_eval(module) -> None:
    if module.training:
        raise ValueError("the floor's features need the network in eval mode (call .eval() first): in training mode "
                         "BatchNorm uses each batch's statistics")


def crop_features(body, crops: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """``uint8[N, 112, 112, 3]`` RGB crops -> ``float32[N, 1280]``: ImageNet-normalised, the body's last map
    globally average-pooled. ``body`` must be in eval mode (batch statistics would make a face's features depend on
    its batch)."""
    import torch

    _check_eval(body)

    from facelab.models.uniface import to_input

    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch_size):
            out.append(body(to_input(crops[i:i + batch_size])).mean(dim=(2, 3)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def centre_boxes(shapes: list[tuple[int, int]], side: int) -> np.ndarray:
    """``float32[N, 4]`` xyxy: the central ``side``² square of each ``(H, W)`` image, in its own pixels."""
    b = [((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2) for h, w in shapes]
    return np.asarray(b, np.float32).reshape(-1, 4)


def whole_image_roi_features(body, images: list[np.ndarray], boxes: np.ndarray, *, size: int,
                             batch_size: int = 32) -> np.ndarray:
    """Images fed whole (``uint8[H, W, 3]`` each, padded to a square and resized to ``size``) with one box each
    (``boxes [N, 4]`` xyxy original pixels) -> ``float32[N, 416]``: the stride-16 and stride-32 taps of
    :data:`facelab.models.uniface.BACKBONES` RoI-aligned over the box (7×7), average-pooled, each part
    L2-normalised so that neither map's scale dominates, concatenated. ``body`` must be in eval mode."""
    import torch
    from torch.nn import functional as F
    from torchvision.ops import roi_align

    from facelab.models.uniface import BACKBONES, pad_to_square, to_input

    _check_eval(body)
    taps = {i: stride for i, _, stride in BACKBONES["mobilenet_v2"][1:]}
    last = max(taps)
    out = []
    with torch.no_grad():
        for b0 in range(0, len(images), batch_size):
            sq = [pad_to_square(im, size) for im in images[b0:b0 + batch_size]]
            x = to_input(np.stack([q[0] for q in sq]))
            scale = torch.tensor([q[1] for q in sq], dtype=torch.float32)[:, None]
            rois = torch.cat([torch.arange(len(sq), dtype=torch.float32)[:, None],
                              torch.as_tensor(boxes[b0:b0 + len(sq)]) * scale], dim=1)
            parts = []
            for i, layer in enumerate(body):
                x = layer(x)
                if i in taps:
                    r = roi_align(x, rois, ROI_SIDE, spatial_scale=x.shape[-1] / size, sampling_ratio=2, aligned=True)
                    parts.append(F.normalize(r.mean(dim=(2, 3)), dim=1))
                if i == last:
                    break
            out.append(torch.cat(parts, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 416), np.float32)


def untrained_student_features(model, images: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray, *,
                               size: int, batch_size: int = 32) -> np.ndarray:
    """A Uniface network's embeddings ``float32[N, 128]`` of images fed whole (padded, resized to ``size``) at given
    faces (``boxes [N, 4]`` xyxy, ``landmarks [N, 5, 2]``, original pixels; one per image); ``model`` in eval mode."""
    import torch

    from facelab.models.uniface import pad_to_square, to_input

    _check_eval(model)
    out = []
    with torch.no_grad():
        for b0 in range(0, len(images), batch_size):
            sq = [pad_to_square(im, size) for im in images[b0:b0 + batch_size]]
            scale = torch.tensor([q[1] for q in sq], dtype=torch.float32)
            fwd = model(to_input(np.stack([q[0] for q in sq])))
            b = torch.as_tensor(boxes[b0:b0 + len(sq)]) * scale[:, None]
            m = torch.as_tensor(landmarks[b0:b0 + len(sq)]) * scale[:, None, None]
            out.append(model.embed(fwd, b, m, torch.arange(len(sq)), size).numpy())
    return np.concatenate(out) if out else np.zeros((0, 128), np.float32)


def run_floor(config: FloorConfig, ctx: RunContext):
    import torch

    from facelab import create_model
    from facelab.data.manifest import boxes_of, landmarks_of
    from facelab.experiments.uniface import lfw_test, read_originals, verification

    t0 = time.time()
    body = imagenet_body()
    prepared, resolved, rows = lfw_test(config, ctx, config.pairs_per_fold)
    table = {}
    crops = np.asarray(prepared.aligned[rows])
    table["aligned_crop"], _ = verification(crop_features(body, crops, batch_size=config.batch_size), rows, resolved)
    originals = read_originals(prepared, rows, ctx.data_root)
    boxes = centre_boxes([im.shape[:2] for im in originals], config.centre_box)
    table["whole_image_roi"], _ = verification(
        whole_image_roi_features(body, originals, boxes, size=config.input_size, batch_size=config.batch_size),
        rows, resolved)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed)
        student = create_model("uniface_a", pretrained="imagenet").eval()
    df = prepared.manifest.iloc[rows]
    table["untrained_student"], _ = verification(
        untrained_student_features(student, originals, boxes_of(df), landmarks_of(df, "image"),
                                   size=config.input_size, batch_size=config.batch_size), rows, resolved)
    metrics = {"table1": table, "backbone": "torchvision mobilenet_v2, ImageNet weights, no face training",
               "n_test_images": int(len(rows)), "seconds": round(time.time() - t0, 1)}
    digest = hashlib.sha256("\n".join(prepared.manifest["path"].iloc[rows]).encode()).hexdigest()[:16]
    return metrics, {}, digest


register_experiment(Experiment(
    name=CH.experiment("imagenet_floor"), chapter=CH.folder,
    description="Table I's floor: ImageNet MobileNetV2 with no face training on the same LFW pairs (aligned crop, "
                "the image fed whole with a centre-box RoI, and model A before training)",
    configure=configure_floor, run=run_floor))

__all__ = ["FloorConfig", "centre_boxes", "configure_floor", "crop_features", "imagenet_body",
           "untrained_student_features", "whole_image_roi_features"]
