from pathlib import Path

import pytest

from facelab import paths


def make_lfw(root: Path) -> Path:
    (root / "lfw" / "lfw-deepfunneled").mkdir(parents=True)
    return root / "lfw"


def test_explicit_root_wins_over_environment(tmp_path, monkeypatch, isolated_cache):
    explicit, env = tmp_path / "explicit", tmp_path / "env"
    make_lfw(explicit)
    make_lfw(env)
    monkeypatch.setenv("FACELAB_DATA", str(env))
    assert paths.dataset_dir("lfw", explicit) == explicit / "lfw"
    assert paths.dataset_dir("lfw") == env / "lfw"


def test_falls_back_to_user_cache(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.delenv("FACELAB_DATA", raising=False)
    make_lfw(isolated_cache / "data")
    assert paths.dataset_dir("lfw") == isolated_cache / "data" / "lfw"


def test_missing_dataset_message_names_dataset_source_and_command(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setenv("FACELAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(paths.DataNotFoundError) as err:
        paths.dataset_dir("cfp")
    msg = str(err.value)
    assert "Celebrities in Frontal-Profile" in msg
    assert "cfpw.io" in msg
    assert "data_scripts/cfp.py fetch" in msg
    assert str(tmp_path / "nowhere") in msg


def test_finding_a_dataset_never_downloads_it(tmp_path, monkeypatch, isolated_cache):
    """Looking a dataset up has no network side effect (even a public one): the message names the
    fetch step instead, which is the only place that downloads (facelab.data.fetch)."""
    monkeypatch.setenv("FACELAB_DATA", str(tmp_path))
    for name in ("lfw", "widerface"):
        with pytest.raises(paths.DataNotFoundError, match=f"data_scripts/{name}.py fetch"):
            paths.dataset_dir(name)
    assert not (isolated_cache / "data").exists()


def test_unknown_dataset():
    with pytest.raises(KeyError, match="known: "):
        paths.dataset_dir("imagenet")


def test_results_root_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv("FACELAB_RESULTS", raising=False)
    assert paths.results_root(tmp_path) == tmp_path
    assert paths.results_root().name == "results"
    monkeypatch.setenv("FACELAB_RESULTS", str(tmp_path / "r"))
    assert paths.results_root() == tmp_path / "r"


def test_real_data_root_has_every_dataset(real_data_root):
    for name in paths.DATASETS:
        assert paths.dataset_dir(name, real_data_root).is_dir()
