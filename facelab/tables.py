"""The papers' tables: their values as data, and the book's one renderer of paper-shaped tables.

Paper values are transcribed as data in ``facelab/paper_values/<paper>.json`` (one file per
paper, plus ``reference_dlib.json`` for the packaged reference recognizer). This module loads and
validates them (:func:`load_paper_values`, :func:`cells`) and lays a comparison out in the
**paper's own shape** (:class:`PaperTable`): the paper's rows and columns in its order, each cell
showing our value beside the paper's (``38.8 (paper 6.39)``) at the paper's precision, the
difference coloured in HTML, rows and columns the book does not reproduce marked *paper only*,
every note as a numbered footnote, and the caption from the paper.

Which of our results fills which cell (the *bindings*) and how the number is computed from a
stored result live in :mod:`facelab.comparison`, which produces the long form (one row per cell
and track, :data:`LONG_COLUMNS`) that :func:`paper_table` lays out. This module reads no
results and computes no metrics.

Paper-values file
-----------------
::

    {"paper": "001",                        # equals the file stem
     "title": "...", "citation": "...", "source": "where the numbers were transcribed from",
     "notes": ["transcription remarks"],
     "tables": {"table1": {"title": "Table 1", "caption": "...", "notes": "...",
                           # optional: "better": "higher"|"lower" (default direction of its cells),
                           # "tracks": [{"id": "scratch", "label": "from scratch"}, ...] (several
                           #   results per cell, e.g. two training recipes; default one track 'ours'),
                           # "header_sep": ", " (split column names into two header rows)
                           "cells": [CELL, ...]}, ...},
     "bindings": [BINDING, ...],             # see facelab.comparison
     "claims": {"claim_id": {"claim": "what the paper says", ...}}}   # optional, read by chapters

    CELL = {"key": "table1.squeezefaceposenet.parameters",   # unique, starts with the table id
            "row": "SqueezeFacePoseNet", "column": "Parameters",
            "value": 1240000,          # number in `unit`, or null when the cell holds no number
            "unit": "parameters", "meaning": "what the number is (dataset, protocol, model)",
            "printed": "1.24M",        # the cell exactly as the paper prints it
            # optional: "sd" (the ± part, same unit), "formula", "note", "source",
            # "better" ("higher"|"lower"), "ours_only" (true: a row/column the book adds; "printed"
            # may then be ""), "part_of" (key of the cell it is printed inside, e.g. a bracketed
            # change or one number of a compound cell; "printed" may then be ""), "derived"
            # ({"op": "relative_change", "of": KEY, "vs": KEY}: ours computed from two other cells'
            # ours), "ours_format" (how a compound cell prints ours: a str.format template over
            # {value} and its parts, named by the last part of their keys)}
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from facelab.errors import DataError, UnknownNameError

CELL_KEYS = {"key", "row", "column", "value", "unit", "meaning", "printed"}
CELL_OPTIONAL = {"sd", "formula", "note", "source", "better", "ours_only", "part_of", "derived", "ours_format"}
TABLE_KEYS = {"title", "caption", "cells"}
TABLE_OPTIONAL = {"notes", "better", "tracks", "header_sep"}
TOP_KEYS = {"paper", "title", "citation", "source", "notes", "tables", "bindings", "claims"}
BINDING_KEYS = {"cell", "experiment", "metric", "args", "note", "command", "track", "not_reproduced"}
DERIVED_OPS = ("relative_change",)
DEFAULT_TRACK = "ours"

#: The long form of a comparison: one row per cell and track (facelab.comparison produces it).
LONG_COLUMNS = ["table", "key", "row", "column", "track", "unit", "paper", "paper_sd", "paper_printed", "ours",
                "ours_sd", "difference", "status", "note", "source"]
#: Statuses of the long form: a value was computed ('ok', 'stale'), a result is missing ('not run'),
#: the book does not reproduce the cell ('not reproduced'), nobody bound it ('no binding'), or the
#: paper has no number there ('paper has no number').
STATUSES = ("ok", "stale", "not run", "not reproduced", "no binding", "paper has no number")

#: unit -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "%": ("fraction", 0.01), "fraction": ("fraction", 1.0),
    "s": ("time", 1.0), "ms": ("time", 1e-3),
    "bytes": ("bytes", 1.0), "MB": ("bytes", 1e6), "MiB": ("bytes", 2.0**20),
    "frames/s": ("rate", 1.0), "images/s": ("rate", 1.0),
}


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """``value`` in ``from_unit`` expressed in ``to_unit``; ValueError if they measure different things."""
    if from_unit == to_unit:
        return value
    a, b = UNITS.get(from_unit), UNITS.get(to_unit)
    if a is None or b is None or a[0] != b[0]:
        raise DataError(f"cannot convert {from_unit!r} to {to_unit!r}: the binding's metric gives a different "
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


def _validate_cell(cell: Any, tid: str, i: int, keys: set[str], errors: list[str]) -> None:
    where = f"table {tid} cell {i} ({cell.get('key', '?') if isinstance(cell, dict) else '?'})"
    if not isinstance(cell, dict):
        errors.append(f"{where}: not an object")
        return
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
    for name in ("row", "column", "unit", "meaning", "printed"):
        if name == "printed" and (cell.get("ours_only") or cell.get("part_of")) and cell.get(name) == "":
            continue
        if name in cell and (not isinstance(cell[name], str) or not cell[name].strip()):
            errors.append(f"{where}: '{name}' must be a non-empty string")
    if "value" in cell and cell["value"] is not None and not _is_number(cell["value"]):
        errors.append(f"{where}: 'value' must be a finite number or null")
    if cell.get("sd") is not None and not _is_number(cell["sd"]):
        errors.append(f"{where}: 'sd' must be a number")
    if cell.get("better") not in (None, "higher", "lower"):
        errors.append(f"{where}: 'better' must be 'higher' or 'lower'")
    derived = cell.get("derived")
    if derived is not None and (not isinstance(derived, dict) or derived.get("op") not in DERIVED_OPS
                                or not {"of", "vs"} <= set(derived)):
        errors.append(f"{where}: 'derived' must be {{'op': one of {', '.join(DERIVED_OPS)}, 'of': KEY, 'vs': KEY}}")


def validate_paper_values(data: dict, stem: str | None = None, *, metrics: Collection[str] | None = None) -> list[str]:
    """Problems with a paper-values mapping (empty list: valid). See the module docstring for the schema,
    and :mod:`facelab.comparison` for the bindings; ``metrics``: the declared metric names the
    bindings may use (checked when given)."""
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
    tracks_of: dict[str, set[str]] = {}
    default_track_of: dict[str, str] = {}
    cell_of: dict[str, dict] = {}
    for tid, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("cells"), list) or not table["cells"]:
            errors.append(f"table {tid}: needs a non-empty 'cells' list")
            continue
        if set(table) - TABLE_KEYS - TABLE_OPTIONAL:
            errors.append(f"table {tid}: unknown keys {', '.join(sorted(set(table) - TABLE_KEYS - TABLE_OPTIONAL))}")
        for name in ("title", "caption"):
            if not isinstance(table.get(name), str) or not table[name].strip():
                errors.append(f"table {tid}: needs a '{name}' string")
        if table.get("better") not in (None, "higher", "lower"):
            errors.append(f"table {tid}: 'better' must be 'higher' or 'lower'")
        tracks = table.get("tracks", [{"id": DEFAULT_TRACK, "label": DEFAULT_TRACK}])
        if (not isinstance(tracks, list) or not tracks
                or not all(isinstance(t, dict) and isinstance(t.get("id"), str) and isinstance(t.get("label"), str)
                           for t in tracks)):
            errors.append(f"table {tid}: 'tracks' must be a list of {{'id', 'label'}}")
            tracks = [{"id": DEFAULT_TRACK}]
        tracks_of[tid] = {t.get("id") for t in tracks}
        default_track_of[tid] = tracks[0].get("id")
        for i, cell in enumerate(table["cells"]):
            _validate_cell(cell, tid, i, keys, errors)
            if isinstance(cell, dict) and isinstance(cell.get("key"), str):
                cell_of[cell["key"]] = dict(cell, table=tid)
    for key, cell in cell_of.items():
        for ref in [cell.get("part_of")] + ([cell["derived"]["of"], cell["derived"]["vs"]]
                                            if isinstance(cell.get("derived"), dict) else []):
            if ref is not None and (ref not in cell_of or cell_of[ref]["table"] != cell["table"]):
                errors.append(f"cell {key}: refers to {ref!r}, which is not a cell of the same table")
    bindings = data.get("bindings")
    if not isinstance(bindings, list):
        errors.append("'bindings' must be a list")
        bindings = []
    bound: set[tuple[str, str]] = set()
    for i, b in enumerate(bindings):
        where = f"binding {i} ({b.get('cell', '?') if isinstance(b, dict) else '?'})"
        if not isinstance(b, dict) or "cell" not in b:
            errors.append(f"{where}: needs a 'cell'")
            continue
        if set(b) - BINDING_KEYS:
            errors.append(f"{where}: unknown keys {', '.join(sorted(set(b) - BINDING_KEYS))}")
        if b["cell"] not in keys:
            errors.append(f"{where}: no cell with that key")
            continue
        tid = cell_of[b["cell"]]["table"]
        track = b.get("track") or default_track_of[tid]
        if track not in tracks_of.get(tid, set()):
            errors.append(f"{where}: track {track!r} is not one of table {tid}'s tracks")
        slot = (b["cell"], track)
        if slot in bound or (b["cell"], "*") in bound or ("not_reproduced" in b and any(k == b["cell"] for k, _ in bound)):
            errors.append(f"{where}: cell bound twice" + (f" on track {track!r}" if b.get("track") else ""))
        bound.add(slot)
        if "not_reproduced" in b:
            bound.add((b["cell"], "*"))
            if not isinstance(b["not_reproduced"], str) or not b["not_reproduced"].strip() or "experiment" in b:
                errors.append(f"{where}: 'not_reproduced' must be a reason string, without an experiment")
            continue
        if not isinstance(b.get("experiment"), str) or not isinstance(b.get("metric"), str):
            errors.append(f"{where}: needs 'experiment' and 'metric' (or 'not_reproduced')")
        elif metrics is not None and b["metric"] not in metrics:
            errors.append(f"{where}: unknown metric {b['metric']!r}; declared: {', '.join(sorted(metrics))}")
        if not isinstance(b.get("args", {}), dict):
            errors.append(f"{where}: 'args' must be an object")
        if str(b.get("experiment", "")).startswith(("latency.", "complexity.")) and not b.get("command"):
            errors.append(f"{where}: results of the bench commands are not experiments: give the 'command' "
                          "that produces it")
    if "claims" in data and not (isinstance(data["claims"], dict)
                                 and all(isinstance(v, dict) and isinstance(v.get("claim"), str)
                                         for v in data["claims"].values())):
        errors.append("'claims' must map claim ids to objects with a 'claim' string")
    return errors


def load_paper_values(paper: str) -> dict:
    """The validated paper-values mapping of ``paper`` (a file stem, see :func:`list_papers`)."""
    papers = list_papers()
    if paper not in papers:
        raise UnknownNameError(f"no paper values for {paper!r}; available: {', '.join(papers)}")
    data = json.loads((paper_values_dir() / f"{paper}.json").read_text())
    errors = validate_paper_values(data, paper)
    if errors:
        raise DataError(f"facelab/paper_values/{paper}.json is malformed: " + "; ".join(errors))
    return data


def cells(paper: str) -> dict[str, dict]:
    """Every cell of ``paper`` by key, with its table id added as ``table``."""
    data = load_paper_values(paper)
    return {c["key"]: dict(c, table=tid) for tid, t in data["tables"].items() for c in t["cells"]}


def paper_value(paper: str, key: str) -> float:
    """The number the paper prints in cell ``key`` (in the cell's unit); ValueError if it has none."""
    cell = cells(paper).get(key)
    if cell is None:
        raise UnknownNameError(f"paper {paper} has no cell {key!r}")
    if cell["value"] is None:
        raise DataError(f"paper {paper}'s cell {key!r} holds no number (it prints {cell['printed']!r})")
    return float(cell["value"])


def claim(paper: str, claim_id: str) -> dict:
    """A claim of ``paper`` as transcribed (``{"claim": ..., and its parameters}``)."""
    claims = load_paper_values(paper).get("claims", {})
    if claim_id not in claims:
        raise UnknownNameError(f"paper {paper} has no claim {claim_id!r}; claims: {', '.join(sorted(claims)) or 'none'}")
    return claims[claim_id]


def tracks(paper: str, table: str) -> list[dict]:
    """The tracks of a table (``[{"id", "label"}]``; one 'ours' track by default)."""
    return list(load_paper_values(paper)["tables"][table].get("tracks", [{"id": DEFAULT_TRACK, "label": DEFAULT_TRACK}]))


# ----------------------------------------------------------------------------- number formatting


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
    if d == 0 and not suffix and abs(v) >= 1000 and float(v).is_integer() and (not printed.strip() or "," in printed):
        return f"{v:+,.0f}" if signed else f"{v:,.0f}"
    return f"{v:+.{d}f}{suffix}" if signed else f"{v:.{d}f}{suffix}"


def _isnan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ----------------------------------------------------------------------------- the paper-shaped table

#: Cell background per tone (HTML): close to the paper, better, worse, different (direction unknown).
TONES = {"match": "#e3f4e1", "better": "#dbeafe", "worse": "#fde2e1", "differs": "#fdf1d8"}
TONE_WORDS = {"match": "within 5% (or the spread) of the paper", "better": "better than the paper",
              "worse": "worse than the paper", "differs": "differs from the paper by more than 5%"}
#: How close counts as matching the paper: relative difference (or within the combined ± spread).
MATCH_RELATIVE = 0.05


@dataclass
class GridCell:
    """One cell of a paper-shaped table: the paper's text and ours (one entry per track)."""

    paper: str = ""
    ours: list[tuple[str, str]] = field(default_factory=list)  # (track label, text)
    tone: str = ""
    marks: list[int] = field(default_factory=list)
    title: str = ""
    paper_only: bool = False

    first_track: str = ""  # the label of the table's first track (unlabelled when it is the only entry)

    def labelled(self) -> bool:
        return len(self.ours) > 1 or any(label and label != self.first_track for label, _ in self.ours)

    def text(self, with_marks: bool = True) -> str:
        """Plain text, e.g. ``38.8 ± 1.2 (paper 6.39)`` or ``scratch 38.8 · distilled 12.1 (paper 6.39)``."""
        marks = "".join(f"[{m}]" for m in self.marks) if with_marks else ""
        if self.paper_only or not self.ours:
            return (self.paper + marks).strip()
        labelled = self.labelled()
        ours = " · ".join(f"{label} {t}".strip() if labelled else t for label, t in self.ours)
        return (f"{ours} (paper {self.paper})" if self.paper else ours) + marks


def _tone(ours: float, paper: float | None, sd: float, better: str | None) -> str:
    if paper is None or _isnan(paper) or _isnan(ours):
        return ""
    diff = ours - paper
    tolerance = max(MATCH_RELATIVE * abs(paper), 0.0 if _isnan(sd) else sd)
    if abs(diff) <= tolerance or (paper == 0 and diff == 0):
        return "match"
    if better is None:
        return "differs"
    return "better" if (diff > 0) == (better == "higher") else "worse"


@dataclass
class PaperTable:
    """A comparison laid out like the paper's table (build it with :func:`paper_table`).

    ``rows``/``columns`` are the paper's, in its order; ``grid[(row, column)]`` the cells (absent:
    the paper's table has no such cell, shown blank); ``footnotes[i]`` is note ``i + 1``.
    Display: ``_repr_html_`` (notebooks), :meth:`to_markdown`, :meth:`to_html`, :meth:`as_frame`.
    """

    paper: str
    table: str
    title: str
    caption: str
    notes: str
    rows: list[str]
    columns: list[str]
    grid: dict[tuple[str, str], GridCell]
    footnotes: list[str]
    sources: list[str]
    paper_only_rows: dict[str, list[int]]
    paper_only_columns: dict[str, list[int]]
    ours_only_rows: list[str] = field(default_factory=list)
    ours_only_columns: list[str] = field(default_factory=list)
    header_sep: str | None = None
    long: Any = None  # the long-form DataFrame it was built from (for the "all cells" block)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.columns)

    def text(self, row: str, column: str) -> str:
        cell = self.grid.get((row, column))
        return cell.text() if cell is not None else ""

    def row_label(self, row: str, with_marks: bool = True) -> str:
        if row in self.ours_only_rows:
            return f"{row} (not in the paper)"
        if row in self.paper_only_rows:
            marks = "".join(f"[{m}]" for m in self.paper_only_rows[row]) if with_marks else ""
            return f"{row} (paper only){marks}"
        return row

    def column_label(self, column: str, with_marks: bool = True) -> str:
        if column in self.ours_only_columns:
            return f"{column} (not in the paper)"
        if column in self.paper_only_columns:
            marks = "".join(f"[{m}]" for m in self.paper_only_columns[column]) if with_marks else ""
            return f"{column} (paper only){marks}"
        return column

    def as_frame(self):
        """The table as a DataFrame of plain cell texts (rows × columns, blank where the paper has none)."""
        import pandas as pd

        data = [[self.text(r, c) for c in self.columns] for r in self.rows]
        return pd.DataFrame(data, index=[self.row_label(r) for r in self.rows],
                            columns=[self.column_label(c) for c in self.columns])

    def heading(self) -> str:
        return f"{self.title}: {self.caption}" if self.caption else self.title

    def to_markdown(self) -> str:
        """A pipe table with the caption above and the footnotes below."""
        def esc(v: str) -> str:
            return str(v).replace("|", "\\|").replace("\n", " ")

        lines = [f"**{esc(self.heading())}**", "",
                 "| | " + " | ".join(esc(self.column_label(c)) for c in self.columns) + " |",
                 "|---|" + "---|" * len(self.columns)]
        for r in self.rows:
            lines.append(f"| {esc(self.row_label(r))} | " + " | ".join(esc(self.text(r, c)) for c in self.columns) + " |")
        lines.append("")
        lines += [f"[{i}] {esc(n)}" for i, n in enumerate(self.footnotes, 1)]
        if self.notes:
            lines.append(f"Note (transcription): {esc(self.notes)}")
        if self.sources:
            lines.append("Ours from: " + "; ".join(self.sources))
        return "\n".join(lines)

    def _header_html(self) -> str:
        esc = html.escape
        sep = self.header_sep
        if sep and all(sep in c for c in self.columns):
            tops = [c.split(sep, 1) for c in self.columns]
            top_cells, i = [], 0
            while i < len(tops):
                j = i
                while j + 1 < len(tops) and tops[j + 1][0] == tops[i][0]:
                    j += 1
                top_cells.append(f'<th colspan="{j - i + 1}" style="text-align:center">{esc(tops[i][0])}</th>')
                i = j + 1
            bottom = [self._column_th(c, c.split(sep, 1)[1]) for c in self.columns]
            return (f'<tr><th rowspan="2"></th>{"".join(top_cells)}</tr>'
                    f'<tr>{"".join(bottom)}</tr>')
        return "<tr><th></th>" + "".join(self._column_th(c, c) for c in self.columns) + "</tr>"

    def _column_th(self, column: str, label: str) -> str:
        esc = html.escape
        if column in self.ours_only_columns:
            return f'<th style="font-style:italic">{esc(label)}<br><small>not in the paper</small></th>'
        if column in self.paper_only_columns:
            marks = "".join(f"<sup>{m}</sup>" for m in self.paper_only_columns[column])
            return (f'<th style="color:#777">{esc(label)}<br><small><i>paper only</i></small>{marks}</th>')
        return f"<th>{esc(label)}</th>"

    def to_html(self, *, with_long: bool = True) -> str:
        """The table as HTML (inline styles, so it needs no stylesheet), with an optional collapsed
        block holding every cell in the long form for auditing."""
        esc = html.escape
        parts = ['<div class="facelab-paper-table">',
                 f'<p><b>{esc(self.title)}</b>{": " + esc(self.caption) if self.caption else ""}</p>',
                 '<table style="border-collapse:collapse;font-size:0.88em">',
                 f"<thead>{self._header_html()}</thead><tbody>"]
        for r in self.rows:
            if r in self.ours_only_rows:
                label = f'<th style="text-align:left;font-style:italic">{esc(r)} <small>not in the paper</small></th>'
            elif r in self.paper_only_rows:
                marks = "".join(f"<sup>{m}</sup>" for m in self.paper_only_rows[r])
                label = f'<th style="text-align:left;color:#777">{esc(r)} <small><i>paper only</i></small>{marks}</th>'
            else:
                label = f'<th style="text-align:left">{esc(r)}</th>'
            tds = []
            for c in self.columns:
                cell = self.grid.get((r, c))
                tds.append(self._td(cell))
            parts.append(f"<tr>{label}{''.join(tds)}</tr>")
        parts.append("</tbody></table>")
        used = sorted({t for cell in self.grid.values() for t in [cell.tone] if t})
        if used:
            parts.append("<p><small>" + " ".join(
                f'<span style="background:{TONES[t]};padding:0 4px">{esc(TONE_WORDS[t])}</span>' for t in used)
                + "</small></p>")
        if self.footnotes:
            parts.append("<ol style=\"font-size:0.82em\">" + "".join(f"<li>{esc(n)}</li>" for n in self.footnotes)
                         + "</ol>")
        if self.notes:
            parts.append(f'<p style="font-size:0.82em"><i>Transcription note:</i> {esc(self.notes)}</p>')
        if self.sources:
            parts.append('<p style="font-size:0.82em"><i>Ours from:</i> ' + "; ".join(esc(s) for s in self.sources)
                         + "</p>")
        if with_long and self.long is not None and len(self.long):
            parts.append("<details><summary>All cells (long form, for auditing)</summary>"
                         + long_frame_display(self.long).to_html(index=False, border=0) + "</details>")
        parts.append("</div>")
        return "\n".join(parts)

    @staticmethod
    def _td(cell: GridCell | None) -> str:
        esc = html.escape
        if cell is None:
            return "<td></td>"
        marks = "".join(f"<sup>{m}</sup>" for m in cell.marks)
        title = f' title="{esc(cell.title)}"' if cell.title else ""
        if cell.paper_only or not cell.ours:
            style = ' style="color:#777"' if cell.paper_only else ""
            return f"<td{title}{style}>{esc(cell.paper)}{marks}</td>"
        bg = f"background:{TONES[cell.tone]};" if cell.tone else ""
        labelled = cell.labelled()
        ours = "<br>".join((f"<small>{esc(label)}</small> " if labelled and label else "") + f"<b>{esc(t)}</b>"
                           for label, t in cell.ours)
        paper = f'<br><small style="color:#555">paper {esc(cell.paper)}</small>' if cell.paper else ""
        return f'<td{title} style="{bg}padding:2px 6px">{ours}{paper}{marks}</td>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        return self.to_markdown()


class _Footnotes:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, notes: Sequence[str]) -> list[int]:
        out = []
        for n in notes:
            n = n.strip()
            if not n:
                continue
            if n not in self.texts:
                self.texts.append(n)
            out.append(self.texts.index(n) + 1)
        return sorted(set(out))


