"""Paper value | ours | difference | note: the one renderer of the book's comparison tables.

A comparison table is built from two sources only:

1. **Paper values**, transcribed as data in ``facelab/paper_values/<paper>.json`` (one file per
   paper, plus ``reference_dlib.json`` for the packaged reference recognizer);
2. **results**: the JSON results that experiments and the ``bench``/``model summary``
   commands write (:mod:`facelab.results`), found under a results folder.

Nothing "ours" is typed by hand: it is computed from a stored result by a declared metric
function. When no result exists, the cell says ``not run`` and why (and which command
produces it); when the book does not reproduce a number at all, the binding says why.

Paper-values file
-----------------
::

    {"paper": "001",                        # equals the file stem
     "title": "...", "citation": "...", "source": "where the numbers were transcribed from",
     "notes": ["transcription remarks"],
     "tables": {"table1": {"title": "Table 1", "caption": "...", "notes": "...",
                           "cells": [CELL, ...]}, ...},
     "bindings": [BINDING, ...]}

    CELL = {"key": "table1.squeezefaceposenet.parameters",   # unique, starts with the table id
            "row": "SqueezeFacePoseNet", "column": "Parameters",
            "value": 1240000,          # number in `unit`, or null when the cell holds no number
            "unit": "parameters", "meaning": "what the number is (dataset, protocol, model)",
            "printed": "1.24M",        # the cell exactly as the paper prints it
            # optional: "sd" (the ± part, same unit), "formula", "note", "source"}

How ours maps to a paper cell (the mapping)
-------------------------------------------
A ``BINDING`` connects one cell ``key`` to a result and a metric function::

    {"cell": "dlib_docs.lfw_accuracy.no_jitter",
     "experiment": "getting_started.lfw_dlib",      # result file <experiment>--<profile>.json
     "metric": "lfw_kfold_accuracy", "args": {},      # a function in METRICS, with keyword args
     "note": "what differs from the paper's setting",
     "command": "how to produce the result"}          # required for bench results (latency.*, complexity.*)

    {"cell": "table4.nan.tar_far1e-3", "not_reproduced": "IJB-A is not available"}

Declared metric functions: ``value`` (a number stored at a dotted path of ``result.metrics``,
with its unit), ``lfw_kfold_accuracy`` and ``lfw_kfold_threshold`` (recomputed from the stored
per-pair ``score``/``label``/``fold`` arrays with :func:`facelab.eval.verification.kfold_accuracy`),
``latency_median`` and ``throughput`` (a run of a latency result, by runtime and batch).
Cells without a binding show the paper's number alone (status ``no binding``); a chapter adds
bindings for the cells it reproduces.

The result is looked up as ``<results_dir>/*/<experiment>--<profile>.json`` for the first
profile present in ``PROFILE_PREFERENCE`` (or the one asked for). The metric function gets the
:class:`~facelab.results.Result` and the args and returns :class:`Ours` (value, unit, optional
SD, a detail string); the value is converted to the cell's unit (``%`` <-> fraction, ms <-> s,
bytes <-> MB (10^6) <-> MiB, ...; incompatible units are an error, never a silent guess), and
the difference is ``ours - paper`` in the paper's unit (percentage points for ``%``).
New metric functions are declared with :func:`register_metric`.

The CLI: ``python -m facelab tables PAPER [--table ID] [--results-dir DIR] [--format markdown|html|csv]``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import DataError, UnknownNameError
from facelab.paths import results_root
from facelab.results import Result, load_result

#: Which stored result to use when several profiles exist and none is asked for.
PROFILE_PREFERENCE = ("full", "small", "smoke")
CELL_KEYS = {"key", "row", "column", "value", "unit", "meaning", "printed"}
CELL_OPTIONAL = {"sd", "formula", "note", "source"}
TOP_KEYS = {"paper", "title", "citation", "source", "notes", "tables", "bindings"}

#: unit -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "%": ("fraction", 0.01), "fraction": ("fraction", 1.0),
    "s": ("time", 1.0), "ms": ("time", 1e-3),
    "bytes": ("bytes", 1.0), "MB": ("bytes", 1e6), "MiB": ("bytes", 2.0**20),
    "frames/s": ("rate", 1.0), "images/s": ("rate", 1.0),
}

TABLE_COLUMNS = ["table", "key", "row", "column", "unit", "paper", "paper_sd", "paper_printed", "ours", "ours_sd",
                 "difference", "status", "note", "source"]


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``; ValueError if they measure different things."""
    if from_unit == to_unit:
        return value
    a, b = UNITS.get(from_unit), UNITS.get(to_unit)
    if a is None or b is None or a[0] != b[0]:
        raise ValueError(f"cannot convert {from_unit!r} to {to_unit!r}: the binding's metric gives a different "
                         "quantity than the paper cell holds")
    return value * a[1] / b[1]


