"""Chapter 5's experiments (Uniface, paper 004): the four networks of Table I trained by mimicking SFace, the
teacher's rows, the robustness test of Section IV-B-1 and the inference-time comparison of Table II
(:mod:`facelab.experiments.uniface_speed`).

* ``uniface.train.<A|B|C|D>``: one of Fig. 3's networks (:data:`facelab.models.uniface.ABLATIONS`),
  MobileNetV2 backbone from ImageNet, trained with eq. 2 (detection + mimic,
  :func:`facelab.train.uniface.fit_uniface`) on the *training images* below; then tested on LFW
  View 2 with the images **fed whole** (the deep-funneled 250×250 image padded and resized to 300, no
  external detector or alignment: the network's own box and landmarks feed its landmark attention),
  under the robustness perturbation at each offset of the sweep, for landmark error against MTCNN's
  landmarks on the same LFW images, and as a detector on the 19 WIDER FACE images (300 px and native
  resolution) and on held-out composites (Fig. 4's stand-in).
* ``uniface.teacher``: the teacher's rows of Table I (SFace on a fixed centre crop, and after MTCNN
  detection + alignment, as the paper's FaceNet "Aligned No/Yes" rows), and MTCNN + SFace under the
  same robustness sweep.

**Training images** (the paper: ~1M MS-Celeb loose crops + AFLW). Here, from the LFW-test pool
(:func:`facelab.data.splits.lfw_test_pool`: LFW identities in no View 2 pair, CFP identities named
like no LFW person; no LFW test identity): (a) whole original photos with exactly one face found by
MTCNN (the prepare step's count), padded to a square and resized to 300, MTCNN's box and landmarks as
ground truth; (b) composite scenes of 300×300 (:mod:`facelab.data.scenes`) with several of the pool's
faces on shuffled-tile backgrounds of pool photos. None of the 19 WIDER FACE test images is used.
Each face's target is SFace's embedding of its prepared aligned crop (and of its mirror for flipped
images). Landmarks are MTCNN's, as the paper's.

**Face selection** at test (both systems): the detection above the operating score that
:func:`facelab.data.detect.select_face` picks (large and central, InsightFace's rule for LFW);
when none passes, the best-scoring box at any score (Uniface) or the fixed centre crop (MTCNN +
teacher); the counts are stored.

**Robustness** (IV-B-1): each LFW image is cropped or padded (zeros) on each side independently by
an integer offset uniform in ``[-p, p]`` (negative: crop), drawn from ``(seed, p, image row)``, so
every system sees the same perturbed images; ``p`` = 60 is the paper's test.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.config import check_profile
from facelab.errors import MissingDataError
from facelab.experiments import Experiment, RunContext, register_experiment

CH = chapters.get("uniface")
#: Offsets (px per side) of the robustness sweep; 60 is the paper's.
SWEEP = (0, 20, 40, 60)
#: Side of the fixed centre crop on an LFW image (250 px) for the teacher's "not aligned" row.
CENTRE_CROP = 128


@dataclass(frozen=True)
class UnifaceConfig:
    """Training images (``n_single`` photos, ``n_scenes`` composites of ``faces_per_scene`` faces of
    ``face_size`` px), training (:class:`facelab.train.uniface.UnifaceTrainConfig` fields), test
    (``pairs_per_fold`` LFW pairs per fold for Table I and ``sweep_pairs_per_fold`` for the sweep, None:
    all; detections above ``test_score`` after NMS at ``nms_iou``; ``n_heldout`` composite scenes)."""

    network: str
    data_profile: str
    n_single: int
    n_scenes: int
    epochs: int
    pairs_per_fold: int | None
    sweep_pairs_per_fold: int | None
    n_heldout: int
    input_size: int = 300
    faces_per_scene: tuple[int, int] = (2, 6)
    face_size: tuple[float, float] = (28.0, 150.0)
    n_backgrounds: int = 200
    teacher: str = "sface"
    batch_size: int = 16
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 5e-4
    mimic_weight: float = 1.0
    freeze_stem: int = 4
    test_score: float = 0.5
    nms_iou: float = 0.4
    sweep: tuple[int, ...] = SWEEP
    max_wider: int | None = None
    native_wider: bool = True
    n_boot: int = 200


def configure_network(letter: str):
    from facelab.models.uniface import ABLATIONS

    def configure(profile: str) -> UnifaceConfig:
        check_profile(profile)
        net = ABLATIONS[letter]
        if profile == "smoke":
            return UnifaceConfig(network=net, data_profile="smoke", n_single=8, n_scenes=8, epochs=1, pairs_per_fold=4,
                                 sweep_pairs_per_fold=2, n_heldout=4, input_size=128, n_backgrounds=4, batch_size=4,
                                 sweep=(0, 60), max_wider=2, native_wider=False, n_boot=10,
                                 face_size=(20.0, 60.0))
        if profile == "small":
            # ~4 training images/s for A at 300 px on 2 cores (B, two backbones: ~2.5): 1,000 images x 2 epochs,
            # ~8 min for A; the tests (~1,900 LFW images, 4 x ~600 perturbed, WIDER, composites) ~6 min
            return UnifaceConfig(network=net, data_profile="small", n_single=600, n_scenes=400, epochs=2,
                                 pairs_per_fold=100, sweep_pairs_per_fold=30, n_heldout=100)
        return UnifaceConfig(network=net, data_profile="full", n_single=20000, n_scenes=20000, epochs=10,
                             pairs_per_fold=None, sweep_pairs_per_fold=None, n_heldout=1000)

    return configure


# ----------------------------------------------------------------------------- data


def training_images(config, ctx: RunContext, teacher):
    """``(images uint8[N, S, S, 3], targets, account)``: the training images of the module docstring, each
    target ``{"boxes", "landmarks", "teacher" [G, 2, D]}``; ``account`` counts images, faces, identities."""
    from tqdm.auto import tqdm

    from facelab.data.datasets import face_sources
    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import boxes_of, landmarks_of, load_prepared, resolve_image
    from facelab.data.scenes import compose_scene
    from facelab.data.splits import lfw_test_pool
    from facelab.models.uniface import pad_to_square
    from facelab.teachers.targets import teacher_targets

    s = config.input_size
    pool = lfw_test_pool(ctx.data_root)
    ids = {"lfw": set(pool.lfw_identities), "cfp": set(pool.cfp_identities)}
    prepared = {name: load_prepared(name, config.data_profile) for name in ids}
    rng = np.random.default_rng(ctx.seed)
    rows = {}
    for name, p in prepared.items():
        m = p.manifest
        rows[name] = np.flatnonzero(m["identity"].astype(str).isin(ids[name]).to_numpy())
    if not sum(len(r) for r in rows.values()):
        raise MissingDataError(f"no prepared face of the training pool at profile {config.data_profile!r}: "
                               f"run `python -m facelab data prepare --profile {config.data_profile}`")
    cand = [(name, r) for name in prepared for r in rows[name] if int(prepared[name].manifest["n_faces"].iloc[r]) == 1]
    pick = rng.permutation(len(cand))[:config.n_single]
    images = np.empty((len(pick) + config.n_scenes, s, s, 3), np.uint8)
    targets: list[dict] = []
    used: dict[str, set] = {"lfw": set(), "cfp": set()}
    for k, j in enumerate(tqdm(pick, desc="photos", disable=not ctx.progress, leave=False)):
        name, r = cand[j]
        p = prepared[name]
        row = p.manifest.iloc[[r]]
        img = read_rgb(resolve_image(name, row["path"].iloc[0], ctx.data_root))
        images[k], scale = pad_to_square(img, s)
        targets.append({"boxes": boxes_of(row) * scale, "landmarks": landmarks_of(row) * scale,
                        "teacher": teacher_targets(p, teacher, np.array([r]))})
        used[name].add(str(row["identity"].iloc[0]))
    # composite scenes: faces and backgrounds from the pool
    src_rows = [(name, r) for name in prepared for r in rows[name]]
    take = rng.permutation(len(src_rows))[:3000]
    src = [src_rows[i] for i in np.sort(take)]
    faces, src_teacher = [], []
    for name in prepared:
        rr = np.array([r for n_, r in src if n_ == name], np.int64)
        if len(rr):
            faces += face_sources(prepared[name], rr)
            src_teacher.append(teacher_targets(prepared[name], teacher, rr))
            used[name] |= set(prepared[name].manifest["identity"].astype(str).iloc[rr])
    src_teacher = np.concatenate(src_teacher)
    bg = [src[i] for i in rng.permutation(len(src))[:config.n_backgrounds]]
    backgrounds = [read_rgb(resolve_image(n_, prepared[n_].manifest["path"].iloc[r], ctx.data_root)) for n_, r in bg]
    for i in tqdm(range(config.n_scenes), desc="scenes", disable=not ctx.progress, leave=False):
        sc = compose_scene(faces, backgrounds, np.random.default_rng([ctx.seed, 1, i]), size=(s, s),
                           n_faces=tuple(config.faces_per_scene), face_size=tuple(config.face_size))
        images[len(pick) + i] = sc.image
        targets.append({"boxes": sc.boxes, "landmarks": sc.landmarks, "teacher": src_teacher[list(sc.sources)]})
    account = {"n_photos": int(len(pick)), "n_scenes": int(config.n_scenes),
               "n_faces": int(sum(len(t["boxes"]) for t in targets)),
               "n_identities": {k: len(v) for k, v in used.items()}, "pool_excluded": pool.excluded}
    return images, targets, account


def perturb(image: np.ndarray, px: int, rng: np.random.Generator) -> np.ndarray:
    """Crop or zero-pad each side of ``uint8[H, W, 3]`` by an integer offset uniform in ``[-px, px]``
    (negative: crop), drawn top, bottom, left, right from ``rng``; ``px = 0`` returns the image."""
    if px == 0:
        return image
    top, bottom, left, right = (int(v) for v in rng.integers(-px, px + 1, size=4))
    h, w = image.shape[:2]
    img = image[max(0, -top):h - max(0, -bottom), max(0, -left):w - max(0, -right)]
    return np.pad(img, ((max(0, top), max(0, bottom)), (max(0, left), max(0, right)), (0, 0)))


def perturbed(image: np.ndarray, px: int, seed: int, row: int) -> np.ndarray:
    """The robustness test's version of LFW image ``row`` at offset ``px`` (the same for every system)."""
    return perturb(image, px, np.random.default_rng([seed, px, row]))


