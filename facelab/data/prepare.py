"""Prepare face datasets: detect, pick the subject, align to 112x112, keep a loose crop, pack.

Per image (:func:`process_image`):

1. read with OpenCV (:func:`facelab.data.imageio.read_rgb`): a missing, unreadable, truncated,
   too small or too large file is *rejected* with that reason;
2. MTCNN (facenet-pytorch's shipped weights) on a copy shrunk to ``detect_max_side``, smallest
   face ``min_face_fraction`` of the shorter side; if nothing is found, a second pass with relaxed
   thresholds and the smallest face size (``detect_pass`` = 2); still nothing: rejected ``no_face``;
3. the subject is the largest, most central face (:func:`facelab.data.detect.select_face`);
   ``n_faces`` records how many were found. When the image is little more than that face (a tight
   crop, CFP's images), detection runs again on the image padded with zeros, which gives MTCNN
   the context it needs to place the landmarks (``detect_padded`` = 1; :class:`PrepareConfig`);
4. similarity alignment of its 5 landmarks onto the ArcFace template (OpenCV), 112x112, and a
   loose square crop (1.4 x the box, 128x128, no alignment) with the landmarks moved into it;
   landmarks no similarity fits are rejected ``bad_landmarks``.

Per dataset and profile (:func:`prepare_dataset`): the profile's images
(:mod:`facelab.data.selection`) are processed by a process pool (one torch thread per
worker, so results do not depend on the number of workers); every finished image is appended
to ``records.jsonl`` at once, so an interrupted run resumes where it stopped and a re-run
skips finished images (read failures are retried: the file may have been fixed). Then the
manifest, the packed ``uint8[N, 112, 112, 3]`` array and a summary are written atomically
(see :mod:`facelab.data.manifest`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facelab.data.manifest import (
    LANDMARK_COLUMNS,
    LOOSE_BOX_COLUMNS,
    LOOSE_LANDMARK_COLUMNS,
    STATUS_OK,
    STATUS_REJECTED,
    manifest_path,
    packed_path,
    resolve_image,
    summary_path,
    write_manifest,
)
from facelab.data.selection import ImageItem
from facelab.errors import BusyError, DataError
from facelab.paths import prepared_dir
from facelab.fileio import atomic_write_text

JOURNAL = "records.jsonl"
#: Read failures and unexpected errors are retried on a re-run (the file may have been fixed);
#: other rejections are kept.
RETRIED_REASONS = ("missing", "unreadable", "truncated", "error")
REJECT_REASONS = ("missing", "unreadable", "truncated", "too_small", "too_large", "no_face", "bad_landmarks", "error")


@dataclass(frozen=True)
class PrepareConfig:
    """Detection and cropping parameters (their hash keys the journal: change one, images are redone)."""

    aligned_size: int = 112
    loose_size: int = 128
    loose_scale: float = 1.4
    detect_max_side: int = 320
    min_face_fraction: float = 0.2
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    retry_thresholds: tuple[float, float, float] = (0.5, 0.6, 0.6)
    #: A "tight" image, one that is little more than the face (CFP's), is detected a second time
    #: padded with zeros by ``tight_pad`` of its size on every side: MTCNN places the landmarks of a
    #: face that fills (or overflows) the image badly (on CFP a median 16 px off, 47 px at the 90th
    #: percentile; SFace verifies CFP frontal pairs at 88% on such crops and 98.8% after re-detection).
    #: Tight: the subject's box overflows the image, or its side is at least ``tight_box_fraction`` of
    #: the image's shorter side (LFW's faces: 0.41-0.64, CFP's: 0.68-1.6, 1st-99th percentiles).
    tight_box_fraction: float = 0.75
    tight_pad: float = 0.5  # 0: never re-detect
    aligned_format: str = ".png"  # lossless: the packed array equals the files exactly
    loose_format: str = ".jpg"
    jpeg_quality: int = 95

    def key(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


def detect_with_retry(detector, image: np.ndarray, config: PrepareConfig, *, max_side: int | None = None):
    """Step 2 of the module docstring on ``uint8[H, W, 3]`` RGB ``image``.

    Returns ``(FaceDetections, pass)``: pass 1 (default thresholds), 2 (found only with the relaxed
    retry) or 0 (no face in either pass; the detections are then empty). ``max_side``: the side the
    image is shrunk to for detection (default ``config.detect_max_side``).
    """
    from facelab.data.detect import detect_faces_resized

    h, w = image.shape[:2]
    max_side = max_side or config.detect_max_side
    shrink = min(1.0, max_side / max(h, w))
    passes = ((config.thresholds, max(config.min_face_size, int(config.min_face_fraction * min(h, w) * shrink))),
              (config.retry_thresholds, config.min_face_size))
    for number, (thresholds, min_face) in enumerate(passes, 1):
        # facenet-pytorch's MTCNN reads these attributes on every detect() call.
        detector.thresholds, detector.min_face_size = list(thresholds), min_face
        dets = detect_faces_resized(detector, image, max_side)
        if len(dets):
            return dets, number
    return dets, 0


def is_tight(box: np.ndarray, shape: tuple[int, ...], config: PrepareConfig) -> bool:
    """Whether a face box ``[4]`` xyxy makes its ``(H, W, ...)`` image a tight face crop (see
    :class:`PrepareConfig`)."""
    h, w = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    overflows = x1 < 0 or y1 < 0 or x2 > w or y2 > h
    return overflows or max(x2 - x1, y2 - y1) >= config.tight_box_fraction * min(h, w)


def detect_padded(detector, image: np.ndarray, config: PrepareConfig):
    """Detect on ``image`` padded with zeros by ``config.tight_pad`` of its size on every side, at the
    same detection resolution; boxes and landmarks are returned in the coordinates of ``image``.
    Returns ``(FaceDetections, pass)`` as :func:`detect_with_retry`."""
    from facelab.data.detect import FaceDetections

    h, w = image.shape[:2]
    py, px = int(round(config.tight_pad * h)), int(round(config.tight_pad * w))
    padded = np.zeros((h + 2 * py, w + 2 * px, 3), image.dtype)
    padded[py:py + h, px:px + w] = image
    scale = max(padded.shape[:2]) / max(h, w)  # keep the face at the resolution of the first pass
    dets, number = detect_with_retry(detector, padded, config, max_side=int(round(config.detect_max_side * scale)))
    shift = np.array([px, py], np.float32)
    return FaceDetections(boxes=dets.boxes - np.tile(shift, 2), scores=dets.scores,
                          landmarks=dets.landmarks - shift), number


def output_paths(item: ImageItem, config: PrepareConfig) -> tuple[str, str]:
    """(aligned, loose) crop paths relative to the prepared folder."""
    stem = str(Path(item.rel).with_suffix(""))
    return f"aligned/{stem}{config.aligned_format}", f"loose/{stem}{config.loose_format}"


@dataclass
class ImageOutcome:
    """What steps 1-4 make of one image, before anything is written.

    Attributes:
        reason: empty when accepted, else one of :data:`REJECT_REASONS` (but ``error``).
        detail: a few words on a read failure (``JPEG without end-of-image marker``), else empty.
        fields: manifest columns computed so far (size, detections, the subject's box and landmarks,
            loose-crop geometry; see :data:`facelab.data.manifest.COLUMN_DOC`).
        detections: every face found (``FaceDetections``), None when the image could not be read.
        subject: index of the chosen face in ``detections``, or None.
        aligned: ``uint8[S, S, 3]`` RGB aligned crop (``S = config.aligned_size``), or None.
        loose: ``uint8[L, L, 3]`` RGB loose crop (``L = config.loose_size``), or None.
    """

    reason: str = ""
    detail: str = ""
    fields: dict = dataclasses.field(default_factory=dict)
    detections: object = None
    subject: int | None = None
    aligned: np.ndarray | None = None
    loose: np.ndarray | None = None


def analyse_image(detector, image_path: str | os.PathLike, config: PrepareConfig) -> ImageOutcome:
    """Read, detect, pick the subject, align and crop one image (steps 1-4); write nothing.

    Never raises for a bad image: the outcome's ``reason`` says why it was rejected.
    """
    from facelab.data.align import align_face, loose_crop, square_box, template, warp_points
    from facelab.data.detect import select_face
    from facelab.data.imageio import ImageReadError, read_rgb

    out = ImageOutcome()
    try:
        image = read_rgb(image_path)
    except ImageReadError as err:
        out.reason, out.detail = err.reason, err.detail
        return out
    f = out.fields
    f.update(width=image.shape[1], height=image.shape[0])
    dets, number = detect_with_retry(detector, image, config)
    i = select_face(dets, image.shape)
    f["detect_padded"] = 0
    if i is not None and config.tight_pad > 0 and is_tight(dets.boxes[i], image.shape, config):
        # a tight crop: detect again with room around the face (PrepareConfig), keep it if found
        pdets, pnumber = detect_padded(detector, image, config)
        j = select_face(pdets, image.shape)
        if j is not None:
            dets, number, i, f["detect_padded"] = pdets, pnumber, j, 1
    out.detections = dets
    f.update(n_faces=len(dets), detect_pass=number)
    if i is None:
        out.reason = "no_face"
        return out
    out.subject = i
    box, lms = dets.boxes[i].astype(np.float64), dets.landmarks[i].astype(np.float64)
    f["score"] = float(dets.scores[i])
    f.update(zip(("x1", "y1", "x2", "y2"), box.tolist()))
    f.update(zip(LANDMARK_COLUMNS, lms.reshape(-1).tolist()))
    try:
        if not np.isfinite(lms).all():
            raise ValueError("non-finite landmarks")
        aligned, m = align_face(image, lms, config.aligned_size)
    except ValueError:
        out.reason = "bad_landmarks"
        return out
    f["align_rms"] = float(np.sqrt(((warp_points(lms, m) - template(config.aligned_size)) ** 2).sum(1).mean()))
    loose, lm = loose_crop(image, box, config.loose_scale, config.loose_size)
    # The pixel box loose_crop resized (image[y1:y2, x1:x2], padded where it leaves the image).
    f.update(zip(LOOSE_BOX_COLUMNS, np.round(square_box(box, config.loose_scale)).tolist()))
    f.update(zip(LOOSE_LANDMARK_COLUMNS, warp_points(lms, lm).reshape(-1).tolist()))
    out.aligned, out.loose = aligned, loose
    return out


def process_image(detector, item: ImageItem, image_path: str | os.PathLike, out_dir: str | os.PathLike,
                  config: PrepareConfig) -> dict:
    """Detect, align and crop one image (:func:`analyse_image`); write its crops under ``out_dir``;
    return its manifest row.

    Never raises for a bad image: the row's ``status`` is ``rejected`` and ``reason`` says why.
    """
    from facelab.data.imageio import write_image

    row: dict = {"path": item.path, "dataset": item.dataset, "identity": item.identity, "name": item.name,
                 "pose": item.pose, "split": item.split, "status": STATUS_REJECTED, "reason": "",
                 "packed_index": -1, "key": config.key()}
    outcome = analyse_image(detector, image_path, config)
    row.update(outcome.fields)
    if outcome.reason:
        row["reason"] = outcome.reason
        return row
    aligned_rel, loose_rel = output_paths(item, config)
    out_dir = Path(out_dir)
    write_image(out_dir / aligned_rel, outcome.aligned, config.jpeg_quality)
    write_image(out_dir / loose_rel, outcome.loose, config.jpeg_quality)
    row.update(status=STATUS_OK, aligned=aligned_rel, loose=loose_rel)
    return row


@contextlib.contextmanager
def one_torch_thread():
    """Run the block with one torch thread, restoring the caller's count after.

    Detection results do not depend on the number of processes this way (every worker of the
    pool runs one thread, and so does a run in this process).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# Per-process state of the worker pool (set by the initializer).
