"""``python -m facelab data ...``: status, fetch and prepare of the datasets.

    python -m facelab data status  [--data-root DIR] [--json]
    python -m facelab data fetch   NAME [--from DIR [--copy]] [--dest DIR]
    python -m facelab data prepare --profile smoke|small|full [--datasets lfw,cfp,widerface]
                                   [--workers N] [--data-root DIR] [--no-progress]
    python -m facelab data detect  IMAGE... [--json]
    python -m facelab data align   IMAGE... --out DIR [--json]

``detect`` and ``align`` run one image at a time through the same code as ``prepare``
(:func:`facelab.data.prepare.analyse_image`: reading, MTCNN with its retry, the subject choice,
the 112x112 alignment) and print one line per image: the faces found / the crop written, or
``rejected (<reason>: <detail>)`` with a reason of :data:`facelab.data.prepare.REJECT_REASONS`.
Exit status: 0 when every image was processed, 1 when some were rejected, 2 on a usage error.

The scripts ``data_scripts/<dataset>.py fetch|prepare`` call :func:`script_main`, the same code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facelab.config import PROFILES
from facelab.errors import UnknownNameError, UsageError, run_guarded

#: What ``prepare`` does without ``--datasets`` (the others have nothing to prepare).
PREPARABLE = ("lfw", "cfp", "widerface")


def _size(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GB"


def _counts_line(name: str, c: dict) -> str:
    if name == "lfw":
        return (f"{c['images']:,} images, {c['identities']:,} identities ({c['identities_2plus']:,} with 2+ images), "
                f"View 2 {c['pairs_view2']:,} pairs, View 1 {c['pairs_dev_train']:,} train + "
                f"{c['pairs_dev_test']:,} test pairs")
    if name == "cfp":
        return (f"{c['images']:,} images ({c['frontal']:,} frontal, {c['profile']:,} profile), "
                f"{c['identities']:,} identities, FF {c['pairs_FF']:,} pairs, FP {c['pairs_FP']:,} pairs")
    if name == "widerface":
        return f"{c['images']:,} images, {c['faces']:,} faces (validation subset with ground truth)"
    return ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in c.items())


def _prepared_line(prepared: dict) -> str:
    parts = []
    for profile in PROFILES:
        s = prepared.get(profile)
        if not s:
            parts.append(f"{profile}: -")
        elif "error" in s:
            parts.append(f"{profile}: {s['error']}")
        elif "faces" in s:
            parts.append(f"{profile}: {s['accepted']} images / {s['faces']} faces checked")
        else:
            reasons = ", ".join(f"{k} {v}" for k, v in s.get("reasons", {}).items() if v)
            parts.append(f"{profile}: {s['accepted']:,} ok / {s['rejected']:,} rejected"
                         + (f" ({reasons})" if reasons else "") + f", {_size(s.get('packed_bytes', 0))} packed")
    return "; ".join(parts)


def cmd_status(args: argparse.Namespace) -> int:
    from facelab.data.inventory import data_status
    from facelab.paths import data_roots

    entries = data_status(args.data_root)
    if args.json:
        print(json.dumps(entries, indent=1))
        return 0
    print("data roots searched: " + ", ".join(str(p) for p in data_roots(args.data_root)))
    for e in entries:
        print(f"\n{e['name']:<10} {e['title']}")
        if not e["found"]:
            print(f"{'':<10} NOT FOUND. Get it: {e['how_to_get']}")
        else:
            print(f"{'':<10} found at {e['folder']}")
            if "error" in e:
                print(f"{'':<10} could not count: {e['error']}")
            else:
                print(f"{'':<10} {_counts_line(e['name'], e['counts'])}")
        if e["name"] in PREPARABLE:
            print(f"{'':<10} prepared: {_prepared_line(e['prepared'])}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from facelab.data.fetch import fetch_dataset, fetch_from
    from facelab.paths import DATASETS

    if args.name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {args.name!r}; known: {', '.join(sorted(DATASETS))}")
    if args.source:
        folder, report = fetch_from(args.name, args.source, args.dest, copy=args.copy, progress=not args.no_progress)
        counts = report["counts"]
        print(f"{args.name}: {'copied to' if args.copy else 'linked as'} {folder}")
        if counts:
            print(f"  {_counts_line(args.name, counts)}")
        for problem in report["problems"]:
            print(f"  warning: {problem}")
        return 1 if report["problems"] else 0
    folder = fetch_dataset(args.name, args.dest, progress=not args.no_progress)
    print(f"{args.name}: downloaded and verified into {folder}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from facelab.config import check_profile
    from facelab.data.prepare import prepare_datasets
    from facelab.paths import DataNotFoundError, dataset_dir, prepared_dir

    check_profile(args.profile)
    explicit = args.datasets is not None
    names = [n.strip() for n in (args.datasets or ",".join(PREPARABLE)).split(",") if n.strip()]
    unknown = [n for n in names if n not in PREPARABLE]
    if unknown:
        raise UsageError(f"cannot prepare {', '.join(unknown)}: choose from {', '.join(PREPARABLE)}")
    present = []
    for name in names:
        try:
            dataset_dir(name, args.data_root)
            present.append(name)
        except DataNotFoundError as err:
            if explicit:
                raise
            print(f"{name}: not found, skipped. {str(err).splitlines()[0]}", file=sys.stderr)
    summaries = prepare_datasets(present, args.profile, data_root=args.data_root, workers=args.workers,
                                 progress=not args.no_progress)
    for name, s in summaries.items():
        if name == "widerface":
            print(f"{name} ({args.profile}): {s['accepted']}/{s['images']} images, {s['faces']} faces "
                  f"checked in {s['seconds']:.1f} s")
            continue
        reasons = ", ".join(f"{k} {v}" for k, v in s["reasons"].items() if v) or "none"
        print(f"{name} ({args.profile}): {s['accepted']:,} of {s['images']:,} images accepted, {s['rejected']:,} "
              f"rejected ({reasons}); {s['processed_this_run']:,} processed, {s['skipped_as_done']:,} already done; "
              f"{s['seconds']:.1f} s with {s['workers']} workers; packed {_size(s['packed_bytes'])} in "
              f"{prepared_dir(name)}")
    return 0


#: Exit status of ``data detect|align`` when some images were rejected (2 is a usage error).
EXIT_SOME_REJECTED = 1


def _outcomes(images: list[str]):
    """``(path, ImageOutcome)`` per image, in order, with prepare's detector and configuration.

    An unexpected failure on one image becomes the reason ``error`` (as in ``prepare``), so that
    one odd file does not hide the results of the others.
    """
    from facelab.data.detect import load_mtcnn
    from facelab.data.prepare import ImageOutcome, PrepareConfig, analyse_image, one_torch_thread

    config = PrepareConfig()
    with one_torch_thread():  # the numbers prepare would compute (it runs one thread per worker)
        detector = load_mtcnn("cpu", config.min_face_size, config.thresholds)
        for path in images:
            try:
                outcome = analyse_image(detector, path, config)
            except Exception as err:  # noqa: BLE001 - reported per image, see the docstring
                outcome = ImageOutcome(reason="error", detail=f"{type(err).__name__}: {err}")
            yield path, outcome


def _rejected_line(path: str, outcome) -> str:
    return f"{path}: rejected ({outcome.reason}" + (f": {outcome.detail}" if outcome.detail else "") + ")"


def _rejected_record(path: str, outcome) -> dict:
    return {"image": path, "status": "rejected", "reason": outcome.reason, "detail": outcome.detail}


def _fmt_box(box) -> str:
    return ",".join(f"{v:.1f}" for v in box)


def cmd_detect(args: argparse.Namespace) -> int:
    """Faces of each image: xyxy box, score and 5 landmarks (one line or one JSON object per image)."""
    rejected = 0
    for path, o in _outcomes(args.images):
        if o.reason and o.reason != "bad_landmarks":  # bad landmarks still are faces found
            rejected += 1
            print(json.dumps(_rejected_record(path, o)) if args.json else _rejected_line(path, o), flush=True)
            continue
        d = o.detections
        faces = [{"box": [round(float(v), 2) for v in d.boxes[k]], "score": round(float(d.scores[k]), 5),
                  "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in d.landmarks[k]]}
                 for k in range(len(d))]
        if args.json:
            print(json.dumps({"image": path, "status": "ok", "width": o.fields["width"],
                              "height": o.fields["height"], "detect_pass": o.fields["detect_pass"],
                              "subject": o.subject, "faces": faces}), flush=True)
            continue
        parts = [f"{'subject ' if k == o.subject else ''}box {_fmt_box(f['box'])} score {f['score']:.3f} "
                 f"landmarks {' '.join(f'{x:.1f},{y:.1f}' for x, y in f['landmarks'])}" for k, f in enumerate(faces)]
        print(f"{path}: {len(faces)} face{'s' if len(faces) != 1 else ''}: " + "; ".join(parts), flush=True)
    return EXIT_SOME_REJECTED if rejected else 0


def cmd_align(args: argparse.Namespace) -> int:
    """Write the aligned crop of each image's subject face as ``OUT/<image name>.png``."""
    from facelab.data.imageio import write_image

    out = Path(args.out)
    names = [Path(p).stem + ".png" for p in args.images]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise UsageError(f"several images would be written as {', '.join(clashes)} in {out}: align images with "
                         "different file names in separate runs")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    rejected = 0
    for (path, o), name in zip(_outcomes(args.images), names):
        if o.reason:
            rejected += 1
            print(json.dumps(_rejected_record(path, o)) if args.json else _rejected_line(path, o), flush=True)
            continue
        target = write_image(out / name, o.aligned)
        f = o.fields
        if args.json:
            print(json.dumps({"image": path, "status": "ok", "aligned": str(target), "score": round(f["score"], 5),
                              "align_rms": round(f["align_rms"], 3), "n_faces": f["n_faces"]}), flush=True)
        else:
            print(f"{path}: aligned -> {target} (score {f['score']:.3f}, landmark fit {f['align_rms']:.2f} px"
                  f"{', subject of ' + str(f['n_faces']) + ' faces' if f['n_faces'] > 1 else ''})", flush=True)
    return EXIT_SOME_REJECTED if rejected else 0


