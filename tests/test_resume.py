"""Interrupt and resume with real signals: ``data prepare`` and a training run are killed part-way
(SIGINT as Ctrl-C sends it, and SIGKILL) in a subprocess, rerun, and must end with exactly what an
uninterrupted run produces: the same manifest and packed array bytes, the same weights bit for bit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lfw_tree import build_lfw_root

REPO = Path(__file__).resolve().parent.parent
FOLDS = 4  # ~60 LFW images: a few seconds of prepare, long enough to interrupt in the middle


def _env(cache: Path) -> dict:
    # This checkout's facelab first, whatever is installed; a private cache per run.
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return dict(os.environ, FACELAB_CACHE=str(cache), PYTHONPATH=path)


def _prepare_cmd(root: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "facelab", "data", "prepare", "--profile", "smoke", "--datasets", "lfw",
            "--data-root", str(root), "--workers", str(workers), "--no-progress"]


def _outputs(cache: Path) -> tuple[bytes, bytes]:
    folder = cache / "prepared" / "lfw"
    return (folder / "manifest-smoke.csv").read_bytes(), (folder / "aligned-smoke.npy").read_bytes()


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def lfw_root(tmp_path_factory, real_data_root) -> Path:
    root = tmp_path_factory.mktemp("lfw-root")
    build_lfw_root(root, real_data_root, FOLDS)
    return root


@pytest.fixture(scope="module")
def uninterrupted(lfw_root, tmp_path_factory) -> tuple[bytes, bytes]:
    cache = tmp_path_factory.mktemp("cache-reference")
    proc = subprocess.run(_prepare_cmd(lfw_root, 1), env=_env(cache), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return _outputs(cache)


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, 2), (signal.SIGKILL, 1)], ids=["sigint-pool", "sigkill"])
def test_prepare_resumes_after_a_signal(lfw_root, uninterrupted, tmp_path, sig, workers):
    cache = tmp_path / "cache"
    journal = cache / "prepared" / "lfw" / "records.jsonl"
    # A session of its own, signalled as a whole, as Ctrl-C signals a terminal's foreground group
    # (the pool's workers get the SIGINT too).
    # SIGINT at its default disposition in the child: a shell that starts this test suite in the
    # background (`make test &`, nohup) ignores SIGINT, children inherit that, and Python then
    # installs no KeyboardInterrupt handler, so the "Ctrl-C" would be ignored and prepare would finish.
    proc = subprocess.Popen(_prepare_cmd(lfw_root, workers), env=_env(cache), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 90
    while _lines(journal) < 8 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "prepare finished before it could be interrupted: use more images"
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    done = _lines(journal)
    assert 8 <= done < 55, done  # stopped part-way (the selection has ~60 images)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "interrupted: finished steps are kept" in err and "Traceback" not in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (cache / "prepared" / "lfw" / "manifest-smoke.csv").exists()

    resumed = subprocess.run(_prepare_cmd(lfw_root, 1), env=_env(cache), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "already done" in resumed.stdout and "Traceback" not in resumed.stderr
    skipped = int(resumed.stdout.split(" processed, ")[1].split(" already done")[0].replace(",", ""))
    assert skipped >= 8, resumed.stdout  # it resumed: the journal's images were not redone
    manifest, packed = _outputs(cache)
    assert manifest == uninterrupted[0]
    assert packed == uninterrupted[1]


def _train_cmd(ckpt: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "tests" / "train_resume_script.py"), str(ckpt), str(out), *extra]


def test_training_resumes_bit_for_bit_after_sigkill(tmp_path):
    ref = subprocess.run(_train_cmd(tmp_path / "ref.ckpt", tmp_path / "ref.pt"), env=_env(tmp_path), text=True,
                         capture_output=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "run.pt"
    proc = subprocess.Popen(_train_cmd(ckpt, out, "--slow-after", "1"), env=_env(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for line in proc.stdout:
        if line.strip() == "epoch 1":  # epoch 1's checkpoint is on disk; epoch 2 is running (slowly)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert not out.exists()
    assert torch.load(ckpt, weights_only=False)["epoch"] == 1

    resumed = subprocess.run(_train_cmd(ckpt, out), env=_env(tmp_path), text=True, capture_output=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and resumed.stdout.count("epoch ") == 2 + 1  # epochs 2, 3 (+ message)
    a, b = torch.load(tmp_path / "ref.pt"), torch.load(out)
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name  # bit for bit, BatchNorm statistics included
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert a["history"][key] == b["history"][key], key
