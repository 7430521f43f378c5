"""Ours next to the paper's: binding stored results to the cells of the papers' tables.

A comparison is built from two sources only:

1. **paper values**, transcribed as data in ``facelab/paper_values/<paper>.json``
   (:mod:`facelab.tables` loads, validates and renders them);
2. **results**: the JSON results that experiments and the ``bench``/``model summary`` commands
   write (:mod:`facelab.results`), found under a results folder.

Nothing "ours" is typed by hand: it is computed from a stored result by a declared metric
function. When no result exists, the cell says ``not run`` and which command produces it; when
the book does not reproduce a number at all, the binding says why; a result whose code or
configuration changed since it was computed is flagged ``stale`` with the reason.

Bindings (in the paper-values file)
-----------------------------------
A ``BINDING`` connects one cell ``key`` (on one of its table's tracks) to a result and a metric::

    {"cell": "dlib_docs.lfw_accuracy.no_jitter",
     "experiment": "getting_started.lfw_dlib",      # result file <experiment>--<profile>.json
     "metric": "lfw_kfold_accuracy", "args": {},      # a function in METRICS, with keyword args
     "track": "distilled",                            # optional: one of the table's tracks
     "note": "what differs from the paper's setting",
     "command": "how to produce the result"}          # required for bench results (latency.*, complexity.*)

    {"cell": "table4.nan.tar_far1e-3", "not_reproduced": "IJB-A is not available"}

Declared metric functions: ``value`` (a number stored at a dotted path of ``result.metrics``,
with its unit), ``lfw_kfold_accuracy`` and ``lfw_kfold_threshold`` (recomputed from the stored
per-pair ``score``/``label``/``fold`` arrays with :func:`facelab.eval.verification.kfold_accuracy`),
``latency_median`` and ``throughput`` (a run of a latency result, by runtime and batch).
New ones are declared with :func:`register_metric`. Cells with ``derived`` (e.g. a relative change
between two rows) are computed from the other cells' values, per track.

The result is looked up as ``<results_dir>/*/<experiment>--<profile>.json`` for the first
profile present in ``PROFILE_PREFERENCE`` (or the one asked for). The value is converted to the
cell's unit (``%`` <-> fraction, ms <-> s, bytes <-> MB (10^6) <-> MiB, ...; incompatible units are
an error, never a silent guess), and the difference is ``ours - paper`` in the paper's unit
(percentage points for ``%``).

The CLI: ``python -m facelab tables PAPER [--table ID] [--results-dir DIR] [--format paper|html|long|csv]``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facelab.errors import DataError, UnknownNameError
from facelab.paths import results_root
from facelab.results import Result, load_result, staleness
from facelab.tables import (
    DEFAULT_TRACK,
    LONG_COLUMNS,
    PaperTable,
    convert,
    list_papers,
    load_paper_values,
    long_frame_display,
    paper_table,
    to_markdown,
)

#: Which stored result to use when several profiles exist and none is asked for.
PROFILE_PREFERENCE = ("full", "small", "smoke")


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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
def _metric_value(result: Result, *, path: str, unit: str, sd_path: str | None = None, scale: float = 1.0) -> Ours:
    """A number stored in ``result.metrics`` at the dotted ``path`` (list items by index), in ``unit``,
    times ``scale``."""
    value = _get_path(result.metrics, path)
    if value is None:  # measured, but nothing there (e.g. an AP over a split without faces at this profile)
        raise KeyError(f"{path!r} is empty in {result.experiment} (nothing to measure there at this profile)")
    if not _is_number(value):
        raise DataError(f"metric {path!r} of {result.experiment} is {value!r}, not a number")
    sd = _get_path(result.metrics, sd_path) if sd_path else None
    return Ours(float(value) * scale, unit, None if sd is None else float(sd) * abs(scale))


def _kfold(result: Result, score_key: str = "score"):
    from facelab.eval.verification import kfold_accuracy

    arrays = result.arrays
    missing = [k for k in (score_key, "label", "fold") if k not in arrays]
    if missing:
        raise KeyError(f"{result.experiment} stores no {', '.join(missing)} array(s): cannot compute k-fold accuracy")
    return kfold_accuracy(np.asarray(arrays[score_key]), np.asarray(arrays["label"]), np.asarray(arrays["fold"]))


@register_metric("lfw_kfold_accuracy")
def _metric_lfw_accuracy(result: Result, *, score: str = "score") -> Ours:
    """LFW-style k-fold accuracy from the stored per-pair ``score`` (or another score array)/``label``/
    ``fold`` arrays (threshold chosen on the other folds; SD over folds, ddof=0)."""
    acc = _kfold(result, score)
    n, k = len(result.arrays[score]), len(np.unique(result.arrays["fold"]))
    return Ours(acc.mean, "fraction", acc.std, f"{k}-fold accuracy over {n} pairs, ± = SD over folds")


@register_metric("lfw_kfold_threshold")
def _metric_lfw_threshold(result: Result, *, scale: float = 1.0) -> Ours:
    """Mean (± SD over folds) of the k-fold thresholds times ``scale`` (-1 turns negated-distance
    score thresholds back into distances), in the unit 'distance'."""
    acc = _kfold(result)
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


def result_staleness(result: Result) -> list[str]:
    """Why a stored result no longer matches its code (and, for a registered experiment, its
    configuration at the result's profile and seed); empty when it is fresh."""
    from facelab.experiments import list_experiments, stale_reasons

    return stale_reasons(result) if result.experiment in list_experiments() else staleness(result)


# ----------------------------------------------------------------------------- the long form


def _tracks_of(table: dict) -> list[dict]:
    return list(table.get("tracks", [{"id": DEFAULT_TRACK, "label": DEFAULT_TRACK}]))


def compare(paper: str, *, results_dir: str | Path | None = None, profile: str | None = None,
            tables: Sequence[str] | None = None, only_bound: bool = False):
    """The comparison of ``paper`` in long form: one row per cell and bound track
    (:data:`facelab.tables.LONG_COLUMNS`).

    ``paper``/``paper_sd``/``ours``/``ours_sd``/``difference`` are numbers in the cell's unit (NaN
    when absent); ``status`` is one of :data:`facelab.tables.STATUSES`; ``note`` holds what differs
    and why a value is missing, one note per line; ``source`` names the result file, its profile and
    commit.
    """
    import pandas as pd

    data = load_paper_values(paper)
    bad = [b for b in data["bindings"] if "metric" in b and b["metric"] not in METRICS]
    if bad:
        raise DataError(f"facelab/paper_values/{paper}.json binds {bad[0]['cell']} with an unknown metric "
                         f"{bad[0]['metric']!r}; declared: {', '.join(sorted(METRICS))}")
    unknown = [t for t in (tables or []) if t not in data["tables"]]
    if unknown:
        raise UnknownNameError(f"paper {paper} has no table {', '.join(unknown)}; tables: {', '.join(data['tables'])}")
    bindings: dict[str, list[dict]] = {}
    for b in data["bindings"]:
        bindings.setdefault(b["cell"], []).append(b)
    loaded: dict[str, tuple[Result | None, Path | None, str, list[str]]] = {}
    rows = []
    derived_cells = []
    for tid, table in data["tables"].items():
        if tables and tid not in tables:
            continue
        default_track = _tracks_of(table)[0]["id"]
        for cell in table["cells"]:
            base = {"table": tid, "key": cell["key"], "row": cell["row"], "column": cell["column"],
                    "unit": cell["unit"], "paper": cell["value"] if cell["value"] is not None else math.nan,
                    "paper_sd": cell["sd"] if cell.get("sd") is not None else math.nan,
                    "paper_printed": cell["printed"], "ours": math.nan, "ours_sd": math.nan,
                    "difference": math.nan, "status": "", "note": "", "source": "", "track": ""}
            cell_note = [cell["note"]] if cell.get("note") else []
            if cell.get("derived"):
                derived_cells.append((cell, base, cell_note))
                continue
            bs = bindings.get(cell["key"], [])
            if only_bound and (not bs or all("not_reproduced" in b for b in bs)):
                continue
            if not bs:
                status = "paper has no number" if cell["value"] is None else "no binding"
                rows.append(dict(base, status=status, note="\n".join(cell_note)))
                continue
            for b in bs:
                row = dict(base, track=b.get("track", default_track) if "not_reproduced" not in b else "")
                notes = list(cell_note)
                if "not_reproduced" in b:
                    row["status"] = "not reproduced"
                    notes.append(b["not_reproduced"])
                else:
                    exp = b["experiment"]
                    if exp not in loaded:
                        path, reason = find_result(exp, results_dir, profile)
                        if path is None:
                            loaded[exp] = (None, None, reason, [])
                        else:
                            result = load_result(path)
                            loaded[exp] = (result, path, "", result_staleness(result))
                    result, path, reason, stale = loaded[exp]
                    if b.get("note"):
                        notes.append(b["note"])
                    if result is None:
                        row["status"] = "not run"
                        notes.append(f"not run: {reason} (produce it with: {_command_for(b, profile)})")
                    else:
                        try:
                            ours = METRICS[b["metric"]](result, **b.get("args", {}))
                        except KeyError as err:
                            # e.g. a smoke run that times one model only, or a result older than the cell
                            row["status"] = "not run"
                            notes.append(f"{path.name} holds no value for this cell ({err.args[0]}): its "
                                         f"configuration did not measure it{' or it predates the cell' if stale else ''}"
                                         f"; produce it with: {_command_for(b, result.profile)}")
                            row["note"] = "\n".join(n for n in notes if n)
                            rows.append(row)
                            continue
                        row["ours"] = convert(ours.value, ours.unit, cell["unit"])
                        if ours.sd is not None:
                            row["ours_sd"] = convert(ours.sd, ours.unit, cell["unit"])
                        if cell["value"] is not None:
                            row["difference"] = row["ours"] - cell["value"]
                        row["status"] = "stale" if stale else "ok"
                        if ours.detail:
                            row["detail"] = ours.detail
                        if stale:
                            notes.append("STALE result (rerun the command named in 'Ours from'): " + "; ".join(stale))
                        commit = (result.provenance.get("git_commit") or "unknown")[:10]
                        row["source"] = (f"{path.parent.name}/{path.name} (profile {result.profile}, commit {commit}"
                                         + (f"; STALE, rerun: {_command_for(b, result.profile)})" if stale else ")"))
                row["note"] = "\n".join(n for n in notes if n)
                rows.append(row)
    rows += _derived_rows(derived_cells, rows)
    df = pd.DataFrame(rows, columns=LONG_COLUMNS + ["detail"])
    df["detail"] = df["detail"].astype(object).where(df["detail"].notna(), "")
    return df


def _derived_rows(derived_cells, rows: list[dict]) -> list[dict]:
    """Cells computed from two other cells' values (per track): ``relative_change`` = 100 (of − vs) / vs %."""
    by_key: dict[tuple[str, str], dict] = {(r["key"], r["track"]): r for r in rows}
    out = []
    for cell, base, notes in derived_cells:
        spec = cell["derived"]
        tracks = sorted({t for (k, t) in by_key if k == spec["of"] and t})
        if not tracks:
            out.append(dict(base, status="not reproduced",
                            note="\n".join(notes + [f"derived from {spec['of']} and {spec['vs']}, which have no values"])))
            continue
        for track in tracks:
            a, b = by_key.get((spec["of"], track)), by_key.get((spec["vs"], track))
            row = dict(base, track=track)
            if a is None or b is None or a["status"] not in ("ok", "stale") or b["status"] not in ("ok", "stale"):
                row.update(status="not run", note="\n".join(notes + ["needs both cells it is derived from"]))
            else:
                row["ours"] = 100.0 * (a["ours"] - b["ours"]) / b["ours"] if b["ours"] else math.nan
                row["status"] = "stale" if "stale" in (a["status"], b["status"]) else "ok"
                if cell["value"] is not None:
                    row["difference"] = row["ours"] - cell["value"]
                row["note"] = "\n".join(notes + [f"ours: relative change of {a['row']} against {b['row']}"])
            out.append(row)
    return out


def table(paper: str, table_id: str, **kwargs: Any) -> PaperTable:
    """Table ``table_id`` of ``paper`` in the paper's shape, ours beside the paper's (kwargs as for
    :func:`compare`). In a notebook, the returned object displays itself."""
    data = load_paper_values(paper)
    if table_id not in data["tables"]:
        raise UnknownNameError(f"paper {paper} has no table {table_id!r}; tables: {', '.join(data['tables'])}")
    meta = data["tables"][table_id]
    long = compare(paper, tables=[table_id], **kwargs)
    return paper_table(long, paper=paper, table=table_id, title=meta["title"], caption=meta["caption"],
                       notes=meta.get("notes", ""), better=meta.get("better"), tracks=_tracks_of(meta),
                       cell_meta={c["key"]: c for c in meta["cells"]}, header_sep=meta.get("header_sep"))


def lookup(paper: str, key: str, track: str | None = None, **kwargs: Any) -> dict:
    """One compared cell (on ``track``, default: the table's first) as a dict, for numbers in prose (glue)."""
    table_id = key.split(".", 1)[0]
    df = compare(paper, tables=[table_id], **kwargs)
    hit = df[df["key"] == key]
    if track is not None:
        hit = hit[hit["track"] == track]
    if hit.empty:
        raise UnknownNameError(f"paper {paper} has no cell {key!r}" + (f" on track {track!r}" if track else ""))
    return hit.iloc[0].to_dict()


def render(paper: str, *, fmt: str = "paper", **kwargs: Any) -> str:
    """Every table of ``paper`` (or ``tables=[...]``) as text: ``paper`` (Markdown in the paper's
    shape), ``html``, ``long`` (Markdown, one row per cell) or ``csv`` (the long form)."""
    if fmt in ("long", "csv"):
        df = compare(paper, **kwargs)
        return df.to_csv(index=False) if fmt == "csv" else to_markdown(long_frame_display(df))
    if fmt not in ("paper", "html"):
        raise UnknownNameError(f"unknown format {fmt!r}: choose paper, html, long or csv")
    ids = kwargs.pop("tables", None) or list(load_paper_values(paper)["tables"])
    kwargs.pop("only_bound", None)
    shaped = [table(paper, t, **kwargs) for t in ids]
    return ("\n\n".join(t.to_markdown() for t in shaped) if fmt == "paper"
            else "\n".join(t.to_html() for t in shaped))


# ----------------------------------------------------------------------------- command line


def _cmd_tables(args: argparse.Namespace) -> int:
    text = render(args.paper, fmt=args.format, results_dir=args.results_dir, profile=args.profile,
                  tables=args.table or None, only_bound=args.only_bound)
    print(text)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    from facelab.config import PROFILES

    p = sub.add_parser("tables", help="a paper's tables with our results beside the paper's numbers",
                       description="Render the transcribed tables of PAPER (000..004, reference_dlib) in the paper's "
                                   "shape with our numbers computed from the stored results; missing results show as "
                                   "'not run'. --format long lists every cell (paper | ours | difference | note).")
    p.add_argument("paper", metavar="PAPER", help="paper-values file stem: " + ", ".join(list_papers()))
    p.add_argument("--table", action="append", help="only this table id (repeatable), e.g. table4")
    p.add_argument("--results-dir", default=None, help="results folder (default: results/ of the checkout)")
    p.add_argument("--profile", default=None, choices=PROFILES,
                   help="use results of this profile only (default: full, else small, else smoke)")
    p.add_argument("--format", default="paper", choices=("paper", "html", "long", "csv"))
    p.add_argument("--only-bound", action="store_true", help="with --format long/csv: only cells with a value of ours")
    p.set_defaults(func=_cmd_tables)
