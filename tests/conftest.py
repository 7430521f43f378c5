"""Shared fixtures. Tests that need the real datasets use ``real_data_root`` and are skipped,
with the reason, when no data root is configured (CI and development set FACELAB_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    root = os.environ.get("FACELAB_DATA")
    if not root or not Path(root).is_dir():
        pytest.skip("set FACELAB_DATA to the data root (e.g. ../shared/data) to run tests on real data")
    return Path(root)


@pytest.fixture(scope="session")
def repo() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private FACELAB_CACHE so tests never touch the user's cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACELAB_CACHE", str(cache))
    return cache


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (fast and deterministic on a shared 2-core machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
