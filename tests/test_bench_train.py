"""Training-throughput benchmark: FLOPs of a training step, lever records, floors, the result, the
table, the suite and the `bench --train` command (tiny models, one thread, a few steps)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from torch import nn

from facelab.bench import cli as bench_cli
from facelab.bench import train_throughput as tt
from facelab.results import load_result, save_result
from facelab.train import speed as speed_mod

SHAPE = (3, 16, 16)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def tiny_classifier(classes: int = 5) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, classes))


def quick(**kw) -> tt.TrainBenchConfig:
    base = dict(threads=1, batch=4, steps=2, warmup=0, num_classes=5, matmul_size=64, matmul_repeats=1)
    return tt.TrainBenchConfig(**(base | kw)).check()


def test_training_flops_closed_form_with_a_grouped_convolution():
    # conv 3->6 (3x3, pad 1) on 8x8, depthwise 6->6 (3x3, stride 2) to 4x4, linear 96->5
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1, groups=6, stride=2),
                          nn.Flatten(), nn.Linear(96, 5))
    f = tt.training_flops(model, (3, 8, 8), num_classes=5)
    conv1, dw, fc = 2 * 64 * 6 * 3 * 9, 2 * 16 * 6 * 1 * 9, 2 * 96 * 5
    assert f["forward"] == conv1 + dw + fc
    # the first conv needs no input gradient; the others need input and weight gradients
    assert f["backward"] == conv1 + 2 * dw + 2 * fc
    assert f["total"] == f["forward"] + f["backward"]


def test_benchmark_records_every_lever_with_floor_ratios(monkeypatch):
    monkeypatch.setattr(speed_mod, "cpu_flags", lambda cpuinfo=None: frozenset({"amx_bf16"}))
    metrics, arrays = tt.benchmark(tiny_classifier(), SHAPE, name="tiny",
                                   config=quick(levers=("fp32", "channels_last", "bf16"), data=True))
    runs = {r["lever"]: r for r in metrics["runs"]}
    assert set(runs) == {"fp32", "channels_last", "bf16"} and runs["fp32"]["speedup"] == 1.0
    fp32_floor = metrics["matmul_floor"]["float32"]["gflops"]
    for r in runs.values():
        assert r["images_per_s"] == pytest.approx(4 / r["median_s"])
        assert r["gflops"] == pytest.approx(metrics["train_flops_per_image"]["total"] * 4 / r["median_s"] / 1e9)
        assert r["floor_ratio"] == pytest.approx(fp32_floor / r["gflops"])
        assert len(arrays["step_times_s"][r["lever"]]) == 2 and len(arrays["step_others_cores"][r["lever"]]) == 2
        assert r["steps_used"] <= 2 and r["quiet"] in (True, False, None)
    assert runs["bf16"]["speed"]["bf16_used"] and "bf16_floor_ratio" in runs["bf16"]
    assert "bf16_floor_ratio" not in runs["fp32"] and "bfloat16" in metrics["matmul_floor"]
    assert metrics["cpu"]["isa_flags"]["amx_bf16"] and len(metrics["load_average"]["before"]) == 3
    assert metrics["other_processes_cores"] is None or 0 <= metrics["other_processes_cores"] <= 64
    data = metrics["data_path"]
    assert data["per_sample"]["median_s"] > 0 and data["batched"]["median_s"] > 0
    assert 0 < data["batched"]["stall_vs"]["fp32"] < 1
    row = tt.throughput_table([{"metrics": metrics}]).iloc[0]
    assert row["fit img/s before"] == pytest.approx(4 / (runs["fp32"]["median_s"] + data["per_sample"]["median_s"]))
    best = max(runs.values(), key=lambda r: r["images_per_s"])
    assert row["best lever"] == best["lever"]
    assert row["fit img/s after"] == pytest.approx(4 / (best["median_s"] + data["batched"]["median_s"]))


def test_bf16_lever_is_skipped_with_the_reason_on_a_cpu_without_bf16(monkeypatch):
    monkeypatch.setattr(speed_mod, "cpu_flags", lambda cpuinfo=None: frozenset({"avx2"}))
    metrics, _ = tt.benchmark(tiny_classifier(), SHAPE, name="tiny",
                              config=quick(levers=("fp32", "bf16+channels_last"), data=False))
    skipped = metrics["runs"][1]
    assert "neither amx_bf16 nor avx512_bf16" in skipped["skipped"] and "images_per_s" not in skipped
    assert "bfloat16" not in metrics["matmul_floor"] and metrics["bf16_floor_missing_reason"]


def test_compile_is_skipped_without_a_cpp_compiler(monkeypatch):
    monkeypatch.setattr(tt, "compiler_available", lambda: (False, "no C++ compiler 'g++' on PATH"))
    metrics, _ = tt.benchmark(tiny_classifier(), SHAPE, name="tiny", config=quick(levers=("fp32", "compile"),
                                                                                   data=False, matmul_size=0))
    assert metrics["runs"][1] == {"lever": "compile", "skipped": "no C++ compiler 'g++' on PATH"}
    assert metrics["matmul_floor"] is None and "floor_ratio" not in metrics["runs"][0]


def test_benchmark_leaves_the_model_and_threads_alone():
    model = tiny_classifier()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    threads = torch.get_num_threads()
    tt.benchmark(model, SHAPE, name="tiny", config=quick(threads=2, levers=("fp32", "channels_last"), data=False))
    assert torch.get_num_threads() == threads
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="unknown lever"):
        quick(levers=("fp16",))
    with pytest.raises(ValueError, match="batch"):
        quick(batch=1)
    assert tt.TrainBenchConfig.for_profile("small", heavy=True).steps < tt.TrainBenchConfig.for_profile("small").steps


def test_result_round_trip_and_table(tmp_path):
    result = tt.train_throughput_result(tiny_classifier(), SHAPE, name="tiny",
                                        config=quick(levers=("fp32", "channels_last"), data=False))
    assert result.experiment == "trainspeed.tiny.16px.b4.cpu.t1"
    save_result(result, tmp_path)
    loaded = tt.load_throughput_results(tmp_path, profile="small")
    assert [r.experiment for r in loaded] == [result.experiment]
    assert load_result(tmp_path / "bench" / result.filename).metrics["runs"] == json.loads(
        json.dumps(result.metrics["runs"]))
    table = tt.throughput_table(loaded)
    row = table.loc[("tiny", "16x16", 4)]
    assert row["fp32 img/s"] == pytest.approx(result.metrics["runs"][0]["images_per_s"])
    assert row["best lever"] in ("fp32", "channels_last") and row["channels_last ×"] > 0
    assert tt.throughput_table([]).empty


def test_quiet_steps_leave_out_steps_measured_under_load():
    times, others = [1.0, 5.0, 1.2, 1.1, 6.0], [0.0, 1.5, 0.1, 0.2, 2.0]
    assert tt.quiet_steps(times, others, 0.25) == ([1.0, 1.2, 1.1], True)
    assert tt.quiet_steps(times, [1.0] * 5, 0.25) == (times, False)  # too few quiet steps: all, flagged
    assert tt.quiet_steps(times, others, None) == (times, None)
    assert tt.quiet_steps(times, [None] * 5, 0.25) == (times, None)


def test_other_cores_subtracts_this_process():
    before = {"wall": 0.0, "machine_busy": 100.0, "own": 10.0}
    after = {"wall": 10.0, "machine_busy": 125.0, "own": 25.0}  # 25 s busy, 15 s of them ours
    assert tt.other_cores(before, after) == pytest.approx(1.0)
    assert tt.other_cores(None, after) is None
    sample = tt.cpu_seconds()
    assert sample is None or sample["machine_busy"] >= 0


def test_wait_for_quiet_polls_until_other_processes_are_idle(monkeypatch):
    busy = iter([3.0, 1.2, 0.1])
    monkeypatch.setattr(tt, "other_cores", lambda before, after: next(busy))
    slept = []
    monkeypatch.setattr(tt.time, "sleep", slept.append)
    out = tt.wait_for_quiet(0.2, window_s=7)
    assert out["quiet"] and out["busy_cores"] == 0.1 and slept == [7, 7, 7]
    monkeypatch.setattr(tt, "other_cores", lambda before, after: 2.0)
    out = tt.wait_for_quiet(0.2, window_s=1, timeout_s=0)
    assert not out["quiet"] and out["busy_cores"] == 2.0


def test_suite_covers_every_registered_model():
    from facelab.registry import list_models

    names = {e.name for e in tt.suite_entries()}
    assert set(list_models()) <= names and "torchvision:mobilenet_v2" in names
    with pytest.raises(KeyError, match="not in the training suite"):
        tt.suite_entries(["nope"])


def test_stn_suite_entry_builds_at_the_chapter_3_size():
    from facelab.bench.cli import load_model

    entry = tt.suite_entries(["stn_resnet_affine"])[0]
    model, shape = load_model(entry.name, num_classes=7, **entry.model_kwargs)
    assert shape == (3, 40, 40) and model(torch.zeros(2, *shape)).shape == (2, 7)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_bench_train_cli_json_and_stored_result(capsys, tmp_path):
    assert run_cli(["bench", "torchvision:squeezenet1_1", "--train", "--input-shape", "3,32,32", "--batch", "4",
                    "--threads", "1", "--repeats", "1", "--warmup", "0", "--levers", "fp32", "channels_last",
                    "--classes", "5", "--matmul-size", "64", "--no-data", "--no-progress",
                    "--results-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["experiment"] == "trainspeed.torchvision-squeezenet1_1.32px.b4.cpu.t1"
    assert [r["lever"] for r in out["runs"]] == ["fp32", "channels_last"] and "img/s" in captured.err
    stored = load_result(out["result_file"])
    assert stored.config["levers"] == ["fp32", "channels_last"] and stored.provenance["torch_threads"] == 1


def test_bench_train_cli_rejects_several_batches():
    with pytest.raises(ValueError, match="one batch size"):
        run_cli(["bench", "torchvision:squeezenet1_1", "--train", "--batch", "4", "8"])
    with pytest.raises(ValueError, match="for --train"):
        run_cli(["bench", "all"])
