"""Paper values (schema and internal consistency of the transcriptions) and the comparison renderer."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import math
import re
import time

import numpy as np
import pandas as pd
import pytest

from facelab import comparison, tables
from facelab.bench import edge_bench
from facelab.eval.verification import kfold_accuracy
from facelab.experiments import get_experiment
from facelab.results import Result, make_provenance, save_result

PAPERS = ["000", "001", "002", "003", "004", "reference_dlib"]


# ----------------------------------------------------------------------------- paper values


def test_every_paper_has_a_values_file():
    assert tables.list_papers() == PAPERS


@pytest.mark.parametrize("paper", PAPERS)
def test_paper_values_schema(paper):
    raw = json.loads((tables.paper_values_dir() / f"{paper}.json").read_text())
    assert tables.validate_paper_values(raw, paper) == []
    data = tables.load_paper_values(paper)
    for table in data["tables"].values():
        for cell in table["cells"]:
            assert cell["meaning"].strip() and cell["unit"].strip()
            assert cell["printed"].strip() or cell.get("ours_only") or cell.get("part_of"), cell["key"]
            if cell["value"] is not None and cell["unit"] in ("%", "fraction"):
                assert 0 <= abs(cell["value"]) <= (100 if cell["unit"] == "%" else 1), cell["key"]


def test_expected_tables_are_transcribed():
    ids = {p: set(tables.load_paper_values(p)["tables"]) for p in PAPERS}
    assert ids["000"] >= {"table1", "table2", "table3", "table4", "table5"}
    assert ids["001"] >= {"table1", "table2", "table3", "table4", "table5"}
    assert ids["002"] >= {"table1", "table2", "table3"}
    assert ids["003"] >= {"tableI", "tableII"}
    assert ids["004"] >= {"tableI", "tableII"}
    counts = {p: len(tables.cells(p)) for p in PAPERS}
    printed = {p: sum(not c.get("ours_only") for c in tables.cells(p).values()) for p in PAPERS}
    assert counts["001"] > 250 and printed["003"] == 82  # the paper's cells: 6x2 + 10x7


def test_validator_catches_mistakes():
    good = tables.load_paper_values("reference_dlib")
    assert tables.validate_paper_values(good, "reference_dlib") == []
    bad = copy.deepcopy(good)
    cell = bad["tables"]["dlib_docs"]["cells"][0]
    del cell["unit"]
    bad["tables"]["dlib_docs"]["cells"].append(dict(bad["tables"]["dlib_docs"]["cells"][1]))
    bad["tables"]["dlib_docs"]["cells"][2]["value"] = "99.1"
    bad["bindings"].append({"cell": "dlib_docs.nope", "experiment": "x", "metric": "value"})
    bad["bindings"].append({"cell": "dlib_docs.lfw_accuracy.jittered", "experiment": "x", "metric": "magic"})
    bad["bindings"].append({"cell": "dlib_docs.distance_threshold.value", "experiment": "latency.m.cpu.t1",
                            "metric": "latency_median"})
    errors = " | ".join(tables.validate_paper_values(bad, "other", metrics=comparison.METRICS))
    for expected in ("missing unit", "duplicate key", "finite number", "no cell with that key", "unknown metric 'magic'",
                     "cell bound twice", "'command'", "file is other.json"):
        assert expected in errors, expected


def test_001_table3_counts_follow_their_formulas():
    cells = tables.cells("001")
    for key, cell in cells.items():
        if key.startswith("table3."):
            assert eval(cell["formula"], {"__builtins__": {}}) == cell["value"], key  # noqa: S307


def test_001_table5_changes_agree_with_its_rows_and_table4():
    cells = tables.cells("001")
    for key in [k for k in cells if k.startswith("table5.both.") and k.endswith("_change")]:
        col = key.split(".")[2][: -len("_change")]
        both, vgg = cells[f"table5.both.{col}"]["value"], cells[f"table5.vggface2.{col}"]["value"]
        change = cells[key]["value"]
        if change is None:  # printed '(-)': the two rows are equal
            assert both == vgg
        else:
            assert 100 * (both - vgg) / vgg == pytest.approx(change, abs=0.6), key
        # The 'both' training is the paper's final SqueezeFacePoseNet of Table 4.
        assert both == cells[f"table4.squeezefaceposenet.{col}"]["value"]


def test_001_table2_pooling_arithmetic():
    cells = tables.cells("001")
    side = {k.split(".")[1]: c["value"] for k, c in cells.items() if k.startswith("table2.") and k.endswith("output_side")}
    for pool, before in (("maxpool1", "conv1"), ("maxpool4", "fire4"), ("maxpool8", "fire8")):
        assert side[pool] == (side[before] - 3) // 2 + 1  # 3x3 max-pool, stride 2, no padding


def test_000_table4_sd_and_dlib_reference():
    cells = tables.cells("000")
    assert cells["table4.vggface2.tar_far1e-3"]["value"] == 92.10 and cells["table4.vggface2.tar_far1e-3"]["sd"] == 1.40
    dlib = tables.cells("reference_dlib")
    assert dlib["dlib_docs.lfw_accuracy.jittered"]["value"] == 99.38
    assert dlib["dlib_docs.lfw_accuracy.no_jitter"]["value"] == 99.13
    assert round(100 * dlib["dlib_docs.lfw_accuracy.readme"]["value"], 2) == 99.38


# ----------------------------------------------------------------------------- units and formatting


def test_convert_units():
    assert tables.convert(0.9913, "fraction", "%") == pytest.approx(99.13)
    assert tables.convert(160.0, "ms", "s") == pytest.approx(0.16)
    assert tables.convert(4.41e6, "bytes", "MB") == pytest.approx(4.41)
    assert tables.convert(1.0, "MiB", "MB") == pytest.approx(1.048576)
    assert tables.convert(3.0, "layers", "layers") == 3.0
    with pytest.raises(ValueError, match="cannot convert"):
        tables.convert(1.0, "ms", "%")
    with pytest.raises(ValueError):
        tables.convert(1.0, "parameters", "MB")


def test_format_like_the_paper():
    assert tables.format_like(1_235_496, "1.24M") == "1.24M"
    assert tables.format_like(0.0241, "0.16s") == "0.0241"  # at least 3 significant digits
    assert tables.format_like(14.157, "13MB") == "14.2"
    assert tables.format_like(102.44, "146MB") == "102"
    assert tables.format_like(99.0, "99.13%") == "99.00"
    assert tables.format_like(-0.5, "99.13%", signed=True, min_digits=2) == "-0.50"
    assert tables.format_like(-0.0043e6, "25.6M", signed=True, min_digits=2) == "-0.0043M"
    assert tables.format_like(float("nan"), "1") == ""


# ----------------------------------------------------------------------------- the renderer


def lfw_arrays(seed: int = 0, per_fold: int = 30) -> dict:
    rng = np.random.default_rng(seed)
    label = np.tile(np.r_[np.ones(per_fold // 2), np.zeros(per_fold // 2)], 10).astype(int)
    fold = np.repeat(np.arange(1, 11), per_fold)
    score = -(0.8 - 0.35 * label + rng.normal(0, 0.12, label.size))  # negated distances
    return {"score": score.tolist(), "label": label.tolist(), "fold": fold.tolist()}


def save_lfw_result(root, *, fresh: bool) -> Result:
    exp = get_experiment("getting_started.lfw_dlib")
    config = exp.configure("smoke")
    prov = (make_provenance(config={"config": dataclasses.asdict(config), "seed": 0},
                            modules=["facelab.experiments.getting_started"], device="cpu", started=time.time(),
                            finished=time.time()) if fresh else {})
    r = Result(chapter=exp.chapter, experiment=exp.name, profile="smoke", seed=0, config=dataclasses.asdict(config),
               metrics={}, arrays=lfw_arrays(), provenance=prov)
    save_result(r, root)
    return r


def test_ours_is_computed_from_a_result_file(tmp_path):
    r = save_lfw_result(tmp_path, fresh=True)
    df = comparison.compare("reference_dlib", results_dir=tmp_path)
    row = df.set_index("key").loc["dlib_docs.lfw_accuracy.no_jitter"]
    acc = kfold_accuracy(np.asarray(r.arrays["score"]), np.asarray(r.arrays["label"]), np.asarray(r.arrays["fold"]))
    assert row["status"] == "ok"
    assert row["ours"] == pytest.approx(100 * acc.mean) and row["ours_sd"] == pytest.approx(100 * acc.std)
    assert row["difference"] == pytest.approx(100 * acc.mean - 99.13)
    assert "getting_started.lfw_dlib--smoke.json" in row["source"]
    thr = df.set_index("key").loc["dlib_docs.distance_threshold.value"]
    assert thr["ours"] == pytest.approx(-np.mean(acc.thresholds))
    jit = df.set_index("key").loc["dlib_docs.lfw_accuracy.jittered"]
    assert jit["status"] == "not reproduced" and math.isnan(jit["ours"]) and "jitter" in jit["note"]


def test_stale_result_is_flagged(tmp_path):
    save_lfw_result(tmp_path, fresh=False)  # no provenance hashes: cannot match the current code/config
    row = comparison.compare("reference_dlib", results_dir=tmp_path).set_index("key").loc["dlib_docs.lfw_accuracy.no_jitter"]
    assert row["status"] == "stale" and "STALE" in row["note"] and not math.isnan(row["ours"])


def test_missing_result_is_not_run_never_a_number(tmp_path):
    df = comparison.compare("reference_dlib", results_dir=tmp_path)
    row = df.set_index("key").loc["dlib_docs.lfw_accuracy.no_jitter"]
    assert row["status"] == "not run" and math.isnan(row["ours"]) and math.isnan(row["difference"])
    assert "python -m facelab run getting_started.lfw_dlib" in row["note"]
    shown = tables.long_frame_display(df)
    assert "not run" in set(shown["Ours"]) and "not reproduced" in set(shown["Ours"])


def _tracked() -> dict:
    """Provenance of a bench result whose code is unchanged (so it is not flagged stale)."""
    return make_provenance(config={}, modules=["facelab.bench.edge_bench"], device="cpu", started=time.time(),
                           finished=time.time())


def test_latency_and_complexity_results_map_to_paper_001(tmp_path, monkeypatch):
    # the latency_median metric of an edge/bench latency result, bound here to the ResNet-50 cell (the
    # chapter binds that cell to its own complexity_latency run; edge devices use this metric)
    data = tables.load_paper_values("001")
    for b in data["bindings"]:
        if b["cell"] == "table1.resnet50ft.inference_time" and b.get("track") == "eager":
            b.clear()
            b.update({"cell": "table1.resnet50ft.inference_time", "track": "eager",
                      "experiment": "latency.torchvision-resnet50.cpu.t2",
                      "metric": "latency_median", "args": {"runtime": "torch", "batch": 1},
                      "command": "python -m facelab bench torchvision:resnet50 --threads 2 --results-dir results",
                      "note": "ours: torchvision ResNet-50, eager PyTorch, batch 1, 2 threads"})
    monkeypatch.setattr(comparison, "load_paper_values", lambda paper: data)
    runs = [edge_bench.run_record(runtime="torch", runtime_version="t", batch=1, threads=2, device="cpu",
                                  times_s=[0.120, 0.125, 0.130], warmup=1, flops_per_image=8e9, matmul_gflops=100.0)]
    lat = edge_bench.latency_result(
        experiment="latency.torchvision-resnet50.cpu.t2", chapter="bench", profile="small", seed=0, config={},
        metrics=edge_bench.latency_metrics(model="torchvision:resnet50", input_shape=(3, 224, 224), runs=runs,
                                           matmul={"n": 64, "gflops": 100.0}, threads=2, device="cpu", cpu="Test CPU",
                                           timed_region={}),
        times_ms={}, provenance=_tracked())
    edge_bench.write_result(lat, tmp_path)
    comp = Result(chapter="bench", experiment="complexity.torchvision-mobilenet_v2", profile="small", seed=0,
                  config={}, metrics={"params": 3_504_872, "size_mb": 14.05}, provenance=_tracked())
    save_result(comp, tmp_path)
    df = comparison.compare("001", results_dir=tmp_path, only_bound=True)
    df = df[df["track"] != "ort"].set_index("key")
    t = df.loc["table1.resnet50ft.inference_time"]
    assert t["status"] == "ok" and t["ours"] == pytest.approx(0.125) and t["difference"] == pytest.approx(0.125 - 0.16)
    assert "Test CPU" in t["detail"] and "1.56× its FLOP floor" in t["detail"]  # 125 ms / (8 GFLOP at 100 GFLOP/s = 80 ms)
    p = df.loc["text.mobilenetv2.parameters"]
    assert p["ours"] == 3_504_872 and p["difference"] == pytest.approx(3_504_872 - 3.5e6)
    assert df.loc["text.mobilenetv2.model_size", "ours"] == pytest.approx(14.05)
    assert df.loc["table1.resnet50ft.parameters", "status"] == "not run"
    assert "python -m facelab model summary torchvision:resnet50" in df.loc["table1.resnet50ft.parameters", "note"]


def test_incompatible_unit_in_a_binding_is_an_error(tmp_path, monkeypatch):
    comp = Result(chapter="bench", experiment="complexity.torchvision-mobilenet_v2", profile="small", seed=0,
                  config={}, metrics={"params": 3_504_872, "size_mb": 14.05})
    save_result(comp, tmp_path)
    data = tables.load_paper_values("001")
    for b in data["bindings"]:
        if b["cell"] == "text.mobilenetv2.model_size":
            b["args"] = {"path": "params", "unit": "parameters"}  # parameters shown in an MB cell
    monkeypatch.setattr(comparison, "load_paper_values", lambda paper: data)
    with pytest.raises(ValueError, match="cannot convert 'parameters' to 'MB'"):
        comparison.compare("001", results_dir=tmp_path, tables=["text"])


def test_render_formats_and_cli(tmp_path, capsys):
    save_lfw_result(tmp_path, fresh=True)
    md = comparison.render("reference_dlib", results_dir=tmp_path)
    assert md.startswith("**dlib documentation") and "(paper 99.13%)" in md
    long = comparison.render("reference_dlib", fmt="long", results_dir=tmp_path)
    assert long.splitlines()[0].startswith("| Table | Row | Column | Track | Paper | Ours | Ours − paper |")
    assert "not reproduced" in long
    assert '<div class="facelab-paper-table">' in comparison.render("reference_dlib", fmt="html", results_dir=tmp_path)
    csv = pd.read_csv(io.StringIO(comparison.render("reference_dlib", fmt="csv", results_dir=tmp_path)))
    assert list(csv.columns)[: len(tables.LONG_COLUMNS)] == tables.LONG_COLUMNS
    with pytest.raises(KeyError, match="no table"):
        comparison.compare("001", tables=["table9"])
    with pytest.raises(KeyError, match="no paper values"):
        tables.load_paper_values("999")
    parser = argparse.ArgumentParser()
    comparison.add_parser(parser.add_subparsers())
    args = parser.parse_args(["tables", "001", "--table", "table3", "--results-dir", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "368 × (9+8+…+1) = 16560" in out and out.count("| 1 image |") == 1


def test_lookup_for_prose(tmp_path):
    save_lfw_result(tmp_path, fresh=True)
    row = comparison.lookup("reference_dlib", "dlib_docs.lfw_accuracy.no_jitter", results_dir=tmp_path)
    assert row["paper"] == 99.13 and row["status"] == "ok"
    with pytest.raises(KeyError):
        comparison.lookup("reference_dlib", "dlib_docs.nope", results_dir=tmp_path)


# ----------------------------------------------------------------------------- the paper-shaped renderer


def _paper_grid(paper: str, table: str) -> tuple[list[str], list[str]]:
    """The paper's rows and columns of a table, in its order, from the paper-values file (cells
    printed inside another cell and columns the book adds are not the paper's)."""
    cells = [c for c in tables.load_paper_values(paper)["tables"][table]["cells"] if not c.get("part_of")]
    paper_cells = [c for c in cells if not c.get("ours_only")]
    return (list(dict.fromkeys(c["row"] for c in paper_cells)), list(dict.fromkeys(c["column"] for c in paper_cells)))