# ----------------------------------------------------------------------------- paper values


def paper_values_dir():
    return resources.files("facelab") / "paper_values"


def list_papers() -> list[str]:
    """Stems of the paper-values files ('000', ..., 'reference_dlib')."""
    return sorted(p.name[:-5] for p in paper_values_dir().iterdir() if p.name.endswith(".json"))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_paper_values(data: dict, stem: str | None = None) -> list[str]:
    """Problems with a paper-values mapping (empty list: valid). See the module docstring for the schema."""
    errors: list[str] = []
    if not isinstance(data, dict):
        return ["the file must hold a JSON object"]
    missing = {"paper", "title", "citation", "source", "tables", "bindings"} - set(data)
    if missing:
        errors.append(f"missing top-level keys: {', '.join(sorted(missing))}")
    extra = set(data) - TOP_KEYS
    if extra:
        errors.append(f"unknown top-level keys: {', '.join(sorted(extra))}")
    if stem is not None and data.get("paper") != stem:
        errors.append(f"'paper' is {data.get('paper')!r} but the file is {stem}.json")
    tables = data.get("tables")
    if not isinstance(tables, dict) or not tables:
        return errors + ["'tables' must be a non-empty object"]
    keys: set[str] = set()
    for tid, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("cells"), list) or not table["cells"]:
            errors.append(f"table {tid}: needs a non-empty 'cells' list")
            continue
        for field in ("title", "caption"):
            if not isinstance(table.get(field), str) or not table[field].strip():
                errors.append(f"table {tid}: needs a '{field}' string")
        for i, cell in enumerate(table["cells"]):
            where = f"table {tid} cell {i} ({cell.get('key', '?') if isinstance(cell, dict) else '?'})"
            if not isinstance(cell, dict):
                errors.append(f"{where}: not an object")
                continue
            if CELL_KEYS - set(cell):
                errors.append(f"{where}: missing {', '.join(sorted(CELL_KEYS - set(cell)))}")
            if set(cell) - CELL_KEYS - CELL_OPTIONAL:
                errors.append(f"{where}: unknown keys {', '.join(sorted(set(cell) - CELL_KEYS - CELL_OPTIONAL))}")
            key = cell.get("key")
            if not isinstance(key, str) or not key.startswith(f"{tid}."):
                errors.append(f"{where}: key must start with '{tid}.'")
            elif key in keys:
                errors.append(f"{where}: duplicate key")
            else:
                keys.add(key)
            for field in ("row", "column", "unit", "meaning", "printed"):
                if field in cell and (not isinstance(cell[field], str) or not cell[field].strip()):
                    errors.append(f"{where}: '{field}' must be a non-empty string")
            if "value" in cell and cell["value"] is not None and not _is_number(cell["value"]):
                errors.append(f"{where}: 'value' must be a finite number or null")
            if cell.get("sd") is not None and not _is_number(cell["sd"]):
                errors.append(f"{where}: 'sd' must be a number")
    bindings = data.get("bindings")
    if not isinstance(bindings, list):
        errors.append("'bindings' must be a list")
        bindings = []
    bound: set[str] = set()
    for i, b in enumerate(bindings):
        where = f"binding {i} ({b.get('cell', '?') if isinstance(b, dict) else '?'})"
        if not isinstance(b, dict) or "cell" not in b:
            errors.append(f"{where}: needs a 'cell'")
            continue
        if b["cell"] not in keys:
            errors.append(f"{where}: no cell with that key")
        if b["cell"] in bound:
            errors.append(f"{where}: cell bound twice")
        bound.add(b["cell"])
        if "not_reproduced" in b:
            if not isinstance(b["not_reproduced"], str) or not b["not_reproduced"].strip() or "experiment" in b:
                errors.append(f"{where}: 'not_reproduced' must be a reason string, without an experiment")
            continue
        if not isinstance(b.get("experiment"), str) or not isinstance(b.get("metric"), str):
            errors.append(f"{where}: needs 'experiment' and 'metric' (or 'not_reproduced')")
        elif b["metric"] not in METRICS:
            errors.append(f"{where}: unknown metric {b['metric']!r}; declared: {', '.join(sorted(METRICS))}")
        if not isinstance(b.get("args", {}), dict):
            errors.append(f"{where}: 'args' must be an object")
        if str(b.get("experiment", "")).startswith(("latency.", "complexity.")) and not b.get("command"):
            errors.append(f"{where}: results of the bench commands are not experiments: give the 'command' "
                          "that produces it")
        if set(b) - {"cell", "experiment", "metric", "args", "note", "command"}:
            errors.append(f"{where}: unknown keys {', '.join(sorted(set(b) - {'cell', 'experiment', 'metric', 'args', 'note', 'command'}))}")
    return errors


