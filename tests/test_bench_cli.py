"""`model summary`, `model list` and `bench` commands (on torchvision models: the registry may be empty)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
import torchvision

from facelab.bench import cli as bench_cli
from facelab.bench import complexity
from facelab.results import load_result

torch.set_num_threads(1)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bench_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_model_summary_json(capsys):
    assert run(["model", "summary", "torchvision:squeezenet1_1", "--input-shape", "3,64,64", "--layers"]) == 0
    out = json.loads(capsys.readouterr().out)
    reference = torchvision.models.squeezenet1_1()
    assert out["params"] == sum(p.numel() for p in reference.parameters())
    assert out["flops"] == complexity.count_flops(reference, (3, 64, 64)) and out["macs"] * 2 == out["flops"]
    assert out["input_shape"] == [3, 64, 64] and out["embedding_size"] == 1000
    assert out["size_bytes"] == 4 * out["params"] and out["size_mb"] == out["size_bytes"] / 1e6
    assert "2 FLOPs per multiply-add" in out["flop_counter"] and "10^6" in out["size_convention"]
    assert out["layers"][0]["name"] == "features.0" and out["layers"][0]["output_size"] == "31²×64"


def test_model_summary_default_torchvision_input_and_saved_result(capsys, tmp_path):
    assert run(["model", "summary", "torchvision:mobilenet_v3_small", "--results-dir", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["input_shape"] == [3, 224, 224]
    r = load_result(out["result_file"])
    assert r.experiment == "complexity.torchvision-mobilenet_v3_small" and r.chapter == "bench"
    assert r.metrics["params"] == out["params"] and r.provenance["code_hash"]


def test_same_seed_same_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, _ = bench_cli.load_model("torchvision:squeezenet1_1", seed=3)
    b, _ = bench_cli.load_model("torchvision:squeezenet1_1", seed=3)
    c, _ = bench_cli.load_model("torchvision:squeezenet1_1", seed=4)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("name,match", [("torchvision:nonet", "torchvision has no"),
                                        ("no_such_model", "torchvision:ARCH")])
def test_unknown_models_say_what_exists(name, match):
    with pytest.raises(KeyError, match=match):
        bench_cli.load_model(name)


def test_bad_input_shape():
    with pytest.raises(ValueError, match="3,112,112"):
        bench_cli.parse_shape("3,a,4")
    with pytest.raises(ValueError, match="positive"):
        bench_cli.parse_shape("3,0,4")
    assert bench_cli.parse_shape("3x112x112") == (3, 112, 112)


def test_bench_torch_json_and_result(capsys, tmp_path):
    argv = ["bench", "torchvision:squeezenet1_1", "--input-shape", "3,32,32", "--runtime", "torch", "--threads", "1",
            "--batch", "1", "2", "--repeats", "2", "--warmup", "0", "--matmul-size", "128", "--profile", "smoke",
            "--no-progress", "--results-dir", str(tmp_path)]
    assert run(argv) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert [(r["runtime"], r["batch"], r["repeats"]) for r in out["runs"]] == [("torch", 1, 2), ("torch", 2, 2)]
    assert out["threads"] == 1 and out["matmul_floor"]["n"] == 128 and out["runs"][0]["floor_ratio"] > 0
    assert out["experiment"] == "latency.torchvision-squeezenet1_1.cpu.t1"
    assert "median" in captured.err  # the human summary goes to stderr, JSON alone to stdout
    r = load_result(out["result_file"])
    assert r.profile == "smoke" and r.config["runtimes"] == ["torch"] and r.provenance["torch_threads"] == 1


def test_bench_rejects_zero_threads():
    with pytest.raises(SystemExit):
        run(["bench", "torchvision:squeezenet1_1", "--threads", "0"])


def test_main_cli_lists_the_commands(capsys):
    pytest.importorskip("facelab.bookbuild", reason="facelab.cli also needs facelab.bookbuild (on main)")
    from facelab import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("model", "bench", "tables"):
        assert command in out
