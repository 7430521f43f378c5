import subprocess
import sys

import pytest

from facelab import cli, errors


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "experiments", "book"):
        assert command in out


def test_errors_are_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "facelab", "run", "getting_started.lfw_dlib", "--profile",
                           "smoke", "--data-root", str(tmp_path / "missing")],
                          capture_output=True, text=True, env={"FACELAB_CACHE": str(tmp_path), "PATH": ""})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: Labeled Faces in the Wild")


def test_unknown_experiment(capsys):
    assert cli.main(["run", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_run_guarded_explains_facelab_errors_and_lets_bugs_through(capsys):
    import argparse

    from facelab import errors

    def raising(exc):
        def func(args):
            raise exc
        return func

    ns = argparse.Namespace()
    for exc in (errors.UsageError("bad --x"), errors.UnknownNameError("unknown thing 'y'"),
                errors.DataError("f.csv: line 3 is broken"), errors.MissingDataError("no data: fetch it"),
                errors.BusyError("someone else is writing")):
        assert errors.run_guarded(raising(exc), ns) == 2
        err = capsys.readouterr().err
        assert err == f"error: {exc.args[0]}\n"  # the message as written: no quotes (KeyError adds them)
    # Each is also the built-in it replaced, so existing `except ValueError/KeyError` callers still work.
    assert isinstance(errors.UnknownNameError("x"), KeyError) and isinstance(errors.UnknownNameError("x"), ValueError)
    assert isinstance(errors.MissingDataError("x"), FileNotFoundError)
    # A genuine bug (a plain ValueError/KeyError from deep inside) keeps its traceback.
    with pytest.raises(ValueError, match="a bug"):
        errors.run_guarded(raising(ValueError("a bug")), ns)
    with pytest.raises(KeyError):
        errors.run_guarded(raising(KeyError("missing key")), ns)
    assert errors.run_guarded(raising(KeyboardInterrupt()), ns) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["data", "fetch", "nope"], "unknown dataset 'nope'"),
    (["data", "prepare", "--datasets", "aflw2000"], "cannot prepare aflw2000"),
    (["model", "summary", "nope"], "unknown model 'nope'"),
    (["tables", "nope"], "no paper values for 'nope'"),
])
def test_user_errors_stay_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FACELAB_CACHE", str(tmp_path))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
