"""Teacher embeddings of prepared crops, computed once and kept in the user cache.

Distillation (:mod:`facelab.train.distill`) trains a student to reproduce a teacher's embedding of
every training crop and of its mirror image (the flip augmentation needs the flipped crop's target).
Embedding is the expensive part (SFace about 15-40 ms per crop on 2 CPU cores, dlib about 80 ms), so
:func:`teacher_targets` computes the embeddings a run asks for once and keeps them:

* one ``float32[N, 2, D]`` array per prepared set and teacher, row ``i`` = crop ``i`` of
  ``prepared.aligned`` (``[:, 0]`` the crop, ``[:, 1]`` its horizontal flip), unit-norm, under
  ``$FACELAB_CACHE/teacher_targets/``; the file name is keyed by the dataset, the profile, the
  prepared set's fingerprint (which crops, prepared how) and the teacher's version, so a re-prepared
  set or another teacher never reads stale targets;
* rows are filled on demand, in chunks; a companion ``bool[N]`` mask records which rows are done and
  is written only after their embeddings are flushed, so an interrupted run resumes where it stopped
  and never trusts a half-written row.

``python -m facelab data teachers --profile P [--teacher sface|dlib] [--datasets lfw,cfp]`` fills
every accepted crop of the prepared sets (what ``make book`` does *not* do: the experiments ask for
the rows they use).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.paths import cache_root

#: Rows embedded between two flushes of the cache (a resumed run redoes at most this many).
CHUNK = 256


@dataclass(frozen=True)
class TargetsInfo:
    """Where a prepared set's teacher targets live and what keys them."""

    dataset: str
    profile: str
    teacher: str
    version: str
    fingerprint: str
    n: int

    @property
    def key(self) -> str:
        digest = hashlib.sha256(f"{self.dataset}|{self.profile}|{self.fingerprint}|{self.version}".encode()).hexdigest()
        return f"{self.dataset}-{self.profile}-{self.teacher}-{digest[:16]}"

    @property
    def path(self) -> Path:
        return cache_root() / "teacher_targets" / f"{self.key}.npy"

    @property
    def mask_path(self) -> Path:
        return self.path.with_name(f"{self.key}.done.npy")


def prepared_fingerprint(prepared) -> str:
    """What identifies a prepared set's crops: its summary's fingerprint (which images, accepted how,
    with which preparation settings) and the packed array's size."""
    fp = str(prepared.summary.get("fingerprint", ""))
    if not fp:
        raise ValueError(f"the prepared {prepared.dataset} set ({prepared.profile}) has no fingerprint: rerun "
                         f"`python -m facelab data prepare --profile {prepared.profile} --datasets {prepared.dataset}`")
    return f"{fp}:{len(prepared)}"


def targets_info(prepared, teacher) -> TargetsInfo:
    return TargetsInfo(prepared.dataset, prepared.profile, teacher.name, teacher.version,
                       prepared_fingerprint(prepared), len(prepared))


def _open(info: TargetsInfo, dim: int):
    """The cache array and its done-mask (created empty when absent), as writable memory maps."""
    info.path.parent.mkdir(parents=True, exist_ok=True)
    if info.path.exists() and info.mask_path.exists():
        emb = np.load(info.path, mmap_mode="r+")
        done = np.load(info.mask_path, mmap_mode="r+")
        if emb.shape == (info.n, 2, dim) and done.shape == (info.n,):
            return emb, done
    # a new cache, or one of another shape (another teacher dimension): start over
    emb = np.lib.format.open_memmap(info.path, mode="w+", dtype=np.float32, shape=(info.n, 2, dim))
    done = np.lib.format.open_memmap(info.mask_path, mode="w+", dtype=np.bool_, shape=(info.n,))
    done[:] = False
    done.flush()
    return emb, done


def teacher_targets(prepared, teacher, rows=None, *, batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Teacher embeddings of crops ``rows`` of ``prepared`` (default: all), computing only the missing ones.

    Args:
        prepared: :func:`facelab.data.manifest.load_prepared` output.
        teacher: a :class:`facelab.teachers.Teacher` (``load_teacher("sface")``).
        rows: positions in ``prepared.aligned``.

    Returns:
        ``float32[len(rows), 2, D]``: ``[:, 0]`` the crop's unit-norm embedding, ``[:, 1]`` its mirror's.
    """
    rows = np.arange(len(prepared)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= len(prepared)):
        raise ValueError(f"rows must lie in [0, {len(prepared)}) for the prepared {prepared.dataset} set")
    from filelock import FileLock

    info = targets_info(prepared, teacher)
    info.path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(info.path.with_name(f"{info.key}.lock"))):  # one writer per cache file
        return _fill(prepared, teacher, info, rows, batch_size, progress)


def _fill(prepared, teacher, info: TargetsInfo, rows: np.ndarray, batch_size: int, progress: bool) -> np.ndarray:
    from tqdm.auto import tqdm

    emb, done = _open(info, teacher.embedding_dim)
    todo = np.unique(rows[~done[rows]]) if len(rows) else rows
    bar = tqdm(total=len(todo), desc=f"{teacher.name} targets ({prepared.dataset}, {prepared.profile})",
               disable=not progress or not len(todo), unit="crop")
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        e = teacher.embed(prepared.aligned, rows=chunk, batch_size=batch_size)
        f = teacher.embed(prepared.aligned, rows=chunk, flip=True, batch_size=batch_size)
        emb[chunk, 0], emb[chunk, 1] = e, f
        emb.flush()  # the embeddings reach the disk before the mask says they are there
        done[chunk] = True
        done.flush()
        bar.update(len(chunk))
    bar.close()
    return np.array(emb[rows])


def cached_rows(prepared, teacher) -> int:
    """How many crops of ``prepared`` already have ``teacher``'s targets in the cache."""
    info = targets_info(prepared, teacher)
    if not info.mask_path.exists():
        return 0
    done = np.load(info.mask_path, mmap_mode="r")
    return int(done.sum()) if done.shape == (info.n,) else 0
