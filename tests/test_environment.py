"""environment.yml (conda/binder), postBuild and pyproject.toml must describe one environment."""

import re
import tomllib

import yaml
from packaging.requirements import Requirement


def _norm(req: str) -> tuple[str, str]:
    r = Requirement(req)
    return re.sub(r"[-_.]+", "-", r.name).lower(), str(r.specifier)


def test_environment_yml_matches_pyproject(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_norm(r) for r in extra}
    env = yaml.safe_load((repo / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert {_norm(r) for r in pip} == wanted
    assert "python=3.11" in env["dependencies"]


def test_every_pin_is_exact(repo):
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    loose = [r for r in reqs if not str(Requirement(r).specifier).startswith("==")]
    assert not loose, f"unpinned requirements: {loose}"


def test_no_deps_packages_agree(repo):
    no_deps = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["facelab"]["no-deps"]
    post = (repo / "postBuild").read_text()
    for req in no_deps:
        assert req in post
    assert "tool']['facelab']['no-deps']" in (repo / "Makefile").read_text()


def test_constraints_pin_the_direct_requirements(repo):
    lock = {}
    for line in (repo / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, spec = _norm(line)
            lock[name] = spec
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    for req in project["dependencies"]:
        name, spec = _norm(req)
        assert lock.get(name) == spec, f"constraints.txt pins {name} at {lock.get(name)}, pyproject at {spec}"