def lfw_test(config, ctx: RunContext, pairs_per_fold):
    """``(prepared LFW, resolved pairs, unique rows)`` of LFW View 2 (``pairs_per_fold`` per fold)."""
    from facelab.data import lfw
    from facelab.data.manifest import load_prepared
    from facelab.data.pairs import resolve_pairs

    prepared = load_prepared("lfw", config.data_profile)
    pairs = lfw.read_pairs("view2", ctx.data_root)
    if pairs_per_fold is not None:
        pairs = lfw.subsample_pairs(pairs, pairs_per_fold)
    resolved = resolve_pairs(prepared, pairs)
    rows = np.unique(np.concatenate([resolved.index1, resolved.index2]))
    return prepared, resolved, rows


def read_originals(prepared, rows, data_root) -> list[np.ndarray]:
    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import resolve_image

    return [read_rgb(resolve_image(prepared.dataset, prepared.manifest["path"].iloc[int(r)], data_root)) for r in rows]


def verification(embeddings: np.ndarray, rows: np.ndarray, resolved) -> dict:
    """10-fold accuracy (mean, SD over folds) of cosine scores of ``embeddings`` (one per ``rows`` entry)."""
    from facelab.eval.verification import kfold_accuracy

    e = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    pos = {int(r): k for k, r in enumerate(rows)}
    i1 = np.array([pos[int(r)] for r in resolved.index1])
    i2 = np.array([pos[int(r)] for r in resolved.index2])
    score = np.einsum("ij,ij->i", e[i1], e[i2])
    acc = kfold_accuracy(score, resolved.same.astype(int), resolved.fold)
    return {"accuracy": 100 * acc.mean, "accuracy_sd": 100 * acc.std, "n_pairs": int(len(score)),
            "folds": [100 * float(v) for v in acc.per_fold]}, score