def load_paper_values(paper: str) -> dict:
    """The validated paper-values mapping of ``paper`` (a file stem, see :func:`list_papers`)."""
    papers = list_papers()
    if paper not in papers:
        raise UnknownNameError(f"no paper values for {paper!r}; available: {', '.join(papers)}")
    data = json.loads((paper_values_dir() / f"{paper}.json").read_text())
    errors = validate_paper_values(data, paper)
    if errors:
        raise ValueError(f"facelab/paper_values/{paper}.json is malformed: " + "; ".join(errors))
    return data


def cells(paper: str) -> dict[str, dict]:
    """Every cell of ``paper`` by key, with its table id added as ``table``."""
    data = load_paper_values(paper)
    return {c["key"]: dict(c, table=tid) for tid, t in data["tables"].items() for c in t["cells"]}


# ----------------------------------------------------------------------------- metric functions


@dataclass(frozen=True)
class Ours:
    """A number computed from a result: ``value`` in ``unit``, optional ``sd``, a ``detail`` for the note."""

    value: float
    unit: str
    sd: float | None = None
    detail: str = ""


MetricFn = Callable[..., Ours]
METRICS: dict[str, MetricFn] = {}


def register_metric(name: str) -> Callable[[MetricFn], MetricFn]:
    """Declare a metric function ``fn(result, **args) -> Ours`` usable in bindings as ``name``."""
    def deco(fn: MetricFn) -> MetricFn:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is declared twice")
        METRICS[name] = fn
        return fn
    return deco


def _get_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, list):
            obj = obj[int(part)]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            raise KeyError(f"the result has no metric {path!r} (stopped at {part!r})")
    return obj


@register_metric("value")
def _metric_value(result: Result, *, path: str, unit: str, sd_path: str | None = None) -> Ours:
    """A number stored in ``result.metrics`` at the dotted ``path`` (list items by index), in ``unit``."""
    value = _get_path(result.metrics, path)
    if not _is_number(value):
        raise ValueError(f"metric {path!r} of {result.experiment} is {value!r}, not a number")
    sd = _get_path(result.metrics, sd_path) if sd_path else None
    return Ours(float(value), unit, None if sd is None else float(sd))


@register_metric("lfw_kfold_accuracy")
def _metric_lfw_accuracy(result: Result) -> Ours:
    """LFW-style k-fold accuracy from the stored per-pair ``score``/``label``/``fold`` arrays
    (facelab.eval.verification.kfold_accuracy: threshold chosen on the other folds; SD over folds, ddof=0)."""
    from facelab.eval.verification import kfold_accuracy

    arrays = result.arrays
    missing = [k for k in ("score", "label", "fold") if k not in arrays]
    if missing:
        raise KeyError(f"{result.experiment} stores no {', '.join(missing)} array(s): cannot compute k-fold accuracy")
    acc = kfold_accuracy(np.asarray(arrays["score"]), np.asarray(arrays["label"]), np.asarray(arrays["fold"]))
    n, k = len(arrays["score"]), len(np.unique(arrays["fold"]))
    return Ours(acc.mean, "fraction", acc.std, f"{k}-fold accuracy over {n} pairs, ± = SD over folds")


