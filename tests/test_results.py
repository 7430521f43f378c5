import json
from dataclasses import dataclass

import pytest

from facelab import codedeps, results


@dataclass(frozen=True)
class Cfg:
    n: int
    lr: float = 0.1


def make_result(**kw):
    base = dict(chapter="ch", experiment="exp", profile="smoke", seed=0, config={"n": 1},
                metrics={"acc": 0.5}, arrays={"score": [0.1, 0.2]},
                provenance={"config_hash": results.config_hash(Cfg(1)), "code_tracking": results.CODE_TRACKING,
                            "module_hashes": codedeps.module_hashes(["facelab.data.lfw", "facelab.eval.verification"])})
    base.update(kw)
    return results.Result(**base)


def test_config_hash_is_stable_and_sensitive():
    assert results.config_hash(Cfg(1)) == results.config_hash(Cfg(1))
    assert results.config_hash(Cfg(1)) != results.config_hash(Cfg(2))
    assert results.config_hash({"b": 1, "a": 2}) == results.config_hash({"a": 2, "b": 1})


def test_save_and_load_roundtrip(tmp_path):
    r = make_result()
    path = results.save_result(r, tmp_path)
    assert path == tmp_path / "ch" / "exp--smoke.json"
    assert results.load_result(path) == r
    assert not list(path.parent.glob("*.tmp")), "atomic write left a temporary file"


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = results.save_result(make_result(), tmp_path)
    before = path.read_text()
    with pytest.raises(TypeError):
        results.save_result(make_result(metrics={"bad": object()}), tmp_path)
    assert path.read_text() == before


def test_staleness_reports_config_and_code_changes():
    r = make_result()
    assert results.staleness(r, config=Cfg(1)) == []
    reasons = results.staleness(r, config=Cfg(2))
    assert len(reasons) == 1 and "configuration" in reasons[0]


def test_staleness_names_the_modules_that_changed():
    r = make_result()
    r.provenance["module_hashes"]["facelab.eval.verification"] = "0" * 16  # as if it had been edited since
    assert results.staleness(r, config=Cfg(1)) == ["the code it used changed since: facelab.eval.verification"]
    r.provenance["module_hashes"]["facelab.gone"] = "1" * 16  # a module that was deleted since
    assert "facelab.gone" in results.staleness(r)[0]


def test_results_without_recorded_modules_are_stale():
    r = make_result()
    del r.provenance["code_tracking"]  # written before facelab recorded the modules a run uses
    reasons = results.staleness(r, config=Cfg(1))
    assert len(reasons) == 1 and "listed by hand" in reasons[0]


def test_corrupt_result_file_gives_a_fix(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="rerun"):
        results.load_result(p)
    p.write_text(json.dumps({"schema_version": 999}))
    with pytest.raises(ValueError, match="rerun"):
        results.load_result(p)


def test_environment_records_versions_and_threads():
    env = results.environment("cpu")
    assert env["versions"]["torch"] and env["torch_threads"] >= 1 and env["cpu"]


def test_git_dirty_ignores_the_results_folder(tmp_path):
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "r.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("commit", "-qm", "init")
    assert results.git_dirty(tmp_path) is False
    (tmp_path / "results" / "r.json").write_text('{"new": 1}')  # a run stored its result
    assert results.git_dirty(tmp_path / "results") is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert results.git_dirty(tmp_path / "results") is True