def _select(boxes: np.ndarray, scores: np.ndarray, shape, threshold: float) -> tuple[int, str]:
    from facelab.data.detect import FaceDetections, select_face

    ok = np.flatnonzero(scores >= threshold)
    if len(ok):
        d = FaceDetections(boxes[ok].astype(np.float32), scores[ok].astype(np.float32),
                           np.zeros((len(ok), 5, 2), np.float32))
        return int(ok[select_face(d, shape)]), "selected"
    if len(scores):
        return int(np.argmax(scores)), "fallback_best_box"
    return -1, "nothing"


def unified_embed(model, images: list[np.ndarray], *, size: int, score: float, nms_iou: float, batch: int = 8):
    """Images fed whole to a Uniface network: per image the selected face's embedding, box and landmarks
    (original pixels), and the selection counts. Returns ``(emb [N, 128], boxes [N, 4], marks [N, 5, 2], counts)``."""
    import torch

    from facelab.models.uniface import pad_to_square, to_input

    emb = np.zeros((len(images), 128), np.float32)
    boxes = np.full((len(images), 4), np.nan, np.float32)
    marks = np.full((len(images), 5, 2), np.nan, np.float32)
    counts = {"selected": 0, "fallback_best_box": 0, "nothing": 0}
    model.eval()
    with torch.no_grad():
        for b0 in range(0, len(images), batch):
            chunk = images[b0:b0 + batch]
            sq = [pad_to_square(im, size) for im in chunk]
            x = to_input(np.stack([q[0] for q in sq]))
            out = model(x)
            found = model.decode(out, size, size, score_threshold=0.0, iou_threshold=nms_iou, max_detections=50)
            sel_b, sel_m, which = [], [], []
            for k, ((bx, sc, lm), (_, scale)) in enumerate(zip(found, sq)):
                j, how = _select(bx.numpy() / scale, sc.numpy(), chunk[k].shape, score)
                counts[how] += 1
                if j < 0:
                    continue
                sel_b.append(bx[j])
                sel_m.append(lm[j])
                which.append(k)
                boxes[b0 + k] = bx[j].numpy() / scale
                marks[b0 + k] = lm[j].numpy() / scale
            if which:
                e = model.embed(out, torch.stack(sel_b), torch.stack(sel_m), torch.tensor(which), size)
                emb[[b0 + k for k in which]] = e.numpy()
    return emb, boxes, marks, counts