@pytest.mark.parametrize("paper", ["000", "001", "002"])
def test_every_table_renders_in_the_papers_shape_from_the_stored_results(paper, repo):
    for table in tables.load_paper_values(paper)["tables"]:
        shaped = comparison.table(paper, table, results_dir=repo / "results")
        rows, columns = _paper_grid(paper, table)
        assert [r for r in shaped.rows if r not in shaped.ours_only_rows] == rows, table
        assert [c for c in shaped.columns if c not in shaped.ours_only_columns] == columns, table
        frame = shaped.as_frame()
        assert frame.shape == (len(shaped.rows), len(shaped.columns))
        texts = [str(v) for v in frame.to_numpy().ravel()] + list(frame.index) + list(frame.columns)
        assert not [t for t in texts if re.search(r"\b(nan|NaN|None)\b", t)], table
        html = shaped.to_html()
        assert not re.search(r">\s*(nan|NaN|None)\s*<", html), table
        # every footnote mark points at a footnote
        marks = {m for cell in shaped.grid.values() for m in cell.marks}
        marks |= {m for ms in [*shaped.paper_only_rows.values(), *shaped.paper_only_columns.values()] for m in ms}
        assert marks <= set(range(1, len(shaped.footnotes) + 1)), table


TOY_PAPER = {
    "paper": "toy", "title": "Toy", "citation": "t", "source": "s",
    "tables": {"t1": {"title": "Table 1", "caption": "Accuracy.", "better": "higher", "header_sep": ", ",
                      "tracks": [{"id": "a", "label": "recipe A"}, {"id": "b", "label": "recipe B"}],
                      "cells": [
        {"key": "t1.m.x", "row": "Model", "column": "LFW, acc", "value": 90.0, "unit": "%", "meaning": "m", "printed": "90.0"},
        {"key": "t1.m.y", "row": "Model", "column": "LFW, EER", "value": 5.0, "unit": "%", "meaning": "m", "printed": "5.0",
         "better": "lower"},
        {"key": "t1.o.x", "row": "Other [3]", "column": "LFW, acc", "value": 99.0, "unit": "%", "meaning": "m", "printed": "99.0"},
        {"key": "t1.o.y", "row": "Other [3]", "column": "LFW, EER", "value": None, "unit": "%", "meaning": "m", "printed": "n/a"},
        {"key": "t1.m.z", "row": "Model", "column": "LFW, size", "value": None, "unit": "MB", "meaning": "m", "printed": "",
         "ours_only": True},
        {"key": "t1.b.x", "row": "Base", "column": "LFW, acc", "value": 80.0, "unit": "%", "meaning": "m", "printed": "80.0"},
        {"key": "t1.b.x_change", "row": "Base", "column": "LFW, acc change", "value": -11.1, "unit": "%", "meaning": "m",
         "printed": "(-11%)", "part_of": "t1.b.x", "derived": {"op": "relative_change", "of": "t1.b.x", "vs": "t1.m.x"}},
    ]}},
    "bindings": [
        {"cell": "t1.m.x", "experiment": "toy.run", "metric": "value", "track": "a", "args": {"path": "acc_a", "unit": "fraction"},
         "note": "ours: trained on toy data"},
        {"cell": "t1.m.x", "experiment": "toy.run", "metric": "value", "track": "b", "args": {"path": "acc_b", "unit": "fraction"}},
        {"cell": "t1.m.y", "experiment": "toy.run", "metric": "value", "track": "a", "args": {"path": "eer", "unit": "fraction"}},
        {"cell": "t1.m.z", "experiment": "toy.run", "metric": "value", "args": {"path": "size", "unit": "MB"}},
        {"cell": "t1.o.x", "not_reproduced": "another paper's model"},
        {"cell": "t1.o.y", "not_reproduced": "another paper's model"},
        {"cell": "t1.b.x", "experiment": "toy.missing", "metric": "value", "track": "a", "args": {"path": "acc", "unit": "%"}},
    ],
}


