"""Paper values (schema and internal consistency of the transcriptions) and the comparison renderer."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import io
import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from facelab import tables
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
            assert cell["printed"].strip() and cell["meaning"].strip() and cell["unit"].strip()
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
    assert counts["001"] > 250 and counts["003"] == 82  # 6x2 + 10x7


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
    errors = " | ".join(tables.validate_paper_values(bad, "other"))
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
                            code_modules=list(exp.code_modules), device="cpu", started=time.time(),
                            finished=time.time()) if fresh else {})
    r = Result(chapter=exp.chapter, experiment=exp.name, profile="smoke", seed=0, config=dataclasses.asdict(config),
               metrics={}, arrays=lfw_arrays(), provenance=prov)
    save_result(r, root)
    return r


def test_ours_is_computed_from_a_result_file(tmp_path):
    r = save_lfw_result(tmp_path, fresh=True)
    df = tables.compare("reference_dlib", results_dir=tmp_path)
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
    row = tables.compare("reference_dlib", results_dir=tmp_path).set_index("key").loc["dlib_docs.lfw_accuracy.no_jitter"]
    assert row["status"] == "stale" and "STALE" in row["note"] and not math.isnan(row["ours"])


def test_missing_result_is_not_run_never_a_number(tmp_path):
    df = tables.compare("reference_dlib", results_dir=tmp_path)
    row = df.set_index("key").loc["dlib_docs.lfw_accuracy.no_jitter"]
    assert row["status"] == "not run" and math.isnan(row["ours"]) and math.isnan(row["difference"])
    assert "python -m facelab run getting_started.lfw_dlib" in row["note"]
    shown = tables.display_frame(df)
    assert "not run" in set(shown["Ours"]) and "not reproduced" in set(shown["Ours"])


def test_latency_and_complexity_results_map_to_paper_001(tmp_path, monkeypatch):
    # the latency_median metric of an edge/bench latency result, bound here to the ResNet-50 cell (the
    # chapter binds that cell to its own complexity_latency run; edge devices use this metric)
    data = tables.load_paper_values("001")
    for b in data["bindings"]:
        if b["cell"] == "table1.resnet50ft.inference_time":
            b.clear()
            b.update({"cell": "table1.resnet50ft.inference_time", "experiment": "latency.torchvision-resnet50.cpu.t2",
                      "metric": "latency_median", "args": {"runtime": "torch", "batch": 1},
                      "command": "python -m facelab bench torchvision:resnet50 --threads 2 --results-dir results",
                      "note": "ours: torchvision ResNet-50, eager PyTorch, batch 1, 2 threads"})
    monkeypatch.setattr(tables, "load_paper_values", lambda paper: data)
    runs = [edge_bench.run_record(runtime="torch", runtime_version="t", batch=1, threads=2, device="cpu",
                                  times_s=[0.120, 0.125, 0.130], warmup=1, flops_per_image=8e9, matmul_gflops=100.0)]
    lat = edge_bench.latency_result(
        experiment="latency.torchvision-resnet50.cpu.t2", chapter="bench", profile="small", seed=0, config={},
        metrics=edge_bench.latency_metrics(model="torchvision:resnet50", input_shape=(3, 224, 224), runs=runs,
                                           matmul={"n": 64, "gflops": 100.0}, threads=2, device="cpu", cpu="Test CPU",
                                           timed_region={}),
        times_ms={}, provenance={})
    edge_bench.write_result(lat, tmp_path)
    comp = Result(chapter="bench", experiment="complexity.torchvision-mobilenet_v2", profile="small", seed=0,
                  config={}, metrics={"params": 3_504_872, "size_mb": 14.05})
    save_result(comp, tmp_path)
    df = tables.compare("001", results_dir=tmp_path, only_bound=True).set_index("key")
    t = df.loc["table1.resnet50ft.inference_time"]
    assert t["status"] == "ok" and t["ours"] == pytest.approx(0.125) and t["difference"] == pytest.approx(0.125 - 0.16)
    assert "Test CPU" in t["note"] and "1.56× its FLOP floor" in t["note"]  # 125 ms / (8 GFLOP at 100 GFLOP/s = 80 ms)
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
    monkeypatch.setattr(tables, "load_paper_values", lambda paper: data)
    with pytest.raises(ValueError, match="cannot convert 'parameters' to 'MB'"):
        tables.compare("001", results_dir=tmp_path, tables=["text"])


def test_render_formats_and_cli(tmp_path, capsys):
    save_lfw_result(tmp_path, fresh=True)
    md = tables.render("reference_dlib", results_dir=tmp_path)
    assert md.splitlines()[0].startswith("| Table | Row | Column | Paper | Ours | Ours − paper |")
    assert "99.13%" in md and "not reproduced" in md
    assert tables.render("reference_dlib", fmt="html", results_dir=tmp_path).lstrip().startswith("<table")
    csv = pd.read_csv(io.StringIO(tables.render("reference_dlib", fmt="csv", results_dir=tmp_path)))
    assert list(csv.columns) == tables.TABLE_COLUMNS
    with pytest.raises(KeyError, match="no table"):
        tables.compare("001", tables=["table9"])
    with pytest.raises(KeyError, match="no paper values"):
        tables.load_paper_values("999")
    parser = argparse.ArgumentParser()
    tables.add_parser(parser.add_subparsers())
    args = parser.parse_args(["tables", "001", "--table", "table3", "--results-dir", str(tmp_path)])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "368 × (9+8+…+1) = 16560" in out and out.count("\n") == 8 + 2


def test_lookup_for_prose(tmp_path):
    save_lfw_result(tmp_path, fresh=True)
    row = tables.lookup("reference_dlib", "dlib_docs.lfw_accuracy.no_jitter", results_dir=tmp_path)
    assert row["paper"] == 99.13 and row["status"] == "ok"
    with pytest.raises(KeyError):
        tables.lookup("reference_dlib", "dlib_docs.nope", results_dir=tmp_path)