@register_metric("lfw_kfold_threshold")
def _metric_lfw_threshold(result: Result, *, scale: float = 1.0) -> Ours:
    """Mean (± SD over folds) of the k-fold thresholds times ``scale`` (-1 turns negated-distance
    score thresholds back into distances), in the unit 'distance'."""
    from facelab.eval.verification import kfold_accuracy

    a = result.arrays
    acc = kfold_accuracy(np.asarray(a["score"]), np.asarray(a["label"]), np.asarray(a["fold"]))
    t = np.asarray(acc.thresholds, float) * scale
    return Ours(float(t.mean()), "distance", float(t.std()), f"mean of {len(t)} per-fold thresholds")


def _latency_run(result: Result, runtime: str, batch: int) -> dict:
    for rec in result.metrics.get("runs", []):
        if rec["runtime"] == runtime and rec["batch"] == batch:
            return rec
    have = ", ".join(f"{r['runtime']} batch {r['batch']}" for r in result.metrics.get("runs", [])) or "none"
    raise KeyError(f"{result.experiment} has no {runtime} run at batch {batch} (it has: {have})")


def _latency_detail(result: Result, rec: dict) -> str:
    floor = f", {rec['floor_ratio']:.2f}× its FLOP floor" if rec.get("floor_ratio") else ""
    where = result.metrics.get("device_label") or result.metrics.get("device", "?")
    return (f"{rec['runtime']} {rec['runtime_version']}, batch {rec['batch']}, {rec['threads']} thread(s) on "
            f"{result.metrics.get('cpu', '?')} ({where}); median of {rec['repeats']}, p10–p90 "
            f"{rec['p10_ms']:.3g}–{rec['p90_ms']:.3g} ms{floor}; model only, no pre-/post-processing")


@register_metric("latency_median")
def _metric_latency(result: Result, *, runtime: str, batch: int = 1, per_image: bool = False) -> Ours:
    """Median latency (ms per call, or per image with ``per_image``) of a latency result's run."""
    rec = _latency_run(result, runtime, batch)
    value = rec["per_image_median_ms"] if per_image else rec["median_ms"]
    return Ours(value, "ms", None, _latency_detail(result, rec))


@register_metric("throughput")
def _metric_throughput(result: Result, *, runtime: str, batch: int = 1) -> Ours:
    """Images per second (batch / median time) of a latency result's run."""
    rec = _latency_run(result, runtime, batch)
    return Ours(rec["images_per_s"], "images/s", None, _latency_detail(result, rec))


# ----------------------------------------------------------------------------- finding results


def find_result(experiment: str, results_dir: str | Path | None = None,
                profile: str | None = None) -> tuple[Path | None, str]:
    """Path of the stored result of ``experiment`` (first profile in PROFILE_PREFERENCE, or ``profile``).

    Returns ``(None, reason)`` when there is none.
    """
    root = results_root(results_dir)
    profiles = (profile,) if profile else PROFILE_PREFERENCE
    for p in profiles:
        hits = sorted(root.glob(f"*/{experiment}--{p}.json"))
        if len(hits) > 1:
            raise DataError(f"{experiment}--{p}.json is in several chapter folders under {root}: "
                             + ", ".join(str(h.parent.name) for h in hits) + "; keep one")
        if hits:
            return hits[0], ""
    return None, f"no result {experiment}--{{{','.join(profiles)}}}.json under {root}"


def _command_for(binding: dict, profile: str | None) -> str:
    """The command that produces a binding's result: its ``command``, else ``facelab run``."""
    return binding.get("command") or f"python -m facelab run {binding['experiment']} --profile {profile or 'small'}"