_WORKER: dict = {}


def _load_detector(config: PrepareConfig) -> None:
    from facelab.data.detect import load_mtcnn

    _WORKER.update(detector=load_mtcnn("cpu", config.min_face_size, config.thresholds), config=config)


def _init_worker(config: PrepareConfig) -> None:
    """Initializer of a pool worker process (its torch thread count is its own to set)."""
    import signal

    import torch

    # Ctrl-C is the parent's to handle: it journals what finished, cancels the pool and says how
    # to resume. A worker that took the SIGINT itself (a terminal signals its whole process group)
    # would die in the middle of the executor's queue handling and print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One thread per worker: parallelism comes from processes, and results do not depend on it.
    torch.set_num_threads(1)
    _load_detector(config)


def _work(job: tuple[ImageItem, str, str]) -> dict:
    item, path, out_dir = job
    try:
        return process_image(_WORKER["detector"], item, path, out_dir, _WORKER["config"])
    except Exception as err:  # noqa: BLE001 - one image must not end a run of thousands
        import sys

        print(f"warning: {path}: {type(err).__name__}: {err} (recorded as 'error'; retried on the next run)",
              file=sys.stderr)
        return {"path": item.path, "dataset": item.dataset, "identity": item.identity, "name": item.name,
                "pose": item.pose, "split": item.split, "status": STATUS_REJECTED, "reason": "error",
                "packed_index": -1, "key": _WORKER["config"].key()}


