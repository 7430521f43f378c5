"""Latency statistics, thread handling, the FLOP floor, ONNX export/check and the latency result."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from facelab.bench import complexity, edge_bench, latency, onnx_export
from facelab.results import load_result, save_result

torch.set_num_threads(1)
SHAPE = (3, 16, 16)


def tiny_net() -> nn.Sequential:
    g = torch.Generator().manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(8, 4))
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return m.eval()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("cache")
        mp.setenv("FACELAB_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def exported(cache):
    model = tiny_net()
    return model, onnx_export.export_onnx(model, SHAPE, name="tiny")


# ----------------------------------------------------------------------------- statistics


def test_summarize_times_matches_numpy_percentiles():
    s = edge_bench.summarize_times([k / 1e3 for k in range(1, 11)])  # 1..10 ms
    assert s["median_ms"] == pytest.approx(5.5)
    assert s["p10_ms"] == pytest.approx(1.9)  # linear interpolation: 1 + 0.9 * (2 - 1)
    assert s["p90_ms"] == pytest.approx(9.1)
    assert s["mean_ms"] == pytest.approx(5.5) and s["min_ms"] == pytest.approx(1) and s["repeats"] == 10
    with pytest.raises(ValueError):
        edge_bench.summarize_times([])


def test_time_calls_warmup_repeats_and_sync():
    calls, syncs, ticks = [], [], []
    times = edge_bench.time_calls(lambda: calls.append(1), repeats=4, warmup=2, sync=lambda: syncs.append(1),
                                  progress=lambda: ticks.append(1))
    assert len(times) == 4 and len(calls) == 6 and len(syncs) == 6 and len(ticks) == 4
    assert all(t >= 0 for t in times)
    with pytest.raises(ValueError):
        edge_bench.time_calls(lambda: None, repeats=0, warmup=0)


def test_run_record_floor_and_ratio():
    rec = edge_bench.run_record(runtime="torch", runtime_version="x", batch=2, threads=1, device="cpu",
                                times_s=[0.040, 0.040, 0.040], warmup=0, flops_per_image=1e9, matmul_gflops=100.0)
    assert rec["floor_ms"] == pytest.approx(20.0)  # 2 images x 1 GFLOP at 100 GFLOP/s
    assert rec["floor_ratio"] == pytest.approx(2.0)
    assert rec["per_image_median_ms"] == pytest.approx(20.0) and rec["images_per_s"] == pytest.approx(50.0)
    rec = edge_bench.run_record(runtime="torch", runtime_version="x", batch=1, threads=1, device="cpu",
                                times_s=[0.01], warmup=0, flops_per_image=None, matmul_gflops=100.0)
    assert rec["floor_ms"] is None and rec["floor_ratio"] is None
    rec = edge_bench.run_record(runtime="torch", runtime_version="x", batch=1, threads=1, device="cpu",
                                times_s=[0.01], warmup=0, flops_per_image=0, matmul_gflops=100.0)
    assert rec["floor_ms"] == 0 and rec["floor_ratio"] is None  # nothing counted: no ratio, no division by 0


def test_matmul_before_and_after_are_combined_by_the_median():
    n = 100
    before = {"n": n, "gflops": 2.0, "times_s": [1.0, 1.0], "method": "m"}
    after = {"n": n, "gflops": 0.6, "times_s": [3.0, 3.0], "method": "m"}
    m = edge_bench.combine_matmul(before, after)
    assert m["median_s"] == 2.0 and m["gflops"] == pytest.approx(2 * n**3 / 2.0 / 1e9)
    assert m["gflops_before"] == 2.0 and m["gflops_after"] == 0.6 and len(m["times_s"]) == 4


def test_torch_threads_restored_even_after_an_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError):
        with latency.torch_threads(2):
            assert torch.get_num_threads() == 2
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_matmul_throughput_is_positive_and_uses_2n3_flops():
    m = latency.torch_matmul_throughput(64, repeats=2, warmup=0)
    assert m["gflops"] == pytest.approx(2 * 64**3 / m["median_s"] / 1e9)
    assert m["gflops"] > 0 and len(m["times_s"]) == 2


@pytest.mark.parametrize("kw,match", [(dict(threads=0), "threads"), (dict(batches=(0,)), "batch"),
                                      (dict(runtimes=("tvm",)), "runtime"), (dict(repeats=0), "repeats"),
                                      (dict(device="tpu"), "device")])
def test_config_rejects_bad_parameters(kw, match):
    with pytest.raises(ValueError, match=match):
        latency.LatencyConfig(**kw).check()


def test_profiles_set_repeats():
    assert latency.LatencyConfig.for_profile("smoke").repeats == 5
    assert latency.LatencyConfig.for_profile("full", repeats=7).repeats == 7
    with pytest.raises(ValueError, match="profile"):
        latency.LatencyConfig.for_profile("huge")


# ----------------------------------------------------------------------------- ONNX


def test_export_sidecar_dynamic_batch_and_reuse(exported, cache):
    model, path = exported
    assert path.parent == cache / "onnx" and path.suffix == ".onnx"
    side = json.loads((path.parent / (path.name + ".json")).read_text())
    assert side["model"] == "tiny" and side["input_shape"] == list(SHAPE)
    assert side["flops_per_image"] == complexity.count_flops(model, SHAPE)
    session = onnx_export.onnx_session(path, threads=1)
    for batch in (1, 3):
        check = onnx_export.check_onnx(model, session, SHAPE, batch=batch)
        assert check.ok and check.rel_diff < 1e-5 and check.batch == batch
        assert check.max_abs_diff == pytest.approx(check.rel_diff * check.output_scale)
    mtime = path.stat().st_mtime_ns
    assert onnx_export.export_onnx(model, SHAPE, name="tiny") == path and path.stat().st_mtime_ns == mtime


def test_unexportable_model_is_a_clear_error(cache):
    class DataDependentBranch(nn.Module):
        input_shape = (4,)

        def forward(self, x):
            if x.sum() > 0:  # python control flow on a value: torch.export cannot trace it
                return x * 2
            return x - 1

    with pytest.raises(ValueError, match="--runtime torch") as err:
        onnx_export.export_onnx(DataDependentBranch(), name="bad")
    assert "\x1b" not in str(err.value)
    assert not list((cache / "onnx").glob("bad-*"))  # no partial file left


def test_check_detects_a_different_model(exported):
    _, path = exported
    other = tiny_net()
    with torch.no_grad():
        other[-1].bias += 1.0
    check = onnx_export.check_onnx(other, onnx_export.onnx_session(path, threads=1), SHAPE)
    assert not check.ok and check.max_abs_diff == pytest.approx(1.0, abs=1e-4)


class _ScaledSession:
    """Stands in for an ONNX Runtime session that returns PyTorch's output times ``factor``."""

    def __init__(self, model, factor):
        self.model, self.factor = model, factor

    def get_inputs(self):
        return [SimpleNamespace(name="input")]

    def run(self, _outputs, feed):
        with torch.no_grad():
            return [self.model(torch.from_numpy(feed["input"])).numpy() * self.factor]