def _stale_reasons(result: Result) -> list[str]:
    """Why a registered experiment's stored result no longer matches its code or configuration
    (empty for fresh results and for results of the bench commands, which are not experiments)."""
    from facelab.experiments import list_experiments, stale_reasons

    return stale_reasons(result) if result.experiment in list_experiments() else []


# ----------------------------------------------------------------------------- rendering


def _decimals(printed: str) -> int:
    m = re.search(r"\d+(?:\.(\d+))?", printed)
    return len(m.group(1)) if m and m.group(1) else 0


def _suffix(printed: str) -> tuple[str, float]:
    m = re.match(r"\s*[-+]?\d+(?:\.\d+)?\s*([KMG])(?![A-Za-z])", printed)
    return (m.group(1), {"K": 1e3, "M": 1e6, "G": 1e9}[m.group(1)]) if m else ("", 1.0)


def format_like(value: float | None, printed: str, *, signed: bool = False, min_digits: int = 3) -> str:
    """``value`` with the paper's decimals and magnitude suffix (K/M/G) of ``printed``, with more
    decimals when needed to show ``min_digits`` significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    suffix, scale = _suffix(printed)
    v = value / scale
    d = _decimals(printed)
    while d < 8 and v != 0 and abs(v) < 10 ** (min_digits - 1 - d):
        d += 1
    return f"{v:+.{d}f}{suffix}" if signed else f"{v:.{d}f}{suffix}"


def compare(paper: str, *, results_dir: str | Path | None = None, profile: str | None = None,
            tables: Sequence[str] | None = None, only_bound: bool = False):
    """The comparison DataFrame of ``paper``: one row per cell (columns ``TABLE_COLUMNS``).

    ``paper``/``paper_sd``/``ours``/``ours_sd``/``difference`` are numbers in the cell's unit
    (NaN when absent); ``status`` is 'ok', 'stale', 'not run', 'not reproduced', 'no binding'
    or 'paper has no number'; ``note`` says what differs and why a value is missing;
    ``source`` names the result file, its profile and commit.
    """
    import pandas as pd

    data = load_paper_values(paper)
    unknown = [t for t in (tables or []) if t not in data["tables"]]
    if unknown:
        raise UnknownNameError(f"paper {paper} has no table {', '.join(unknown)}; tables: {', '.join(data['tables'])}")
    bindings = {b["cell"]: b for b in data["bindings"]}
    loaded: dict[str, tuple[Result | None, Path | None, str]] = {}
    rows = []
    for tid, table in data["tables"].items():
        if tables and tid not in tables:
            continue
        for cell in table["cells"]:
            b = bindings.get(cell["key"])
            if only_bound and (b is None or "not_reproduced" in b):
                continue
            row = {"table": tid, "key": cell["key"], "row": cell["row"], "column": cell["column"],
                   "unit": cell["unit"], "paper": cell["value"] if cell["value"] is not None else math.nan,
                   "paper_sd": cell.get("sd", math.nan) if cell.get("sd") is not None else math.nan,
                   "paper_printed": cell["printed"], "ours": math.nan, "ours_sd": math.nan,
                   "difference": math.nan, "status": "", "note": cell.get("note", ""), "source": ""}
            notes = [row["note"]] if row["note"] else []
            if b is None:
                row["status"] = "no binding"
            elif "not_reproduced" in b:
                row["status"] = "not reproduced"
                notes.append(b["not_reproduced"])
            else:
                exp = b["experiment"]
                if exp not in loaded:
                    path, reason = find_result(exp, results_dir, profile)
                    loaded[exp] = (load_result(path), path, "") if path else (None, None, reason)
                result, path, reason = loaded[exp]
                if b.get("note"):
                    notes.append(b["note"])
                if result is None:
                    row["status"] = "not run"
                    notes.append(f"not run: {reason} (produce it with: {_command_for(b, profile)})")
                else:
                    ours = METRICS[b["metric"]](result, **b.get("args", {}))
                    row["ours"] = convert(ours.value, ours.unit, cell["unit"])
                    if ours.sd is not None:
                        row["ours_sd"] = convert(ours.sd, ours.unit, cell["unit"])
                    if cell["value"] is not None:
                        row["difference"] = row["ours"] - cell["value"]
                    stale = _stale_reasons(result)
                    row["status"] = "stale" if stale else "ok"
                    if ours.detail:
                        notes.append(f"computed: {ours.detail}")
                    if stale:
                        notes.append("STALE: " + "; ".join(stale))
                    commit = (result.provenance.get("git_commit") or "unknown")[:10]
                    row["source"] = f"{path.parent.name}/{path.name} (profile {result.profile}, commit {commit})"
            if cell["value"] is None and b is None:
                row["status"] = "paper has no number"
            row["note"] = "; ".join(n for n in notes if n)
            rows.append(row)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def display_frame(df):
    """Strings for reading: Table | Row | Column | Paper | Ours | Ours − paper | Unit | Note."""
    import pandas as pd

    out = []
    for r in df.itertuples(index=False):
        printed = r.paper_printed
        if math.isnan(r.ours):
            ours = {"not reproduced": "not reproduced", "not run": "not run"}.get(r.status, "—")
        else:
            ours = format_like(r.ours, printed)
            if not math.isnan(r.ours_sd):
                ours += f" ± {format_like(r.ours_sd, printed, min_digits=2)}"
        diff = "" if math.isnan(r.difference) else format_like(r.difference, printed, signed=True, min_digits=2)
        note = r.note + (f" [{r.source}]" if r.source else "")
        out.append({"Table": r.table, "Row": r.row, "Column": r.column, "Paper": printed, "Ours": ours,
                    "Ours − paper": diff, "Unit": r.unit, "Note": note})
    return pd.DataFrame(out, columns=["Table", "Row", "Column", "Paper", "Ours", "Ours − paper", "Unit", "Note"])


def to_markdown(df) -> str:
    """A pipe table of ``df`` (any DataFrame; cells as strings, ``|`` escaped)."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_html(df) -> str:
    return df.to_html(index=False, escape=True, border=0, classes="facelab-comparison")