def landmark_error(pred: np.ndarray, ref: np.ndarray) -> dict:
    """Mean landmark error over faces, normalised by the reference inter-ocular distance (``[N, 5, 2]`` each;
    NaN rows skipped), and the share of faces under 10%."""
    ok = np.isfinite(pred).all(axis=(1, 2)) & np.isfinite(ref).all(axis=(1, 2))
    if not ok.any():
        return {"nme": None, "under_10pct": None, "n": 0}
    iod = np.linalg.norm(ref[ok, 0] - ref[ok, 1], axis=1)
    nme = np.linalg.norm(pred[ok] - ref[ok], axis=2).mean(axis=1) / np.maximum(iod, 1e-6)
    return {"nme": float(nme.mean()), "median": float(np.median(nme)), "under_10pct": float((nme < 0.1).mean()),
            "n": int(ok.sum())}


def detection_tests(model, config, ctx: RunContext, held_faces, backgrounds) -> dict:
    """Fig. 4's stand-in: discrete ROC/AP on the WIDER images at 300 px (padded, as trained) and at native
    resolution (fully convolutional), and on held-out composites of ``held_faces``."""
    import torch

    from facelab.data.imageio import read_rgb
    from facelab.data.scenes import compose_scene
    from facelab.data.widerface import WiderImage, images_dir, read_gt
    from facelab.eval.detection import DetectionSettings
    from facelab.experiments.lefv_detection import evaluate
    from facelab.models.uniface import pad_to_square, to_input

    def run(imgs, pad: bool):
        preds = []
        with torch.no_grad():
            for im in imgs:
                if pad:
                    sq, scale = pad_to_square(im, config.input_size)
                else:
                    sq, scale = im, 1.0
                out = model(to_input(sq))
                (b, s, _), = model.decode(out, sq.shape[0], sq.shape[1], score_threshold=0.05,
                                          iou_threshold=config.nms_iou, max_detections=750)
                preds.append((b.numpy().astype(np.float64) / scale, s.numpy().astype(np.float64)))
        return preds

    gt = read_gt(ctx.data_root)
    gt = gt[:config.max_wider] if config.max_wider else gt
    wider = [read_rgb(images_dir(ctx.data_root) / g.path) for g in gt]
    out = {}
    for name, pad in (("wider_300", True), ("wider_native", False))[:2 if config.native_wider else 1]:
        settings = DetectionSettings(detector=config.network, test_scale="300 px" if pad else "original resolution",
                                     score_threshold=0.05, nms_iou=config.nms_iou)
        out[name] = evaluate(run(wider, pad), gt, settings=settings, n_boot=config.n_boot, seed=ctx.seed,
                             operating_threshold=config.test_score)
    scenes = [compose_scene(held_faces, backgrounds, np.random.default_rng([ctx.seed, 2, i]),
                            size=(config.input_size, config.input_size), n_faces=tuple(config.faces_per_scene),
                            face_size=tuple(config.face_size)) for i in range(config.n_heldout)]
    h_gt = [WiderImage(f"scene{i}", sc.boxes, np.zeros(len(sc.boxes), np.int8), np.zeros(len(sc.boxes), bool))
            for i, sc in enumerate(scenes)]
    settings = DetectionSettings(detector=config.network, test_scale="300 px", score_threshold=0.05, nms_iou=config.nms_iou)
    out["heldout"] = evaluate(run([sc.image for sc in scenes], False), h_gt, settings=settings, n_boot=config.n_boot,
                              seed=ctx.seed, operating_threshold=config.test_score)
    return out