def test_check_is_relative_to_the_output_scale():
    """Outputs of ~1e-9 (like torchvision's randomly initialised MobileNetV2): an error of 100% of the
    output is caught although it is far below any absolute tolerance; float32-level noise passes."""
    model = tiny_net()
    with torch.no_grad():
        model[-1].weight.mul_(1e-9)
        model[-1].bias.mul_(1e-9)
    wrong = onnx_export.check_onnx(model, _ScaledSession(model, 2.0), SHAPE)
    assert wrong.output_scale < 1e-7 and wrong.max_abs_diff < 1e-7 and not wrong.ok
    assert wrong.rel_diff == pytest.approx(1.0, rel=1e-6)
    close = onnx_export.check_onnx(model, _ScaledSession(model, 1 + 1e-6), SHAPE)
    assert close.ok and close.rel_diff == pytest.approx(1e-6, rel=0.2)  # float32 rounding of the product


def test_session_threads_and_missing_file(exported, tmp_path):
    _, path = exported
    s = edge_bench.ort_session(path, threads=2)
    assert s.get_session_options().intra_op_num_threads == 2
    with pytest.raises(FileNotFoundError, match="export"):
        edge_bench.ort_session(tmp_path / "none.onnx", threads=1)
    with pytest.raises(ValueError, match="threads"):
        edge_bench.ort_session(path, threads=0)


def test_onnxruntime_on_cuda_without_provider_is_a_clear_error(exported):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        onnx_export.onnx_session(exported[1], threads=1, device="cuda")