@pytest.fixture
def toy_paper(monkeypatch, tmp_path):
    data = copy.deepcopy(TOY_PAPER)
    assert tables.validate_paper_values(data, "toy", metrics=comparison.METRICS) == []
    monkeypatch.setattr(comparison, "load_paper_values", lambda paper: copy.deepcopy(data))
    r = Result(chapter="99_toy", experiment="toy.run", profile="small", seed=0, config={},
               metrics={"acc_a": 0.912, "acc_b": 0.5, "eer": 0.051, "size": 4.9}, provenance=_tracked())
    save_result(r, tmp_path)
    return tmp_path


def test_cells_show_ours_beside_the_paper_with_tracks_and_footnotes(toy_paper):
    t = comparison.table("toy", "t1", results_dir=toy_paper)
    assert t.rows == ["Model", "Other [3]", "Base"] and t.columns == ["LFW, acc", "LFW, EER", "LFW, size"]
    cell = t.grid[("Model", "LFW, acc")]
    assert cell.text(with_marks=False) == "recipe A 91.2 · recipe B 50.0 (paper 90.0)"
    assert cell.tone == "match"  # 91.2 is within 5% of 90.0
    assert t.footnotes[cell.marks[0] - 1] == "ours: trained on toy data"
    eer = t.grid[("Model", "LFW, EER")]
    assert eer.text(with_marks=False) == "5.10 (paper 5.0)"  # one track: no label; 3 significant digits
    assert t.grid[("Model", "LFW, size")].text() == "4.90" and t.ours_only_columns == ["LFW, size"]
    # a row of another paper: its values alone, marked paper only, its reason once on the row label
    assert "Other [3]" in t.paper_only_rows and t.grid[("Other [3]", "LFW, EER")].text() == "n/a"
    assert t.footnotes[t.paper_only_rows["Other [3]"][0] - 1] == "another paper's model"
    # a missing result: 'not run' with the command, and the bracketed change printed inside its cell
    base = t.grid[("Base", "LFW, acc")]
    assert base.text(with_marks=False) == "not run (paper 80.0 (-11%))"
    assert any("python -m facelab run toy.missing" in t.footnotes[m - 1] for m in base.marks)
    html = t.to_html()
    assert 'colspan="3"' in html and "paper only" in html and "All cells (long form" in html
    assert t.to_markdown().startswith("**Table 1: Accuracy.**")


