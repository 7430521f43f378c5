"""Reference rows of the two packaged teachers (:mod:`facelab.teachers`): verification accuracy on
the book's own prepared crops, and what an embedding costs.

* ``teachers.<protocol>_<teacher>`` for protocol ``lfw`` (LFW View 2: 6,000 pairs, 10 folds),
  ``cfp_ff`` and ``cfp_fp`` (CFP frontal-frontal and frontal-profile: 7,000 pairs each, the 10
  official identity-disjoint splits) and teacher ``sface`` or ``dlib``: every image of the protocol
  is taken from the prepared aligned crops (``prepared.aligned``, the same 112x112 ArcFace crops the
  book's models see), embedded by the teacher, and each pair scored by the cosine of its two
  unit-norm embeddings. Pairs with an image that ``prepare`` rejected are dropped and counted by
  reason. Stored: per-pair ``score``/``label``/``fold`` arrays (``facelab.tables``' ``lfw_kfold_accuracy``
  recomputes the 10-fold accuracy from them; the threshold of each fold is chosen on the other nine)
  and ``pair_index`` (position in the protocol file order).
* ``teachers.embedding_cost``: milliseconds per crop of each teacher, at 1 and 2 threads, on real
  crops, with the machine's load average beside it.

Profiles: ``smoke`` scores the pairs the smoke prepare holds (LFW: 10 per fold, CFP: 6 per fold);
``small`` and ``full`` score every protocol pair (the ``small`` prepare already holds every View 2
and every CFP image; ``full`` reads the ``full`` prepare).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import numpy as np

from facelab.experiments import Experiment, RunContext, register_experiment

CHAPTER = "00_getting_started"
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
    return f"teachers.{protocol}_{teacher}"


def _register_verification(protocol: str, teacher: str) -> None:
    dataset, name = PROTOCOLS[protocol]
    title = {"lfw": "LFW View 2", "cfp_ff": "CFP frontal-frontal", "cfp_fp": "CFP frontal-profile"}[protocol]
    register_experiment(Experiment(
        name=verification_experiment(protocol, teacher),
        chapter=CHAPTER,
        description=f"{title} verification (10 folds) of the {teacher} teacher on the prepared aligned crops",
        configure=lambda profile, _p=protocol, _t=teacher: configure_verification(_t, _p, profile),
        run=run_verification,
        code_modules=("facelab.experiments.teachers", "facelab.teachers", f"facelab.teachers.{_MODULE[teacher]}",
                      "facelab.data.pairs", "facelab.data.manifest", f"facelab.data.{dataset}"),
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
    name="teachers.embedding_cost",
    chapter=CHAPTER,
    description="Milliseconds per aligned crop of the SFace and dlib teachers at 1 and 2 threads",
    configure=configure_cost,
    run=run_cost,
    code_modules=("facelab.experiments.teachers", "facelab.teachers", "facelab.teachers.sface",
                  "facelab.teachers.dlib_resnet"),
))