def heldout_sources(config, ctx: RunContext, n_faces: int = 400):
    """Faces and backgrounds for held-out composites: LFW View 2 (test) identities, never trained on."""
    from facelab.data.datasets import face_sources
    from facelab.data.manifest import load_prepared
    from facelab.data.splits import lfw_view2_identities

    p = load_prepared("lfw", config.data_profile)
    test = lfw_view2_identities(ctx.data_root)
    rows = np.flatnonzero(p.manifest["identity"].astype(str).isin(test).to_numpy())
    rows = np.sort(np.random.default_rng([ctx.seed, 3]).permutation(rows)[:n_faces])
    bgs = read_originals(p, rows[:config.n_backgrounds], ctx.data_root)
    return face_sources(p, rows), bgs


# ----------------------------------------------------------------------------- the networks


def run_network(config: UnifaceConfig, ctx: RunContext):
    import torch

    from facelab.data.manifest import landmarks_of
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.uniface import UnifaceTrainConfig, fit_uniface

    t0 = time.time()
    teacher = load_teacher(config.teacher)
    images, targets, account = training_images(config, ctx, teacher)
    t_data = time.time() - t0
    torch.manual_seed(ctx.seed)
    model = create_model(config.network, pretrained="imagenet")
    train = UnifaceTrainConfig(epochs=config.epochs, batch_size=config.batch_size, optimizer=config.optimizer,
                               lr=config.lr, weight_decay=config.weight_decay, mimic_weight=config.mimic_weight,
                               freeze_stem=config.freeze_stem)
    ckpt = cache_root() / "checkpoints" / CH.folder / f"{config.network}-{config_hash([str(config), ctx.seed])}.pt"
    t1 = time.time()
    history = fit_uniface(model, images, targets, train, seed=ctx.seed, device=ctx.device,
                          checkpoint=ckpt if config.data_profile != "smoke" else None, progress=ctx.progress)
    t_train = time.time() - t1
    model.cpu().eval()
    del images
    # Table I: LFW View 2 fed whole
    t2 = time.time()
    prepared, resolved, rows = lfw_test(config, ctx, config.pairs_per_fold)
    originals = read_originals(prepared, rows, ctx.data_root)
    emb, _, marks, counts = unified_embed(model, originals, size=config.input_size, score=config.test_score,
                                          nms_iou=config.nms_iou)
    table1, score = verification(emb, rows, resolved)
    table1["selection"] = counts
    ref = landmarks_of(prepared.manifest.iloc[rows])
    table1["landmarks_vs_mtcnn"] = landmark_error(marks, ref)
    # the teacher on the same prepared crops: agreement of decisions and of embeddings
    from facelab.teachers.targets import teacher_targets

    t_emb = teacher_targets(prepared, teacher, rows)[:, 0]
    t_acc, t_score = verification(t_emb, rows, resolved)
    cos = np.einsum("ij,ij->i", emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12),
                    t_emb / np.linalg.norm(t_emb, axis=1, keepdims=True))
    centre = np.asarray(history["centre"]) if history.get("centre") is not None else 0.0
    tc = t_emb - centre
    cos_c = np.einsum("ij,ij->i", emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12),
                      tc / np.linalg.norm(tc, axis=1, keepdims=True))
    from facelab.train.distill import decision_agreement

    table1["teacher_same_crops"] = t_acc
    table1["cosine_to_teacher"] = {"raw_mean": float(cos.mean()), "centred_mean": float(cos_c.mean())}
    table1["decision_agreement"] = decision_agreement(score, t_score, resolved.same.astype(int), resolved.fold)
    t_table1 = time.time() - t2
    # robustness sweep
    t3 = time.time()
    sp, sres, srows = lfw_test(config, ctx, config.sweep_pairs_per_fold)
    s_orig = read_originals(sp, srows, ctx.data_root)
    sweep = {}
    for px in config.sweep:
        imgs = [perturbed(im, px, ctx.seed, int(r)) for im, r in zip(s_orig, srows)]
        e, _, _, c = unified_embed(model, imgs, size=config.input_size, score=config.test_score, nms_iou=config.nms_iou)
        sweep[str(px)], _ = verification(e, srows, sres)
        sweep[str(px)]["selection"] = c
    t_sweep = time.time() - t3
    t4 = time.time()
    held_faces, held_bgs = heldout_sources(config, ctx)
    detection = detection_tests(model, config, ctx, held_faces, held_bgs)
    t_det = time.time() - t4
    n_params = sum(p.numel() for p in model.parameters())
    metrics = {"network": config.network, "table1": table1, "robustness": sweep, "detection": detection,
               "history": {k: v for k, v in history.items() if k != "centre"}, "training_images": account,
               "parameters": int(n_params),
               "head_parameters": int(sum(p.numel() for p in model.attention.parameters())),
               "seconds": {"data": round(t_data, 1), "train": round(t_train, 1), "table1": round(t_table1, 1),
                           "sweep": round(t_sweep, 1), "detection": round(t_det, 1),
                           "total": round(time.time() - t0, 1)}}
    arrays = {"score": [float(v) for v in score], "label": resolved.same.astype(int).tolist(),
              "fold": np.asarray(resolved.fold).tolist()}
    digest = hashlib.sha256("\n".join(prepared.manifest["path"].iloc[rows]).encode()).hexdigest()[:16]
    return metrics, arrays, digest


