"""``python -m facelab eval ...``: metrics of stored scores from the command line.

``eval verification --scores FILE.csv`` reads a CSV with a header and the columns
``score`` (similarity, higher = same person), ``label`` (1 genuine, 0 impostor) and
``fold`` (integer fold id; extra columns are ignored) and prints a JSON object with the
k-fold accuracy (mean, population and sample SD, standard error), EER, ROC AUC and TAR at
each FAR target, with the conventions used. NaN (a FAR target below 1/N_impostor) is
written as null with ``measurable: false``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np

from facelab.errors import DataError, MissingDataError

REQUIRED_COLUMNS = ("score", "label", "fold")


def read_scores_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [N] float, labels [N] int, folds [N] int) from a score CSV; ValueError naming
    the file and line on anything malformed (a :class:`~facelab.errors.DataError`, a ValueError)."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path}: no such file (expected a CSV with columns score,label,fold)")
    scores, labels, folds = [], [], []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            header = [c.strip() for c in (reader.fieldnames or [])]
            if not header:
                raise DataError(f"{path}: the file is empty (expected a header line score,label,fold)")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DataError(f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                                 f"score,label,fold (found: {','.join(header)})")
            reader.fieldnames = header
            for row in reader:
                line = reader.line_num
                values = {c: (row.get(c) or "").strip() for c in REQUIRED_COLUMNS}
                try:
                    s = float(values["score"])
                except ValueError:
                    raise DataError(f"{path} line {line}: score {values['score']!r} is not a number") from None
                if not math.isfinite(s):
                    raise DataError(f"{path} line {line}: score {values['score']!r} is not finite")
                if values["label"] not in ("0", "1", "0.0", "1.0"):
                    raise DataError(f"{path} line {line}: label {values['label']!r} must be 1 (genuine) "
                                     "or 0 (impostor)")
                try:
                    k = int(values["fold"])
                except ValueError:
                    raise DataError(f"{path} line {line}: fold {values['fold']!r} is not an integer") from None
                scores.append(s)
                labels.append(int(float(values["label"])))
                folds.append(k)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err})") from None
    if not scores:
        raise DataError(f"{path}: no data rows after the header")
    return np.array(scores), np.array(labels), np.array(folds)


def _far_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--far takes comma-separated numbers like 0.001,0.01 (got {text!r})") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"--far values must lie in (0, 1] (got {text!r})")
    return values


def _cmd_verification(args: argparse.Namespace) -> int:
    from facelab.eval.verification import verification_report

    scores, labels, folds = read_scores_csv(args.scores)
    n_gen, n_imp = int(labels.sum()), int((labels == 0).sum())
    if n_gen == 0 or n_imp == 0:
        raise DataError(f"{args.scores}: need both genuine and impostor pairs (found {n_gen} genuine, "
                         f"{n_imp} impostor)")
    if np.unique(folds).size < 2:
        raise DataError(f"{args.scores}: k-fold accuracy needs at least 2 distinct fold ids (found "
                         f"{np.unique(folds).size})")
    report = verification_report(scores, labels, folds, far_targets=args.far, tar_method=args.tar_method,
                                 eer_method=args.eer_method)
    out = {"scores_file": str(args.scores), **report.as_dict()}
    text = json.dumps(out, indent=1, allow_nan=False)
    if args.out:
        from facelab.fileio import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    print(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from facelab.eval.verification import DEFAULT_FAR_TARGETS, EER_METHODS, TAR_METHODS

    p = sub.add_parser("eval", help="compute metrics from stored scores",
                       description="Compute evaluation metrics from stored per-pair scores.")
    esub = p.add_subparsers(dest="eval_command", metavar="METRIC", required=True)
    v = esub.add_parser(
        "verification", help="k-fold accuracy, EER and TAR@FAR of scored pairs (JSON)",
        description="Verification metrics of scored pairs. The CSV has a header and the columns score "
        "(similarity: higher = same person), label (1 genuine, 0 impostor) and fold (integer id).",
    )
    v.add_argument("--scores", required=True, metavar="FILE.csv", help="CSV with columns score,label,fold")
    v.add_argument("--far", type=_far_list, default=list(DEFAULT_FAR_TARGETS),
                   help="comma-separated FAR targets (default: 0.001,0.01,0.1)")
    v.add_argument("--tar-method", choices=TAR_METHODS, default="nearest_below",
                   help="TAR@FAR convention (default: nearest ROC point with FAR <= target)")
    v.add_argument("--eer-method", choices=EER_METHODS, default="interpolate",
                   help="EER convention (default: FAR = FRR interpolated between neighbouring ROC points)")
    v.add_argument("--out", default=None, help="also write the JSON to this file")
    v.set_defaults(func=_cmd_verification)
