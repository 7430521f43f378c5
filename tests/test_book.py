import ast
import json

import nbformat
import pytest

from facelab import bookbuild

REQUIRED_PARAMETERS = {"profile", "data_root", "device", "seed", "results_dir", "retrain"}


@pytest.fixture(scope="module")
def notebooks(repo):
    nbs = bookbuild.toc_notebooks(repo)
    assert nbs, "_toc.yml names no notebook"
    return nbs


def test_toc_pages_exist(repo):
    pages = bookbuild.toc_files(repo)
    assert pages[0].name == "intro.md"


def test_every_chapter_has_a_parameters_cell(notebooks):
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        cell = tagged[0]
        assert nb.cells.index(cell) == next(i for i, c in enumerate(nb.cells) if c.cell_type == "code"), \
            f"{path.name}: the parameters cell must be the first code cell"
        tree = ast.parse(cell.source)
        names = set()
        for node in tree.body:
            assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds assignments only"
            ast.literal_eval(node.value)  # plain literals, so papermill can override them
            names |= {t.id for t in node.targets}
        assert REQUIRED_PARAMETERS <= names, f"{path.name}: missing {REQUIRED_PARAMETERS - names}"
        assert ast.literal_eval(next(n.value for n in tree.body if n.targets[0].id == "profile")) == "small"


def test_committed_notebooks_have_no_outputs(notebooks):
    # Outputs would carry derived images of the datasets into the repository.
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs: clear them"


def test_no_star_imports_or_function_definitions_in_chapters(notebooks):
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                tree = ast.parse(cell.source)
                for node in ast.walk(tree):
                    assert not (isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names))
                    assert not isinstance(node, (ast.FunctionDef, ast.ClassDef)), \
                        f"{path.name}: reusable code belongs in facelab, not in a chapter"


def test_cache_key_depends_on_profile_and_parameters(notebooks):
    nb = notebooks[0]
    k_smoke = bookbuild.notebook_cache_key(nb, "smoke", {})
    assert k_smoke == bookbuild.notebook_cache_key(nb, "smoke", {})
    assert k_smoke != bookbuild.notebook_cache_key(nb, "small", {})
    assert k_smoke != bookbuild.notebook_cache_key(nb, "smoke", {"device": "cuda"})


def test_cache_key_depends_on_version(notebooks, monkeypatch):
    nb = notebooks[0]
    before = bookbuild.notebook_cache_key(nb, "smoke", {})
    monkeypatch.setattr(bookbuild, "__version__", "999")
    assert bookbuild.notebook_cache_key(nb, "smoke", {}) != before


def test_parameterize_injects_the_profile(tmp_path, notebooks):
    written = bookbuild.parameterize("smoke", tmp_path)
    assert [p.name for p in written] == [p.name for p in notebooks]
    nb = nbformat.read(written[0], as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'profile = "smoke"' in injected[0].source


def test_stage_switches_execution_off(tmp_path, repo, notebooks):
    import yaml

    fake = tmp_path / "executed.ipynb"
    fake.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    rel = str(notebooks[0].relative_to(repo))
    bookbuild.stage_book(repo, tmp_path / "stage", {rel: fake})
    config = yaml.safe_load((tmp_path / "stage" / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert (tmp_path / "stage" / rel).read_text() == fake.read_text()
    assert (tmp_path / "stage" / "book" / "references.bib").exists()
