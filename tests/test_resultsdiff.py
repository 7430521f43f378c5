"""``python -m facelab results diff``: exact comparison of two results folders, timings skipped."""

from __future__ import annotations

import copy
import json

import pytest

from facelab import cli, resultsdiff
from facelab.results import Result, save_result


def _result(**metric_changes) -> Result:
    metrics = {
        "eer": {"cosine": {"t1_ff": 0.39375, "t1_fp": float("nan")}}, "n_train_images": 4348,
        "history": {"train_loss": [2.5, 2.1], "seconds": [10.0, 6.6], "images_per_s": [2.4, 3.6]},
        "seconds": 19.9, "train_seconds": 12.1, "embed_images_per_s": 10.8,
        "latency": {"t1": {"median_ms": 75.6, "matmul_gflops": 93.1}},
    }
    metrics.update(metric_changes)
    return Result(chapter="02_x", experiment="squeezefaceposenet.train.x", profile="smoke", seed=0, config={"epochs": 1},
                  metrics=metrics, arrays={"scores": [0.5, 0.25, -0.125]},
                  provenance={"finished": "2026-01-01T00:00:00+00:00", "wall_time_s": 20.0})


def _diff(a, b, capsys, *extra):
    rc = cli.main(["results", "diff", str(a), str(b), *extra])
    return rc, capsys.readouterr().out


def test_identical_runs_pass_and_timings_and_provenance_are_ignored(tmp_path, capsys):
    save_result(_result(), tmp_path / "a")
    other = _result(seconds=25.0, train_seconds=99.0, embed_images_per_s=1.0,
                    history={"train_loss": [2.5, 2.1], "seconds": [1.0], "images_per_s": [9.0, 9.0]},
                    latency={"t1": {"median_ms": 10.0, "matmul_gflops": 1.0}, "t2": {}})
    other.provenance = {"finished": "2027-05-05T00:00:00+00:00", "wall_time_s": 1.0, "host": "elsewhere"}
    save_result(other, tmp_path / "b")
    rc, out = _diff(tmp_path / "a", tmp_path / "b", capsys)
    assert rc == 0, out
    assert "results identical: 1 result(s) compared" in out


def test_a_changed_metric_fails_and_is_named(tmp_path, capsys):
    save_result(_result(), tmp_path / "a")
    changed = _result(eer={"cosine": {"t1_ff": 0.39375000000000004, "t1_fp": float("nan")}})
    changed.arrays["scores"][2] = -0.126
    save_result(changed, tmp_path / "b")
    rc, out = _diff(tmp_path / "a", tmp_path / "b", capsys)
    assert rc == 1
    assert "02_x/squeezefaceposenet.train.x--smoke.json: metrics/eer/cosine/t1_ff: 0.39375 != 0.39375000000000004" in out
    assert "arrays/scores[2]: -0.125 != -0.126" in out
    assert "not identical: 2 difference(s)" in out


def test_an_empty_folder_or_a_missing_result_fails(tmp_path, capsys):
    save_result(_result(), tmp_path / "a")
    (tmp_path / "empty").mkdir()
    rc, out = _diff(tmp_path / "a", tmp_path / "empty", capsys)
    assert rc == 1 and "no result JSON under" in out
    save_result(_result(), tmp_path / "b")
    extra = _result()
    extra.experiment = "squeezefaceposenet.train.y"
    save_result(extra, tmp_path / "b")
    rc, out = _diff(tmp_path / "a", tmp_path / "b", capsys)
    assert rc == 1 and "squeezefaceposenet.train.y--smoke.json: only in" in out
    rc, out = _diff(tmp_path / "a", tmp_path / "b", capsys, "--common-only")
    assert rc == 0
    # A folder that does not exist is a usage error (exit 2, one line on stderr).
    assert cli.main(["results", "diff", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_non_result_json_is_not_a_result(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.json").write_text(json.dumps({"not": "a result"}))
    save_result(_result(), tmp_path / "b")
    rc, out = _diff(tmp_path / "a", tmp_path / "b", capsys, "--common-only")
    assert rc == 1 and "no result JSON under" in out


def test_exact_comparison_rules():
    a = {"metrics": {"x": 1, "flag": True, "nan": float("nan"), "l": [1, 2], "n": {"k": 1}}}
    assert resultsdiff.diff_results(a, copy.deepcopy(a)) == []
    b = copy.deepcopy(a)
    b["metrics"].update(x=1.0, flag=1, l=[1, 2, 3], n={"k": 1, "new": 0})
    lines = resultsdiff.diff_results(a, b)
    assert "metrics/x: 1 != 1.0" in lines  # an int that became a float is a difference
    assert "metrics/flag: true != 1" in lines
    assert "metrics/l: 2 items != 3 items" in lines
    assert "metrics/n/new: only in B" in lines
    # --ignore adds keys to the timing rule.
    assert resultsdiff.diff_results(a, b, ignore=frozenset({"x", "flag", "l", "new"})) == []


@pytest.mark.parametrize("key, timing", [
    ("seconds", True), ("train_seconds", True), ("images_per_s", True), ("embed_images_per_s", True),
    ("wall_time_s", True), ("median_ms", True), ("latency", True), ("matmul_gflops", True), ("floor_ratio", True),
    ("eer", False), ("n_pairs_scored", False), ("lfw_accuracy_sd", False), ("val_mse_se", False), ("parameters", False),
])
def test_timing_key_rule(key, timing):
    assert resultsdiff.is_timing_key(key) is timing