# ----------------------------------------------------------------------------- benchmark


@pytest.fixture(scope="module")
def bench_result(exported):
    model, _ = exported
    config = latency.LatencyConfig(threads=1, batches=(1, 2), repeats=3, warmup=1, matmul_size=128,
                                   matmul_repeats=2)
    return latency.latency_result(model, SHAPE, name="tiny", config=config, profile="smoke")


def test_benchmark_records_every_run_with_its_floor(bench_result):
    m = bench_result.metrics
    assert [(r["runtime"], r["batch"]) for r in m["runs"]] == [("torch", 1), ("torch", 2), ("onnxruntime", 1),
                                                             ("onnxruntime", 2)]
    gflops = m["matmul_floor"]["gflops"]
    assert len(bench_result.arrays["matmul_times_s"]) == 4  # 2 repeats before + 2 after the model runs
    assert m["matmul_floor"]["gflops_before"] > 0 and m["matmul_floor"]["gflops_after"] > 0
    for r in m["runs"]:
        assert r["threads"] == 1 and r["repeats"] == 3 and r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
        assert r["floor_ms"] == pytest.approx(m["flops_per_image"] * r["batch"] / (gflops * 1e9) * 1e3)
        assert r["floor_ratio"] == pytest.approx(r["median_ms"] / r["floor_ms"])
        times = bench_result.arrays["times_ms"][edge_bench.run_id(r)]
        assert len(times) == 3 and np.median(times) == pytest.approx(r["median_ms"])
    assert m["preprocessing_included"] is False and m["postprocessing_included"] is False
    assert set(m["timed_region"]) == {"torch", "onnxruntime"}
    assert m["onnx_check"]["ok"] and m["flops_per_image"] == complexity.count_flops(tiny_net(), SHAPE)
    assert m["macs_per_image"] * 2 == m["flops_per_image"]


def test_result_provenance_and_round_trip(bench_result, tmp_path):
    r = bench_result
    assert r.experiment == "latency.tiny.cpu.t1" and r.chapter == "bench" and r.profile == "smoke"
    assert r.provenance["torch_threads"] == 1 and r.provenance["ort_intra_op_threads"] == 1
    assert r.provenance["cpu"] and "torch" in r.provenance["versions"] and "onnxruntime" in r.provenance["versions"]
    assert torch.get_num_threads() == 1  # the module's setting, restored after the run
    back = load_result(save_result(r, tmp_path))
    assert back.metrics["runs"] == json.loads(json.dumps(r.metrics["runs"]))


def test_threads_are_set_for_the_run_and_restored(exported):
    model, _ = exported
    seen = []

    class Probe(nn.Module):
        input_shape = SHAPE

        def forward(self, x):
            seen.append(torch.get_num_threads())
            return model(x)

    before = torch.get_num_threads()
    latency.benchmark(Probe(), name="probe", config=latency.LatencyConfig(
        threads=2, runtimes=("torch",), repeats=2, warmup=0, matmul_size=0))
    assert set(seen[-2:]) == {2} and torch.get_num_threads() == before


def test_model_on_wrong_device_is_rejected():
    with pytest.raises(ValueError):
        latency.benchmark(tiny_net(), SHAPE, name="x", config=latency.LatencyConfig(device="cuda:0"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_path_synchronises():
    model = tiny_net().to("cuda")
    metrics, _ = latency.benchmark(model, SHAPE, name="tiny", config=latency.LatencyConfig(
        device="cuda", runtimes=("torch",), repeats=3, warmup=1, matmul_size=256))
    assert metrics["runs"][0]["device"] == "cuda" and metrics["matmul_floor"]["gflops"] > 0


def test_latency_figure_shows_runs_floor_and_ratio(bench_result):
    import matplotlib

    matplotlib.use("Agg")
    from facelab.viz.latency import latency_figure

    for kind in ("bar", "box"):
        fig = latency_figure([bench_result, bench_result.__dict__], kind=kind)
        ax = fig.axes[0]
        texts = [t.get_text() for t in ax.texts]
        assert sum("× floor" in t for t in texts) == 2 * len(bench_result.metrics["runs"])
        assert len(ax.get_xticks()) == 2 * len(bench_result.metrics["runs"])
        assert ax.get_ylabel() == "ms per image"
        matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="kind"):
        latency_figure(bench_result, kind="pie")