def _split_notes(note: str) -> list[str]:
    return [n for n in (note or "").split("\n") if n.strip()]


def paper_table(long, *, paper: str, table: str, title: str, caption: str, notes: str = "",
                better: str | None = None, tracks: Sequence[dict] | None = None, cell_meta: dict | None = None,
                header_sep: str | None = None) -> PaperTable:
    """Lay out the long form of one table (:data:`LONG_COLUMNS`, from :func:`facelab.comparison.compare`)
    in the paper's shape. ``cell_meta`` maps cell keys to their paper-values entries (for ``better``,
    ``part_of``, ``ours_only``); ``tracks`` names the table's tracks in display order."""
    cell_meta = cell_meta or {}
    track_label = {t["id"]: t["label"] for t in (tracks or [])}
    track_order = {t["id"]: i for i, t in enumerate(tracks or [])}
    df = long[long["table"] == table]
    main = df[[not cell_meta.get(k, {}).get("part_of") for k in df["key"]]]
    rows = list(dict.fromkeys(main["row"]))
    columns = list(dict.fromkeys(main["column"]))
    computed = {"ok", "stale", "not run"}
    row_bound = {r: bool(set(main.loc[main["row"] == r, "status"]) & computed) for r in rows}
    col_bound = {c: bool(set(main.loc[main["column"] == c, "status"]) & computed) for c in columns}
    feet = _Footnotes()
    # Paper-only rows/columns carry their reasons once, on the header label.
    row_reasons: dict[str, list[str]] = {r: [] for r in rows if not row_bound[r]}
    col_reasons: dict[str, list[str]] = {c: [] for c in columns if not col_bound[c] and row_bound and any(row_bound.values())}
    grid: dict[tuple[str, str], GridCell] = {}
    sources: list[str] = []
    parts: dict[str, list[str]] = {}
    for k in dict.fromkeys(df["key"]):
        if cell_meta.get(k, {}).get("part_of"):
            parts.setdefault(cell_meta[k]["part_of"], []).append(k)
    for key, group in main.groupby("key", sort=False):
        first = group.iloc[0]
        r, c = first["row"], first["column"]
        meta = cell_meta.get(key, {})
        printed = "" if meta.get("ours_only") else first["paper_printed"]
        part_rows = {pk: df[df["key"] == pk] for pk in parts.get(key, [])}
        for pk, prow in part_rows.items():
            if len(prow) and prow.iloc[0]["paper_printed"]:
                printed = f"{printed} {prow.iloc[0]['paper_printed']}".strip()
        cell = GridCell(paper=printed, first_track=track_label.get(next(iter(track_order), ""), ""))
        notes_here = []
        for _, rec in group.sort_values("track", key=lambda s: s.map(lambda t: track_order.get(t, 99))).iterrows():
            notes_here += _split_notes(rec["note"])
            if rec["source"] and rec["source"] not in sources:
                sources.append(rec["source"])
            label = track_label.get(rec["track"], rec["track"])
            if rec["status"] in ("ok", "stale"):
                # the parts of a compound cell on this track
                part_vals: dict[str, dict] = {}
                for pk, prow in part_rows.items():
                    on_track = prow[prow["track"] == rec["track"]]
                    if len(on_track) and on_track.iloc[0]["status"] in ("ok", "stale"):
                        part_vals[pk] = on_track.iloc[0].to_dict()
                        notes_here += _split_notes(on_track.iloc[0]["note"])
                if meta.get("ours_format") and len(part_vals) == len(part_rows):
                    names = {pk.rsplit(".", 1)[-1]: v["ours"] for pk, v in part_vals.items()}
                    text = meta["ours_format"].format(value=rec["ours"], **names)
                    exact = all(not _isnan(v["difference"]) and abs(v["difference"]) < 1e-9
                                for v in [rec, *part_vals.values()])
                    cell.tone = "match" if exact else "differs"
                else:
                    text = format_like(rec["ours"], first["paper_printed"])
                    if not _isnan(rec["ours_sd"]):
                        text += f" ± {format_like(rec['ours_sd'], first['paper_printed'], min_digits=2)}"
                    for pk, v in part_vals.items():
                        if cell_meta.get(pk, {}).get("derived", {}).get("op") == "relative_change":
                            text += f" ({v['ours']:+.0f}%)"
                        else:
                            text += " " + format_like(v["ours"], v["paper_printed"])
                    if not cell.tone:
                        cell.tone = _tone(rec["ours"], rec["paper"], rec["ours_sd"], meta.get("better") or better)
                if rec["status"] == "stale" or any(v["status"] == "stale" for v in part_vals.values()):
                    text += " (stale)"
                cell.ours.append((label, text))
                diff = "" if _isnan(rec["difference"]) else format_like(rec["difference"], first["paper_printed"],
                                                                        signed=True, min_digits=2)
                cell.title = "; ".join(x for x in (meta.get("meaning", ""), f"ours − paper = {diff} {first['unit']}"
                                                   if diff else "") if x)
            elif rec["status"] == "not run":
                cell.ours.append((label, "not run"))
            elif rec["status"] in ("not reproduced", "no binding"):
                if row_bound.get(r) and col_bound.get(c):
                    cell.ours.append((label, "—"))
                if rec["status"] == "no binding" and row_bound.get(r) and col_bound.get(c):
                    notes_here.append("the book computes no value for this cell")
        if not row_bound.get(r):
            cell.paper_only = True
            row_reasons[r] += notes_here
        elif not col_bound.get(c):
            cell.paper_only = True
            col_reasons.setdefault(c, []).extend(notes_here)
        else:
            cell.marks = feet.mark(notes_here)
        if not cell.title:
            cell.title = meta.get("meaning", "")
        grid[(r, c)] = cell
    ours_only = {k for k, m in cell_meta.items() if m.get("ours_only")}
    ours_only_rows = [r for r in rows if set(main.loc[main["row"] == r, "key"]) <= ours_only]
    ours_only_columns = [c for c in columns if set(main.loc[main["column"] == c, "key"]) <= ours_only]
    paper_only_rows = {r: feet.mark(list(dict.fromkeys(v))) for r, v in row_reasons.items()}
    paper_only_columns = {c: feet.mark(list(dict.fromkeys(v))) for c, v in col_reasons.items()}
    return PaperTable(paper=paper, table=table, title=title, caption=caption, notes=notes, rows=rows,
                      columns=columns, grid=grid, footnotes=feet.texts, sources=sources,
                      paper_only_rows=paper_only_rows, paper_only_columns=paper_only_columns,
                      ours_only_rows=ours_only_rows, ours_only_columns=ours_only_columns,
                      header_sep=header_sep, long=df)