def _work_chunk(jobs: list[tuple[ImageItem, str, str]]) -> list[dict]:
    """:func:`_work` on a few jobs in one worker call (fewer round trips than one job per call)."""
    return [_work(job) for job in jobs]


class DetectorPool:
    """A process pool of MTCNN workers, started on first use and shared by several datasets.

    ``workers=1`` (or a small job list) runs in this process instead, with one torch thread
    while it works, so the numbers are those of the pool.
    """

    def __init__(self, config: PrepareConfig = PrepareConfig(), workers: int = 0):
        self.config = config
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, jobs: list[tuple[ImageItem, str, str]]):
        """Rows of ``jobs`` (item, image path, output folder) as they finish (in any order: callers
        key rows by image path)."""
        if not jobs:
            return
        if self.workers == 1 or len(jobs) < 8:
            with one_torch_thread():
                if "detector" not in _WORKER or _WORKER["config"] != self.config:
                    _load_detector(self.config)
                for job in jobs:
                    yield _work(job)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_init_worker,
                                             initargs=(self.config,))
        try:
            # Chunks of 4 as they complete, not in submission order: an ordered map holds back every
            # row finished behind a slow chunk, and an interrupt would lose them unjournalled.
            futures = [self._pool.submit(_work_chunk, jobs[i:i + 4]) for i in range(0, len(jobs), 4)]
            for future in as_completed(futures):
                yield from future.result()
        except BaseException:
            self.close(cancel=True)
            raise

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None

    def __enter__(self) -> DetectorPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close(cancel=exc[0] is not None)