def _add_fetch_args(p: argparse.ArgumentParser, with_name: bool) -> None:
    if with_name:
        p.add_argument("name", help="dataset: lfw, cfp, widerface, aflw2000, rwmfd")
    p.add_argument("--from", dest="source", metavar="DIR",
                   help="use a local copy (the dataset folder, or a data root holding it) instead of downloading")
    p.add_argument("--copy", action="store_true", help="with --from: copy the files instead of linking the folder")
    p.add_argument("--dest", metavar="DIR", help="data root to put it in (default: $FACELAB_CACHE/data)")
    p.add_argument("--no-progress", action="store_true")


def _add_prepare_args(p: argparse.ArgumentParser, with_datasets: bool) -> None:
    p.add_argument("--profile", default="small", choices=PROFILES, help="which subset to prepare (default small)")
    if with_datasets:
        p.add_argument("--datasets", metavar="A,B", help=f"comma-separated subset of {','.join(PREPARABLE)} "
                                                        "(default: all that are found)")
    p.add_argument("--workers", type=int, default=0, help="worker processes (default: every core)")
    p.add_argument("--data-root", metavar="DIR", help="data root (default: $FACELAB_DATA, then the cache)")
    p.add_argument("--no-progress", action="store_true")


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``data status|fetch|prepare|detect|align`` to the facelab command line."""
    data = sub.add_parser("data", help="datasets: status, fetch, prepare; faces of image files: detect, align")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: data.print_help() or 0)

    p = dsub.add_parser("status", help="datasets found under the data root, their counts and what is prepared")
    p.add_argument("--data-root", metavar="DIR")
    p.add_argument("--json", action="store_true", help="print the full status as JSON")
    p.set_defaults(func=cmd_status)

    p = dsub.add_parser("fetch", help="download a dataset (public ones) or take a local copy (--from DIR)")
    _add_fetch_args(p, with_name=True)
    p.set_defaults(func=cmd_fetch)

    p = dsub.add_parser("prepare", help="detect, align, crop and pack the images a profile uses")
    _add_prepare_args(p, with_datasets=True)
    p.set_defaults(func=cmd_prepare)

    status = ("Exit status: 0 when every image was processed, 1 when some were rejected (each rejected "
              "image gets a line 'rejected (<reason>: ...)', reasons as in `data prepare`: missing, unreadable, "
              "truncated, too_small, too_large, no_face, ...), 2 on a usage error.")
    p = dsub.add_parser("detect", help="faces in image files: boxes, scores, 5 landmarks",
                        description="Detect faces with MTCNN as `data prepare` does (same thresholds, retry and "
                                    "subject choice) and print, per image, every face's xyxy box in pixels, "
                                    "score and 5 landmarks (left eye, right eye, nose, mouth corners). " + status)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.set_defaults(func=cmd_detect)

    p = dsub.add_parser("align", help="112x112 aligned crops of image files' subject faces",
                        description="Write the 112x112 aligned crop of each image's subject face (the largest, "
                                    "most central one) as OUT/<image name>.png, exactly as `data prepare` makes "
                                    "them. " + status)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the crops (created if missing)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.set_defaults(func=cmd_align)

    p = dsub.add_parser("teachers", help="teacher embeddings of every prepared crop and its mirror (cached)",
                        description="Embed every accepted crop of the prepared sets (and its horizontal flip) with "
                                    "a packaged teacher and keep the embeddings in the user cache, where the "
                                    "distillation experiments read them (facelab.teachers.targets). Resumable: an "
                                    "interrupted run continues where it stopped; finished rows are never redone.")
    p.add_argument("--profile", default="small", choices=PROFILES)
    p.add_argument("--teacher", default="sface", help="sface (default) or dlib")
    p.add_argument("--datasets", default="lfw,cfp", metavar="A,B", help="prepared datasets (default lfw,cfp)")
    p.add_argument("--threads", type=int, default=0, help="teacher threads (default: every core)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_teachers)


def cmd_teachers(args: argparse.Namespace) -> int:
    import os
    import time

    from facelab.config import check_profile
    from facelab.data.manifest import load_prepared
    from facelab.teachers import load_teacher
    from facelab.teachers.targets import cached_rows, teacher_targets

    check_profile(args.profile)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in ("lfw", "cfp")]
    if unknown:
        raise UsageError(f"teacher targets are made of aligned face crops: choose from lfw, cfp (not {', '.join(unknown)})")
    kwargs = {"threads": args.threads or os.cpu_count() or 1} if args.teacher == "sface" else {}
    teacher = load_teacher(args.teacher, **kwargs)
    for name in names:
        prepared = load_prepared(name, args.profile)
        before, t0 = cached_rows(prepared, teacher), time.time()
        teacher_targets(prepared, teacher, progress=not args.no_progress)
        seconds = time.time() - t0
        done = len(prepared) - before
        rate = f", {1e3 * seconds / (2 * done):.1f} ms per crop" if done else ""
        print(f"{name} ({args.profile}): {teacher.name} targets of {len(prepared):,} crops and their mirrors; "
              f"{done:,} computed now, {before:,} were cached ({seconds:.0f} s{rate})")
    return 0


def script_main(name: str, argv: list[str] | None = None) -> int:
    """Entry point of ``data_scripts/<name>.py fetch|prepare`` (``name`` may be ``all``)."""
    parser = argparse.ArgumentParser(prog=f"python data_scripts/{name}.py",
                                     description=f"fetch or prepare {name if name != 'all' else 'every dataset'}")
    sub = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    _add_fetch_args(sub.add_parser("fetch", help="download (public datasets) or take a local copy with --from DIR"),
                    with_name=False)
    _add_prepare_args(sub.add_parser("prepare", help="detect, align, crop and pack"), with_datasets=False)
    args = parser.parse_args(argv)
    rc = 0
    if args.step == "prepare":
        args.datasets = ",".join(PREPARABLE) if name == "all" else name
        return run_guarded(cmd_prepare, args)
    for n in PREPARABLE if name == "all" else (name,):
        rc = max(rc, run_guarded(cmd_fetch, argparse.Namespace(**{**vars(args), "name": n})))
    return rc