# ----------------------------------------------------------------------------- the teacher's rows


@dataclass(frozen=True)
class TeacherConfig:
    """The teacher's Table I rows on ``pairs_per_fold`` LFW pairs per fold and MTCNN + teacher over the sweep
    on ``sweep_pairs_per_fold`` (None: all); MTCNN at ``mtcnn_min_face`` px."""

    data_profile: str
    pairs_per_fold: int | None
    sweep_pairs_per_fold: int | None
    teacher: str = "sface"
    centre_crop: int = CENTRE_CROP
    mtcnn_min_face: int = 20
    sweep: tuple[int, ...] = SWEEP


def configure_teacher(profile: str) -> TeacherConfig:
    check_profile(profile)
    if profile == "smoke":
        return TeacherConfig(data_profile="smoke", pairs_per_fold=4, sweep_pairs_per_fold=2, sweep=(0, 60))
    if profile == "small":
        # the same pairs as the networks' tests (uniface.train.*) so rows compare on the same faces
        return TeacherConfig(data_profile="small", pairs_per_fold=100, sweep_pairs_per_fold=30)
    return TeacherConfig(data_profile="full", pairs_per_fold=None, sweep_pairs_per_fold=None)


def centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    """The central ``side``² square of ``uint8[H, W, 3]`` (zero-padded if smaller), resized to 112×112."""
    import cv2

    h, w = image.shape[:2]
    pad = max(0, side - h, side - w)
    if pad:
        image = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
        h, w = image.shape[:2]
    y0, x0 = (h - side) // 2, (w - side) // 2
    return cv2.resize(image[y0:y0 + side, x0:x0 + side], (112, 112), interpolation=cv2.INTER_AREA)