def test_derived_change_and_tone_direction(toy_paper, monkeypatch):
    data = copy.deepcopy(TOY_PAPER)
    data["bindings"][-1] = {"cell": "t1.b.x", "experiment": "toy.run", "metric": "value", "track": "a",
                            "args": {"path": "acc_b", "unit": "fraction"}}
    monkeypatch.setattr(comparison, "load_paper_values", lambda paper: copy.deepcopy(data))
    t = comparison.table("toy", "t1", results_dir=toy_paper)
    base = t.grid[("Base", "LFW, acc")]
    # (50.0 - 91.2) / 91.2 = -45%, printed inside the cell as the paper prints its change
    assert base.text(with_marks=False) == "50.0 (-45%) (paper 80.0 (-11%))"
    assert base.tone == "worse"  # higher is better and 50 < 80 by more than 5%
    long = t.long.set_index(["key", "track"])
    assert long.loc[("t1.b.x_change", "a"), "ours"] == pytest.approx(100 * (0.5 - 0.912) / 0.912)


def test_a_track_must_be_declared_and_bound_once(monkeypatch):
    data = copy.deepcopy(TOY_PAPER)
    data["bindings"].append({"cell": "t1.m.x", "experiment": "toy.run", "metric": "value", "track": "c",
                             "args": {"path": "acc_a", "unit": "fraction"}})
    data["bindings"].append(dict(data["bindings"][0]))
    errors = " | ".join(tables.validate_paper_values(data, "toy"))
    assert "track 'c' is not one of table t1's tracks" in errors and "bound twice on track 'a'" in errors
