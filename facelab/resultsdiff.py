"""Are two runs the same? ``python -m facelab results diff DIR_A DIR_B``.

Compares every result JSON (:class:`facelab.results.Result`, found as ``**/*.json`` with a
``metrics`` key) of two results folders, matched by their path below the folder. Two results are
the same when their ``experiment``, ``profile``, ``seed``, ``config``, ``metrics`` and ``arrays``
are *exactly* equal (floats bit for bit; NaN equals NaN), except for timings:

* ``provenance`` is not compared (start/finish times, wall time, host, git state);
* a metric is a timing, and is skipped with everything below it, when its key is one of
  :data:`TIMING_KEYS` or ends with one of :data:`TIMING_SUFFIXES` (``seconds``,
  ``train_seconds``, ``images_per_s``, ``wall_time_s``, ``median_ms``, ``latency``, ...).

It prints one line per difference (``<file>: metrics/eer/cosine/t1_ff: 0.39375 != 0.39425``) and
exits 1 when there is any, when a file is in one folder only (unless ``--common-only``), or when
there is nothing to compare (a folder holds no result); 0 otherwise. ``make reproducibility``
uses it on two runs of the same experiment.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from facelab.errors import UsageError

#: Keys whose values are timings (compared never, nor anything below them).
TIMING_KEYS = frozenset({"seconds", "minutes", "latency", "floor_ratio"})
#: Key endings that mark a timing: durations (``_seconds``, ``_s``, ``_ms``), rates (``per_s``,
#: covered by ``_s``) and the measured matmul throughput of latency results (``_gflops``).
TIMING_SUFFIXES = ("_seconds", "_s", "_ms", "_gflops")
#: Top-level fields of a result that are compared.
COMPARED_FIELDS = ("experiment", "profile", "seed", "config", "metrics", "arrays")


def is_timing_key(key: str, extra: frozenset[str] = frozenset()) -> bool:
    """True when ``key`` names a timing (see the module docstring) or is one of ``extra``."""
    return key in TIMING_KEYS or key in extra or key.endswith(TIMING_SUFFIXES)


def find_results(folder: str | Path) -> dict[str, dict]:
    """``{path relative to folder: parsed JSON}`` of the result files under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of results")
    out = {}
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(f"{path} is not valid JSON ({err}); delete it or rerun its experiment") from None
        if isinstance(data, dict) and "metrics" in data:
            out[path.relative_to(folder).as_posix()] = data
    return out


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    # bool is an int in Python: True == 1 must still count as a difference.
    return type(a) is type(b) and a == b


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def diff_values(a: Any, b: Any, path: str = "", ignore: frozenset[str] = frozenset()) -> Iterator[str]:
    """Lines ``path: a != b`` for every place where ``a`` and ``b`` (parsed JSON) differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if is_timing_key(str(key), ignore):
                continue
            sub = f"{path}/{key}" if path else str(key)
            if key not in a:
                yield f"{sub}: only in B"
            elif key not in b:
                yield f"{sub}: only in A"
            else:
                yield from diff_values(a[key], b[key], sub, ignore)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items != {len(b)} items"
            return
        for i, (x, y) in enumerate(zip(a, b)):
            yield from diff_values(x, y, f"{path}[{i}]", ignore)
    elif not _same_scalar(a, b):
        yield f"{path}: {_short(a)} != {_short(b)}"


def diff_results(a: dict, b: dict, ignore: frozenset[str] = frozenset()) -> list[str]:
    """Differences between two parsed results in :data:`COMPARED_FIELDS` (timings skipped)."""
    return [line for field in COMPARED_FIELDS
            for line in diff_values({field: a.get(field)}, {field: b.get(field)}, "", ignore)]


def diff_folders(dir_a: str | Path, dir_b: str | Path, *, common_only: bool = False,
                 ignore: frozenset[str] = frozenset()) -> tuple[list[str], int]:
    """(difference lines, number of results compared) between two results folders."""
    ra, rb = find_results(dir_a), find_results(dir_b)
    lines = []
    if not ra or not rb:
        empty = [str(d) for d, r in ((dir_a, ra), (dir_b, rb)) if not r]
        lines.append(f"no result JSON under {' and '.join(empty)}: nothing to compare")
    if not common_only:
        lines += [f"{name}: only in {dir_a}" for name in sorted(set(ra) - set(rb))]
        lines += [f"{name}: only in {dir_b}" for name in sorted(set(rb) - set(ra))]
    common = sorted(set(ra) & set(rb))
    if ra and rb and not common:
        lines.append(f"no result is in both {dir_a} and {dir_b}: nothing to compare")
    for name in common:
        lines += [f"{name}: {line}" for line in diff_results(ra[name], rb[name], ignore)]
    return lines, len(common)


def _cmd_diff(args: argparse.Namespace) -> int:
    lines, compared = diff_folders(args.dir_a, args.dir_b, common_only=args.common_only,
                                   ignore=frozenset(args.ignore or ()))
    for line in lines:
        print(line)
    if lines:
        print(f"not identical: {len(lines)} difference(s); {compared} result(s) compared")
        return 1
    print(f"results identical: {compared} result(s) compared (timings and provenance ignored)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``results diff`` to the facelab command line."""
    p = sub.add_parser("results", help="compare results folders (reproducibility)")
    rsub = p.add_subparsers(dest="results_command", metavar="ACTION", required=True)
    d = rsub.add_parser(
        "diff", help="exact differences between the results of two folders",
        description="Compare the result JSON files present in both folders: experiment, profile, seed, config, "
                    "metrics and arrays must be exactly equal. Not compared: provenance, and timings (keys "
                    f"{', '.join(sorted(TIMING_KEYS))} or ending in {', '.join(TIMING_SUFFIXES)}). Exit status 0 "
                    "when identical, 1 on any difference, on a file in one folder only (unless --common-only) "
                    "or when a folder holds no result.")
    d.add_argument("dir_a", metavar="DIR_A")
    d.add_argument("dir_b", metavar="DIR_B")
    d.add_argument("--common-only", action="store_true", help="do not count files present in one folder only")
    d.add_argument("--ignore", action="append", metavar="KEY", help="also skip this key (repeatable)")
    d.set_defaults(func=_cmd_diff)