def pipeline_embed(detector, teacher, images: list[np.ndarray], *, side: int):
    """MTCNN + alignment + teacher per image (the detector + recognizer pipeline): the face
    :func:`facelab.data.detect.select_face` picks, aligned to the ArcFace template; the fixed centre crop
    when MTCNN finds nothing. Returns ``(emb [N, D], counts)``."""
    from facelab.data.align import align_face
    from facelab.data.detect import detect_faces, select_face

    crops, counts = [], {"selected": 0, "fallback_centre_crop": 0}
    for im in images:
        d = detect_faces(detector, im)
        j = select_face(d, im.shape)
        if j is None:
            crops.append(centre_crop(im, side))
            counts["fallback_centre_crop"] += 1
        else:
            crops.append(align_face(im, d.landmarks[j])[0])
            counts["selected"] += 1
    return teacher.embed(np.stack(crops)), counts


def run_teacher(config: TeacherConfig, ctx: RunContext):
    from facelab.data.detect import load_mtcnn
    from facelab.teachers import load_teacher
    from facelab.teachers.targets import teacher_targets

    t0 = time.time()
    teacher = load_teacher(config.teacher)
    prepared, resolved, rows = lfw_test(config, ctx, config.pairs_per_fold)
    originals = read_originals(prepared, rows, ctx.data_root)
    rows_out = {}
    rows_out["centre_crop"], _ = verification(teacher.embed(np.stack([centre_crop(im, config.centre_crop)
                                                                      for im in originals])), rows, resolved)
    rows_out["aligned"], _ = verification(teacher_targets(prepared, teacher, rows)[:, 0], rows, resolved)
    detector = load_mtcnn(min_face_size=config.mtcnn_min_face)
    sp, sres, srows = lfw_test(config, ctx, config.sweep_pairs_per_fold)
    s_orig = read_originals(sp, srows, ctx.data_root)
    sweep = {}
    for px in config.sweep:
        imgs = [perturbed(im, px, ctx.seed, int(r)) for im, r in zip(s_orig, srows)]
        e, counts = pipeline_embed(detector, teacher, imgs, side=config.centre_crop)
        sweep[str(px)], _ = verification(e, srows, sres)
        sweep[str(px)]["selection"] = counts
    metrics = {"teacher": config.teacher, "teacher_version": teacher.version, "table1": rows_out,
               "robustness": sweep, "n_test_images": int(len(rows)), "seconds": round(time.time() - t0, 1)}
    digest = hashlib.sha256("\n".join(prepared.manifest["path"].iloc[rows]).encode()).hexdigest()[:16]
    return metrics, {}, digest


for _letter in "ABCD":
    register_experiment(Experiment(
        name=CH.experiment(f"train.{_letter}"), chapter=CH.folder,
        description=f"Table I / Figs. 4-5: Uniface model {_letter} trained by mimicking SFace; LFW fed whole, "
                    "robustness sweep, landmarks, detection",
        configure=configure_network(_letter), run=run_network))

register_experiment(Experiment(
    name=CH.experiment("teacher"), chapter=CH.folder,
    description="Table I's teacher rows (SFace on a fixed centre crop vs after MTCNN + alignment) and MTCNN + "
                "SFace under the robustness sweep",
    configure=configure_teacher, run=run_teacher))

__all__ = ["SWEEP", "UnifaceConfig", "centre_crop", "landmark_error", "perturb", "perturbed", "training_images",
           "unified_embed", "verification"]

# Table II (inference time) lives in its own module
from facelab.experiments import uniface_speed  # noqa: E402,F401
