"""Chapter 0 (Getting started): LFW verification with the packaged reference recognizer.

Pipeline per image: read (OpenCV) -> MTCNN detection (facenet-pytorch weights) -> pick the
central face -> dlib 5-point landmarks inside the MTCNN box -> dlib's aligned 150x150 chip
-> 128-d ResNet descriptor. A pair's score is the negated Euclidean distance of its two
descriptors (dlib's convention). When MTCNN finds no face, the image's fixed central box is
used instead (LFW images are centred on the subject) and the image is counted as a fallback;
an unreadable image drops its pairs, counted. Metrics are computed by the chapter from the
stored per-pair scores, so a change to ``facelab.eval`` never makes this result stale.

Reference rows of the two packaged teachers (:mod:`facelab.teachers`), in this chapter because it
introduces them:

* ``getting_started.teacher_<protocol>_<teacher>`` for protocol ``lfw`` (LFW View 2: 6,000 pairs, 10 folds),
  ``cfp_ff`` and ``cfp_fp`` (CFP frontal-frontal and frontal-profile: 7,000 pairs each, the 10
  official identity-disjoint splits) and teacher ``sface`` or ``dlib``: every image of the protocol
  is taken from the prepared aligned crops (``prepared.aligned``, the same 112x112 ArcFace crops the
  book's models see), embedded by the teacher, and each pair scored by the cosine of its two
  unit-norm embeddings. Pairs with an image that ``prepare`` rejected are dropped and counted by
  reason. Stored: per-pair ``score``/``label``/``fold`` arrays (``facelab.tables``' ``lfw_kfold_accuracy``
  recomputes the 10-fold accuracy from them; the threshold of each fold is chosen on the other nine)
  and ``pair_index`` (position in the protocol file order).
* ``getting_started.teacher_cost``: milliseconds per crop of each teacher, at 1 and 2 threads, on real
  crops, with the machine's load average beside it.

Profiles: ``smoke`` scores the pairs the smoke prepare holds (LFW: 10 per fold, CFP: 6 per fold);
``small`` and ``full`` score every protocol pair (the ``small`` prepare already holds every View 2
and every CFP image; ``full`` reads the ``full`` prepare).
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from facelab import chapters
from facelab.errors import DataError
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


# ------------------------------------------------------------------------------ the teachers' reference rows



TEACHERS = ("sface", "dlib")
#: protocol -> (dataset, protocol name in facelab.data.lfw / facelab.data.cfp)
PROTOCOLS = {"lfw": ("lfw", "view2"), "cfp_ff": ("cfp", "FF"), "cfp_fp": ("cfp", "FP")}
#: Pairs per fold the smoke prepare holds (facelab.data.selection).
SMOKE_PAIRS_PER_FOLD = {"lfw": 10, "cfp": 6}
#: The facelab.teachers module of each teacher.
_MODULE = {"sface": "sface", "dlib": "dlib_resnet"}
SCORE = "cosine similarity of the teacher's L2-normalised 128-d embeddings"


@dataclass(frozen=True)
class TeacherVerificationConfig:
    """``pairs_per_fold``: the first half matched + half mismatched pairs of each fold (None: all)."""

    teacher: str
    protocol: str
    data_profile: str
    pairs_per_fold: int | None
    batch_size: int = 64


def configure_verification(teacher: str, protocol: str, profile: str) -> TeacherVerificationConfig:
    dataset = PROTOCOLS[protocol][0]
    return TeacherVerificationConfig(
        teacher=teacher, protocol=protocol,
        data_profile={"smoke": "smoke", "small": "small", "full": "full"}[profile],
        pairs_per_fold={"smoke": SMOKE_PAIRS_PER_FOLD[dataset], "small": None, "full": None}[profile])


def _threads(ctx: RunContext) -> int:
    return ctx.workers or os.cpu_count() or 1


def _protocol_pairs(protocol: str, per_fold: int | None, data_root) -> list:
    from facelab.data import cfp, lfw

    dataset, name = PROTOCOLS[protocol]
    if dataset == "lfw":
        pairs = lfw.read_pairs(name, data_root)
        return pairs if per_fold is None else lfw.subsample_pairs(pairs, per_fold)
    pairs = cfp.read_pairs(name, data_root)
    return pairs if per_fold is None else cfp.subsample_pairs(pairs, per_fold)


def score_pairs(embeddings: np.ndarray, index1: np.ndarray, index2: np.ndarray) -> np.ndarray:
    """Cosine of unit-norm ``embeddings[index1]`` and ``embeddings[index2]``: ``float32[M]``."""
    return np.einsum("ij,ij->i", embeddings[index1], embeddings[index2]).astype(np.float32)


def run_verification(config: TeacherVerificationConfig, ctx: RunContext):
    from facelab.data.manifest import load_prepared
    from facelab.data.pairs import resolve_pairs
    from facelab.teachers import load_teacher

    dataset, _ = PROTOCOLS[config.protocol]
    prepared = load_prepared(dataset, config.data_profile)
    pairs = _protocol_pairs(config.protocol, config.pairs_per_fold, ctx.data_root)
    resolved = resolve_pairs(prepared, pairs)
    if len(resolved) == 0:
        raise ValueError(f"no {config.protocol} pair has both images in the {config.data_profile!r} prepare "
                         f"(dropped: {dict(resolved.dropped)}): run `python -m facelab data prepare --profile "
                         f"{config.data_profile} --datasets {dataset}`")
    rows = np.unique(np.concatenate([resolved.index1, resolved.index2]))
    kwargs = {"threads": _threads(ctx)} if config.teacher == "sface" else {}
    teacher = load_teacher(config.teacher, **kwargs)
    t0 = time.perf_counter()
    emb = teacher.embed(prepared.aligned, rows=rows, batch_size=config.batch_size, progress=ctx.progress)
    seconds = time.perf_counter() - t0
    position = np.searchsorted(rows, np.arange(len(prepared)))  # prepared row -> row of emb (for used rows)
    scores = score_pairs(emb, position[resolved.index1], position[resolved.index2])

    metrics = {
        "teacher": config.teacher,
        "teacher_version": teacher.version,
        "protocol": config.protocol,
        "n_pairs_protocol": resolved.n_protocol,
        "n_pairs_scored": len(resolved),
        "n_pairs_dropped": int(sum(resolved.dropped.values())),
        "dropped_by_reason": dict(sorted(resolved.dropped.items())),
        "n_images": int(len(rows)),
        "embed_seconds": round(seconds, 2),
        "embed_ms_per_crop": round(1000 * seconds / len(rows), 2),
        "threads": kwargs.get("threads", 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "score": SCORE,
    }
    arrays = {
        # float32 precision, as every stored score in the book (ties would change the accuracy).
        "score": [float(s) for s in scores],
        "label": resolved.same.astype(int).tolist(),
        "fold": resolved.fold.tolist(),
        "pair_index": resolved.pair_index.tolist(),
    }
    used = prepared.manifest["path"].iloc[rows].tolist()
    fingerprint = str(prepared.summary.get("fingerprint", ""))
    manifest = hashlib.sha256(("\n".join(used) + "\n" + fingerprint).encode()).hexdigest()[:16]
    return metrics, arrays, manifest


def verification_experiment(protocol: str, teacher: str) -> str:
    """Name of the verification experiment of ``teacher`` on ``protocol``."""
    return CH.experiment(f"teacher_{protocol}_{teacher}")


def _register_verification(protocol: str, teacher: str) -> None:
    dataset, name = PROTOCOLS[protocol]
    title = {"lfw": "LFW View 2", "cfp_ff": "CFP frontal-frontal", "cfp_fp": "CFP frontal-profile"}[protocol]
    register_experiment(Experiment(
        name=verification_experiment(protocol, teacher),
        chapter=CH.folder,
        description=f"{title} verification (10 folds) of the {teacher} teacher on the prepared aligned crops",
        configure=lambda profile, _p=protocol, _t=teacher: configure_verification(_t, _p, profile),
        run=run_verification,
    ))


# ------------------------------------------------------------------------------ embedding cost


@dataclass(frozen=True)
class EmbeddingCostConfig:
    """Time ``n_crops`` prepared LFW crops per teacher and thread count, ``repeats`` times after one
    warm-up pass; the reported cost is the median. ``batch_size`` crops per call."""

    data_profile: str
    n_crops: int
    batch_size: int = 32
    threads: tuple[int, ...] = (1, 2)
    repeats: int = 3


def configure_cost(profile: str) -> EmbeddingCostConfig:
    return EmbeddingCostConfig(data_profile={"smoke": "smoke", "small": "small", "full": "full"}[profile],
                               n_crops={"smoke": 8, "small": 64, "full": 64}[profile],
                               repeats={"smoke": 1, "small": 3, "full": 3}[profile])


def _time_teacher(make, crops: np.ndarray, config: EmbeddingCostConfig) -> dict:
    teacher = make()
    teacher.embed(crops[: config.batch_size], batch_size=config.batch_size)  # warm-up (allocations, caches)
    times = []
    for _ in range(config.repeats):
        t0 = time.perf_counter()
        teacher.embed(crops, batch_size=config.batch_size)
        times.append(time.perf_counter() - t0)
    return {"ms_per_crop": round(1000 * float(np.median(times)) / len(crops), 2),
            "ms_per_crop_runs": [round(1000 * t / len(crops), 2) for t in times],
            "load_average_1min": round(os.getloadavg()[0], 2)}


def run_cost(config: EmbeddingCostConfig, ctx: RunContext):
    """dlib's CPU build is single-threaded and holds Python's GIL, so its "2 threads" row runs two
    worker processes on halves of the crops (what a parallel embedding job would do)."""
    from facelab.data.manifest import load_prepared
    from facelab.teachers import load_teacher

    prepared = load_prepared("lfw", config.data_profile)
    n = min(config.n_crops, len(prepared))
    crops = np.ascontiguousarray(prepared.aligned[np.linspace(0, len(prepared) - 1, n).astype(int)])
    runs = []
    for threads in config.threads:
        rec = _time_teacher(lambda t=threads: load_teacher("sface", threads=t), crops, config)
        runs.append({"teacher": "sface", "threads": threads, "runtime": "onnxruntime intra-op threads", **rec})
    for threads in config.threads:
        rec = _time_dlib(crops, config, processes=threads)
        runs.append({"teacher": "dlib", "threads": threads, "runtime": "dlib, one process per thread", **rec})
    metrics = {"runs": runs, "n_crops": n, "batch_size": config.batch_size, "cpu_count": os.cpu_count(),
               "note": "median wall time of the repeats divided by the number of crops; the load average "
                       "is the machine's 1-minute load when the teacher finished"}
    return metrics, {}, None


#: The dlib teacher of a worker process (loaded once by the pool's initializer).
_WORKER: dict = {}


def _init_dlib_worker() -> None:
    from facelab.teachers import load_teacher

    _WORKER["dlib"] = load_teacher("dlib")


def _dlib_embed(crops: np.ndarray) -> np.ndarray:
    return _WORKER["dlib"].embed(crops)


def _time_dlib(crops: np.ndarray, config: EmbeddingCostConfig, *, processes: int) -> dict:
    from facelab.teachers import load_teacher

    if processes == 1:
        return _time_teacher(lambda: load_teacher("dlib"), crops, config)
    from concurrent.futures import ProcessPoolExecutor

    parts = np.array_split(crops, processes)
    times = []
    with ProcessPoolExecutor(max_workers=processes, initializer=_init_dlib_worker) as pool:
        list(pool.map(_dlib_embed, [p[:2] for p in parts]))  # warm-up: every worker loaded and run once
        for _ in range(config.repeats):
            t0 = time.perf_counter()
            list(pool.map(_dlib_embed, parts))  # one part per worker, all at once
            times.append(time.perf_counter() - t0)
    return {"ms_per_crop": round(1000 * float(np.median(times)) / len(crops), 2),
            "ms_per_crop_runs": [round(1000 * t / len(crops), 2) for t in times],
            "load_average_1min": round(os.getloadavg()[0], 2)}


for _protocol in PROTOCOLS:
    for _teacher in TEACHERS:
        _register_verification(_protocol, _teacher)

register_experiment(Experiment(
    name=CH.experiment("teacher_cost"),
    chapter=CH.folder,
    description="Milliseconds per aligned crop of the SFace and dlib teachers at 1 and 2 threads",
    configure=configure_cost,
    run=run_cost,
))


# ------------------------------------------------------------------------------ reference students

#: The reference students: a registered model and how it is initialised.
STUDENTS = {"mobilenet_v2_imagenet": ("mobilenet_v2_face", "imagenet"), "mobilefacenet": ("mobilefacenet", None)}


@dataclass(frozen=True)
class StudentConfig:
    """A student distilled from ``teacher`` on the LFW-test pool (:func:`facelab.data.splits.lfw_test_pool`:
    LFW identities in no View 2 pair and CFP identities named like no LFW person), tested on LFW View 2.

    ``epochs``/``batch_size``/``lr``/``weight_decay`` with AdamW; the learning rate halves when the
    epoch's mimic loss stops falling. ``centre``: targets centred by the pool's mean teacher
    embedding; ``relational``: weight of the batch-similarity term (facelab.train.distill).
    ``max_images``: a seeded subset of the pool (smoke). ``pairs_per_fold``: LFW pairs per fold (None: all).
    ``channels_last``/``bf16``: the speed levers (facelab.train.speed).
    """

    student: str
    data_profile: str
    epochs: int
    pairs_per_fold: int | None
    teacher: str = "sface"
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    centre: bool = False
    relational: float = 0.0
    max_images: int | None = None
    flip_p: float = 0.5
    max_shift: int = 4
    channels_last: bool = True
    bf16: bool = False


def configure_student(student: str, profile: str) -> StudentConfig:
    # MobileNetV2's depthwise convolutions gain nothing from bf16 here (results/bench/trainspeed.*):
    # channels_last alone; MobileFaceNet is built the same way.
    if profile == "smoke":
        return StudentConfig(student=student, data_profile="smoke", epochs=1, pairs_per_fold=10, batch_size=16,
                             max_images=64)
    # centre: with raw targets both students stalled at a mimic loss of ~0.57 (LFW 73% and 78%), about
    # what predicting the pool's mean teacher embedding scores; centring the targets removes that
    # shortcut (facelab.train.distill), as chapter 2's distilled track does.
    if profile == "small":
        # ~15 min on 2 cores: 12 epochs of the ~5.1k-crop pool for MobileNetV2 (~90 images/s), 8 for
        # MobileFaceNet (about half as fast per image)
        return StudentConfig(student=student, data_profile="small", epochs=12 if student.startswith("mobilenet") else 8,
                             pairs_per_fold=None, centre=True)
    return StudentConfig(student=student, data_profile="full", epochs=40, pairs_per_fold=None, centre=True)


def run_student(config: StudentConfig, ctx: RunContext):
    import torch

    from facelab.data.augment import FlipJitter
    from facelab.data.manifest import load_prepared
    from facelab.data.splits import lfw_test_pool
    from facelab.paths import cache_root
    from facelab.registry import create_model
    from facelab.results import config_hash
    from facelab.teachers import load_teacher
    from facelab.train.distill import Mimic, MimicHead, lfw_student_evaluation, pool_centre, pool_with_targets
    from facelab.train.inputs import PackedFaces
    from facelab.train.loop import TrainConfig, fit
    from facelab.train.speed import Speed

    model_name, pretrained = STUDENTS[config.student]
    prepared = {name: load_prepared(name, config.data_profile) for name in ("lfw", "cfp")}
    pool = lfw_test_pool(ctx.data_root)
    teacher = load_teacher(config.teacher, **({"threads": _threads(ctx)} if config.teacher == "sface" else {}))
    t0 = time.time()
    crops, targets = pool_with_targets(prepared, {"lfw": pool.lfw_identities, "cfp": pool.cfp_identities}, teacher,
                                       max_images=config.max_images, seed=ctx.seed, progress=ctx.progress)
    targets_seconds = time.time() - t0
    if not len(crops):
        raise DataError(f"the distillation pool holds no prepared crop at profile {config.data_profile!r}: run "
                        f"`python -m facelab data prepare --profile {config.data_profile}`")
    torch.manual_seed(ctx.seed)  # initial weights (the runner restores the caller's RNG)
    model = create_model(model_name, **({"pretrained": pretrained} if pretrained else {}))
    head = MimicHead(model.num_features, teacher.embedding_dim)
    size = model.input_size[-1]
    data = PackedFaces(crops.images, np.arange(len(crops)), targets, size=size,
                       augment=FlipJitter(config.flip_p, config.max_shift), seed=ctx.seed)
    objective = Mimic(centre=pool_centre(targets) if config.centre else None, relational=config.relational)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr,
                               weight_decay=config.weight_decay, optimizer="adamw", grad_clip=None, min_lr=1e-6,
                               speed=Speed(channels_last=config.channels_last, autocast_bf16=config.bf16))
    ckpt = (cache_root() / "checkpoints" / CH.folder / f"student-{config.student}-{config_hash([str(config), ctx.seed])}.pt"
            if config.max_images is None else None)
    t1 = time.time()
    history = fit(model, data, train_config, head=head, objective=objective, device=ctx.device, seed=ctx.seed,
                  checkpoint=ckpt, progress=ctx.progress)
    train_seconds = time.time() - t1
    model.cpu(), head.cpu()
    evaluation, arrays = lfw_student_evaluation(model, head, prepared["lfw"], teacher, size=size,
                                                pairs_per_fold=config.pairs_per_fold, data_root=ctx.data_root,
                                                progress=ctx.progress)
    record = history.as_record()
    metrics = {"student": config.student, "model": model_name, "pretrained": pretrained or "none",
               "teacher": teacher.name, "teacher_version": teacher.version,
               "pool": {**crops.counts(), "excluded": pool.excluded}, "n_train_images": len(crops),
               "parameters": sum(p.numel() for p in model.parameters()),
               "history": {k: [v if np.isfinite(v) else None for v in vs] for k, vs in history.as_dict().items()},
               "speed": record["speed"], "train_seconds": round(train_seconds, 1),
               "targets_seconds": round(targets_seconds, 1), **evaluation}
    digest = hashlib.sha256(("\n".join(crops.identity.tolist()) + str(prepared["lfw"].summary.get("fingerprint"))
                             + str(prepared["cfp"].summary.get("fingerprint"))).encode()).hexdigest()[:16]
    return metrics, arrays, digest


for _student in STUDENTS:
    register_experiment(Experiment(
        name=CH.experiment(f"student_{_student}"), chapter=CH.folder,
        description=f"reference student {_student} distilled from SFace on the LFW-test pool; LFW View 2",
        configure=lambda profile, _s=_student: configure_student(_s, profile), run=run_student))
