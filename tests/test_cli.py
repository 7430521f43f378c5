import subprocess
import sys

import pytest

from facelab import cli


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