def read_journal(folder: Path, config: PrepareConfig) -> dict[str, dict]:
    """Finished rows by image path (the last record of a path wins; a torn last line is ignored)."""
    path = folder / JOURNAL
    out: dict[str, dict] = {}
    if not path.exists():
        return out
    key = config.key()
    with path.open() as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if row.get("key") != key:
                continue
            if row["status"] == STATUS_OK and not all((folder / row[c]).exists() for c in ("aligned", "loose")):
                continue
            out[row["path"]] = row
    return out


LOCK_FILE = ".prepare.lock"


@contextlib.contextmanager
def _lock(folder: Path):
    """Hold ``folder``'s lock (an OS file lock: released by the kernel even if the process is killed)."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise BusyError(f"another `facelab data prepare` is writing {folder}; wait for it to finish") from None
    try:
        yield
    finally:
        lock.release()


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _pack(rows: list[dict], folder: Path, target: Path, size: int, progress: bool) -> None:
    """Write ``uint8[N, size, size, 3]`` of the accepted rows' aligned crops atomically."""
    from tqdm.auto import tqdm

    from facelab.data.imageio import ImageReadError, read_rgb

    ok = [r for r in rows if r["status"] == STATUS_OK]
    tmp = target.with_name(f".{target.name}.tmp")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(ok), size, size, 3))
    for r in tqdm(ok, desc=f"pack {target.name}", disable=not progress or len(ok) < 500, leave=False):
        try:
            rgb = read_rgb(folder / r["aligned"])
        except ImageReadError:
            rgb = None
        if rgb is None or rgb.shape[:2] != (size, size):
            raise DataError(f"{folder / r['aligned']} is damaged: delete it and rerun prepare")
        arr[r["packed_index"]] = rgb
    arr.flush()
    del arr
    os.replace(tmp, target)


