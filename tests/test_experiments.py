from dataclasses import dataclass

import pytest

from facelab import experiments
from facelab.experiments import Experiment, RunContext


@dataclass(frozen=True)
class ToyConfig:
    n: int


CALLS = []


def _run(config, ctx):
    CALLS.append(config.n)
    return {"total": config.n * 2 + ctx.seed}, {"values": list(range(config.n))}, None


@pytest.fixture(scope="module", autouse=True)
def toy():
    exp = Experiment(name="test.toy", chapter="99_test", description="toy", configure=lambda p: ToyConfig(
        {"smoke": 1, "small": 3, "full": 5}[p]), run=_run)
    experiments._REGISTRY[exp.name] = exp
    yield exp
    del experiments._REGISTRY[exp.name]


def test_run_then_load_then_stale(tmp_path, monkeypatch, isolated_cache):
    ctx = RunContext(seed=1)
    first = experiments.load_or_run("test.toy", "small", ctx, results_dir=tmp_path)
    assert first.status == "ran" and first.result.metrics == {"total": 7}
    assert (tmp_path / "99_test" / "test.toy--small.json").exists()
    second = experiments.load_or_run("test.toy", "small", ctx, results_dir=tmp_path)
    assert second.status == "loaded" and second.result.metrics == first.result.metrics
    # A different seed is a different experiment: the stored result is stale.
    third = experiments.load_or_run("test.toy", "small", RunContext(seed=2), results_dir=tmp_path)
    assert third.status == "stale" and "configuration" in third.reasons[0]
    assert "Stale stored result" in third.describe()
    fourth = experiments.load_or_run("test.toy", "small", RunContext(seed=2), results_dir=tmp_path, retrain=True)
    assert fourth.status == "ran" and fourth.result.metrics == {"total": 8}


def test_smoke_always_runs_and_stays_out_of_results(tmp_path, isolated_cache):
    CALLS.clear()
    for _ in range(2):
        out = experiments.load_or_run("test.toy", "smoke", RunContext())
        assert out.status == "ran"
    assert CALLS == [1, 1]
    assert (isolated_cache / "results" / "99_test" / "test.toy--smoke.json").exists()


def test_missing_result_without_running(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m facelab run test.toy"):
        experiments.load_or_run("test.toy", "full", RunContext(), results_dir=tmp_path, run_if_missing=False)


def test_load_stored_runs_only_what_it_may(tmp_path, isolated_cache):
    CALLS.clear()
    outcomes, missing = experiments.load_stored(["test.toy"], "small", RunContext(), results_dir=tmp_path)
    assert outcomes == {} and CALLS == [] and "python -m facelab run test.toy --profile small" in missing[0]
    outcomes, missing = experiments.load_stored(["test.toy"], "small", RunContext(), results_dir=tmp_path,
                                                run_missing=lambda name: name == "test.toy")
    assert outcomes["test.toy"].status == "ran" and missing == [] and CALLS == [3]
    outcomes, _ = experiments.load_stored(["test.toy"], "small", RunContext(), results_dir=tmp_path)
    assert outcomes["test.toy"].status == "loaded" and CALLS == [3]
    outcomes, _ = experiments.load_stored(["test.toy"], "smoke", RunContext())  # smoke always runs
    assert outcomes["test.toy"].status == "ran" and CALLS == [3, 1]


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="smoke, small, full"):
        experiments.run_experiment("test.toy", "huge", RunContext())
    with pytest.raises(ValueError, match="device='cpu'|use 'cpu'"):
        experiments.run_experiment("test.toy", "smoke", RunContext(device="tpu"))
    with pytest.raises(KeyError, match="unknown experiment"):
        experiments.get_experiment("nope")


def test_registered_experiments_configure_every_profile():
    for name in experiments.list_experiments():
        exp = experiments.get_experiment(name)
        for profile in ("smoke", "small", "full"):
            exp.configure(profile)


def test_a_run_leaves_the_callers_rng_and_grad_mode_alone(tmp_path, isolated_cache):
    import torch

    def seeding_run(config, ctx):
        torch.manual_seed(123)  # experiments seed their initial weights
        assert torch.is_grad_enabled()  # and train, whatever mode the caller is in
        return {"x": float(torch.rand(()))}, {}, None

    exp = Experiment(name="test.seeding", chapter="99_test", description="seeds", configure=lambda p: ToyConfig(1),
                     run=seeding_run)
    experiments._REGISTRY[exp.name] = exp
    try:
        state = torch.get_rng_state()
        with torch.no_grad():
            first = experiments.run_experiment("test.seeding", "smoke", RunContext(), tmp_path)
        assert torch.equal(torch.get_rng_state(), state) and torch.is_grad_enabled()
        again = experiments.run_experiment("test.seeding", "smoke", RunContext(), tmp_path)
        assert first.metrics == again.metrics
    finally:
        del experiments._REGISTRY[exp.name]