def long_frame_display(df):
    """The long form as strings for reading (one row per cell and track):
    Table | Row | Column | Track | Paper | Ours | Ours − paper | Unit | Status | Note | Source."""
    import pandas as pd

    out = []
    for r in df.itertuples(index=False):
        printed = r.paper_printed
        if _isnan(r.ours):
            ours = {"not reproduced": "not reproduced", "not run": "not run"}.get(r.status, "—")
        else:
            ours = format_like(r.ours, printed)
            if not _isnan(r.ours_sd):
                ours += f" ± {format_like(r.ours_sd, printed, min_digits=2)}"
        diff = "" if _isnan(r.difference) else format_like(r.difference, printed, signed=True, min_digits=2)
        out.append({"Table": r.table, "Row": r.row, "Column": r.column, "Track": r.track, "Paper": printed,
                    "Ours": ours, "Ours − paper": diff, "Unit": r.unit, "Status": r.status,
                    "Note": (r.note or "").replace("\n", "; "), "Source": r.source})
    return pd.DataFrame(out, columns=["Table", "Row", "Column", "Track", "Paper", "Ours", "Ours − paper", "Unit",
                                      "Status", "Note", "Source"])


def to_markdown(df) -> str:
    """A pipe table of ``df`` (any DataFrame; cells as strings, ``|`` escaped)."""
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