def prepare_items(dataset: str, profile: str, items: list[ImageItem], *, data_root: str | os.PathLike | None = None,
                  workers: int = 0, progress: bool = True, config: PrepareConfig = PrepareConfig(),
                  pool: DetectorPool | None = None) -> dict:
    """Prepare ``items`` of ``dataset`` as profile ``profile`` (see module docstring); return the summary.

    ``pool``: a :class:`DetectorPool` to share between datasets (else one is made for this call).
    """
    from tqdm.auto import tqdm

    folder = prepared_dir(dataset)
    started = time.time()
    with _lock(folder), contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(DetectorPool(config, workers))
        config = pool.config
        done = read_journal(folder, config)
        todo = [it for it in items if it.path not in done or done[it.path].get("reason") in RETRIED_REASONS]
        jobs = [(it, str(resolve_image(it.dataset, it.path, data_root)), str(folder)) for it in todo]
        counts: Counter = Counter()
        with (folder / JOURNAL).open("a+") as journal:
            # A crash can leave a torn last line: start on a fresh one so no new record joins it.
            if journal.tell() > 0:
                journal.seek(journal.tell() - 1)
                if journal.read(1) != "\n":
                    journal.write("\n")
            bar = tqdm(total=len(jobs), desc=f"prepare {dataset} ({profile})", disable=not progress or not jobs)
            for row in pool.map(jobs):
                journal.write(json.dumps(row) + "\n")
                journal.flush()
                done[row["path"]] = row
                counts[row["reason"] or "ok"] += 1
                bar.update()
                bar.set_postfix(rejected=sum(v for k, v in counts.items() if k != "ok"), refresh=False)
            bar.close()
        rows, next_index = [], 0
        for it in items:
            row = {k: v for k, v in done[it.path].items() if k != "key"}
            # Selection metadata comes from the current selection (a row may predate a relabel).
            row.update(identity=it.identity, name=it.name, pose=it.pose, split=it.split, dataset=dataset)
            row["packed_index"] = -1
            if row["status"] == STATUS_OK:
                row["packed_index"], next_index = next_index, next_index + 1
            rows.append(row)
        fingerprint = hashlib.sha256("\n".join(f"{r['path']}|{r['status']}|{r.get('aligned', '')}" for r in rows)
                                     .encode()).hexdigest()[:16] + config.key()
        spath, ppath = summary_path(dataset, profile), packed_path(dataset, profile)
        previous = json.loads(spath.read_text()) if spath.exists() else {}
        packed = False
        if previous.get("fingerprint") != fingerprint or not ppath.exists() or jobs:
            _pack(rows, folder, ppath, config.aligned_size, progress)
            packed = True
        write_manifest(manifest_path(dataset, profile), rows)
        reasons = Counter(r["reason"] for r in rows if r["status"] != STATUS_OK)
        ok = [r for r in rows if r["status"] == STATUS_OK]
        summary = {
            "dataset": dataset, "profile": profile, "images": len(rows), "accepted": len(ok),
            "rejected": len(rows) - len(ok), "reasons": {k: reasons.get(k, 0) for k in REJECT_REASONS},
            "identities": len({r["identity"] for r in rows}),
            "identities_accepted": len({r["identity"] for r in ok}),
            "several_faces": sum(1 for r in ok if (r.get("n_faces") or 0) > 1),
            "found_on_retry": sum(1 for r in ok if r.get("detect_pass") == 2),
            "detected_padded": sum(1 for r in ok if r.get("detect_padded") == 1),
            "processed_this_run": len(jobs), "skipped_as_done": len(items) - len(jobs), "repacked": packed,
            "workers": (1 if pool.workers == 1 or len(jobs) < 8 else pool.workers) if jobs else 0, "seconds": round(time.time() - started, 2),
            "packed_bytes": ppath.stat().st_size, "fingerprint": fingerprint,
            "config": dataclasses.asdict(config), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(spath, json.dumps(summary, indent=1))
    return summary


def prepare_dataset(dataset: str, profile: str, *, data_root: str | os.PathLike | None = None, workers: int = 0,
                    progress: bool = True, config: PrepareConfig = PrepareConfig(),
                    pool: DetectorPool | None = None) -> dict:
    """Prepare what ``profile`` selects of ``dataset`` (``lfw``, ``cfp`` or ``widerface``); return the summary."""
    from facelab.data.selection import select_images

    if dataset == "widerface":
        return prepare_widerface(profile, data_root=data_root)
    items = select_images(dataset, profile, data_root)
    return prepare_items(dataset, profile, items, data_root=data_root, workers=workers, progress=progress,
                         config=config, pool=pool)


def prepare_datasets(datasets: list[str], profile: str, *, data_root: str | os.PathLike | None = None,
                     workers: int = 0, progress: bool = True, config: PrepareConfig = PrepareConfig()) -> dict:
    """Prepare several datasets with one worker pool; ``{dataset: summary}``."""
    out = {}
    with DetectorPool(config, workers) as pool:
        for name in datasets:
            out[name] = prepare_dataset(name, profile, data_root=data_root, progress=progress, pool=pool)
    return out


def prepare_widerface(profile: str, *, data_root: str | os.PathLike | None = None) -> dict:
    """Validate the WIDER FACE subset and write its ground truth, one row per face, as ``faces-<profile>.csv``.

    Every profile uses all of the (19) images: they are the detection test set.
    """
    import csv
    import io

    from facelab.data import widerface
    from facelab.data.imageio import ImageReadError, read_rgb

    started = time.time()
    folder = prepared_dir("widerface")
    gt = widerface.read_gt(data_root)
    root = widerface.images_dir(data_root)
    buf = io.StringIO()
    cols = ("path", "status", "reason", "width", "height", "face", "x1", "y1", "x2", "y2", "blur", "invalid",
            "clipped")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(cols)
    reasons: Counter = Counter()
    faces = clipped = 0
    for entry in gt:
        try:
            img = read_rgb(root / entry.path)
        except ImageReadError as err:
            reasons[err.reason] += 1
            writer.writerow([entry.path, STATUS_REJECTED, err.reason] + [""] * (len(cols) - 3))
            continue
        h, w = img.shape[:2]
        for k, (box, blur, invalid) in enumerate(zip(entry.boxes, entry.blur, entry.invalid)):
            out_of_image = bool(box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h)
            clipped += out_of_image
            faces += 1
            writer.writerow([entry.path, STATUS_OK, "", w, h, k, *(f"{v:g}" for v in box), int(blur), int(invalid),
                             int(out_of_image)])
    atomic_write_text(folder / f"faces-{profile}.csv", buf.getvalue())
    summary = {"dataset": "widerface", "profile": profile, "images": len(gt), "accepted": len(gt) - sum(reasons.values()),
               "rejected": sum(reasons.values()), "reasons": dict(reasons), "faces": faces,
               "boxes_outside_image": clipped, "seconds": round(time.time() - started, 2),
               "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_text(summary_path("widerface", profile), json.dumps(summary, indent=1))
    return summary