def render(paper: str, *, fmt: str = "markdown", **kwargs: Any) -> str:
    """The comparison of ``paper`` as Markdown, HTML or CSV (``kwargs`` as for :func:`compare`)."""
    df = compare(paper, **kwargs)
    if fmt == "csv":
        return df.to_csv(index=False)
    shown = display_frame(df)
    if fmt == "markdown":
        return to_markdown(shown)
    if fmt == "html":
        return to_html(shown)
    raise ValueError(f"unknown format {fmt!r}: choose markdown, html or csv")


def lookup(paper: str, key: str, **kwargs: Any) -> dict:
    """One compared cell as a dict (for numbers in prose, e.g. with ``glue``)."""
    table = key.split(".", 1)[0]
    df = compare(paper, tables=[table], **kwargs)
    hit = df[df["key"] == key]
    if hit.empty:
        raise KeyError(f"paper {paper} has no cell {key!r}")
    return hit.iloc[0].to_dict()


# ----------------------------------------------------------------------------- command line


def _cmd_tables(args: argparse.Namespace) -> int:
    text = render(args.paper, fmt=args.format, results_dir=args.results_dir, profile=args.profile,
                  tables=args.table or None, only_bound=args.only_bound)
    print(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from facelab.config import PROFILES

    p = sub.add_parser("tables", help="a paper's tables next to our results (paper | ours | difference | note)",
                       description="Render the transcribed tables of PAPER (000..004, reference_dlib) with our "
                                   "numbers computed from the stored results; missing results show as 'not run'.")
    p.add_argument("paper", metavar="PAPER", help="paper-values file stem: " + ", ".join(list_papers()))
    p.add_argument("--table", action="append", help="only this table id (repeatable), e.g. table4")
    p.add_argument("--results-dir", default=None, help="results folder (default: results/ of the checkout)")
    p.add_argument("--profile", default=None, choices=PROFILES,
                   help="use results of this profile only (default: full, else small, else smoke)")
    p.add_argument("--format", default="markdown", choices=("markdown", "html", "csv"))
    p.add_argument("--only-bound", action="store_true", help="only cells this book computes a value for")
    p.set_defaults(func=_cmd_tables)
