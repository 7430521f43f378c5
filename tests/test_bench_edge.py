"""The standalone edge script: runs without torch and facelab, and writes facelab's result format."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from facelab import comparison, results
from facelab.bench import edge_bench, latency, onnx_export

torch.set_num_threads(1)
SCRIPT = Path(edge_bench.__file__)
SHAPE = (3, 16, 16)
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
CPU implementer\t: 0x41
Hardware\t: BCM2835
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    g = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return onnx_export.export_onnx(model, SHAPE, name="tiny-edge", path=tmp_path_factory.mktemp("onnx") / "tiny.onnx")


def run_standalone(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the script with torch and facelab made unimportable (as on a device without them)."""
    code = ("import sys, runpy\n"
            "for name in ('torch', 'facelab', 'torchvision'):\n"
            "    sys.modules[name] = None  # any import of these now raises ImportError\n"
            f"sys.argv = ['edge_bench.py'] + {args!r}\n"
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_script_imports_only_stdlib_numpy_onnxruntime():
    tree = ast.parse(SCRIPT.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"numpy", "onnxruntime"}


def test_schema_version_matches_facelab():
    assert edge_bench.SCHEMA_VERSION == results.SCHEMA_VERSION


def test_standalone_run_writes_a_facelab_result(onnx_file, tmp_path):
    proc = run_standalone([str(onnx_file), "--threads", "1", "--batch", "1", "2", "--repeats", "3", "--warmup", "1",
                           "--matmul-size", "128", "--device-label", "Test Board", "--results-dir", "out"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "out" / "bench" / "latency.tiny-edge.Test-Board.t1--small.json"
    assert path.is_file(), proc.stderr
    r = results.load_result(path)  # facelab reads it like any result
    m = r.metrics
    assert m["model"] == "tiny-edge" and m["input_shape"] == list(SHAPE) and m["device_label"] == "Test Board"
    assert [(x["runtime"], x["batch"]) for x in m["runs"]] == [("onnxruntime", 1), ("onnxruntime", 2)]
    side = json.loads(Path(str(onnx_file) + ".json").read_text())
    assert m["flops_per_image"] == side["flops_per_image"] and m["runs"][0]["floor_ratio"] > 0
    assert m["onnx_sha256"] == edge_bench.file_sha256(onnx_file)
    assert r.provenance["versions"].keys() >= {"python", "numpy", "onnxruntime"}
    assert r.provenance["ort_intra_op_threads"] == 1 and r.provenance["wall_time_s"] >= 0
    assert len(r.arrays["times_ms"]["onnxruntime.b2"]) == 3 and len(r.arrays["matmul_times_s"]) == 6
    # The same format as the host benchmark: every key the host writes for a run and for the metrics core.
    host = latency.benchmark(nn.Linear(2, 2), (2,), name="h", config=latency.LatencyConfig(
        runtimes=("torch",), repeats=1, warmup=0, matmul_size=16))[0]
    assert set(m["runs"][0]) == set(host["runs"][0])
    core = set(edge_bench.latency_metrics(model="x", input_shape=(1,), runs=[], matmul={}, threads=1, device="cpu",
                                          cpu="c", timed_region={}))
    assert core <= set(m) and core <= set(host)
    # ... and the tables' latency metric reads it.
    ours = comparison.METRICS["latency_median"](r, runtime="onnxruntime", batch=2)
    assert ours.value == pytest.approx(m["runs"][1]["median_ms"]) and "Test Board" in ours.detail


def test_without_sidecar_the_floor_is_missing_with_a_reason(onnx_file, tmp_path):
    bare = tmp_path / "bare.onnx"
    shutil.copy(onnx_file, bare)
    r = edge_bench.bench_onnx_file(bare, threads=1, repeats=2, warmup=0, matmul_size=64, device_label="x")
    assert r["metrics"]["runs"][0]["floor_ratio"] is None
    assert "sidecar" in r["metrics"]["floor_missing_reason"]
    assert r["metrics"]["model"] == "bare" and r["metrics"]["input_shape"] == list(SHAPE)  # static dims of the file


def test_missing_model_is_a_one_line_error(tmp_path):
    proc = run_standalone([str(tmp_path / "absent.onnx"), "--matmul-size", "0"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ONNX model") and "Traceback" not in proc.stderr


def test_bad_input_shape_is_a_one_line_error(onnx_file, tmp_path):
    proc = run_standalone([str(onnx_file), "--input-shape", "3,a,4", "--matmul-size", "0"], tmp_path)
    assert proc.returncode == 2 and "--input-shape" in proc.stderr and "Traceback" not in proc.stderr


def test_cpu_model_on_arm_boards_and_x86():
    assert edge_bench.cpu_model(ARM_CPUINFO) == "Raspberry Pi 4 Model B Rev 1.4"
    assert edge_bench.cpu_model("model name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\n").startswith("Intel")
    assert edge_bench.cpu_model("Hardware\t: NVIDIA Jetson TX2\n") == "NVIDIA Jetson TX2"


def test_slug_and_experiment_name():
    assert edge_bench.slug("torchvision:mobilenet_v2") == "torchvision-mobilenet_v2"
    assert edge_bench.latency_experiment_name("m", "Jetson Nano (4GB)", 1) == "latency.m.Jetson-Nano-4GB.t1"
