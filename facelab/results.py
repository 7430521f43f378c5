"""Experiment results as JSON records with provenance.

A result is written once per (experiment, profile) under ``results/<chapter>/`` and is
keyed by two hashes:

* ``config_hash``: the experiment's configuration (a dataclass, as JSON);
* ``code_hash``: the source of the facelab modules the experiment depends on.

A stored result whose hashes differ from the current configuration or code is *stale*;
:func:`staleness` says why, and chapters show that next to the numbers (or retrain).
Writes are atomic (temporary file + rename) so an interrupted run never leaves a
half-written result.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib
import inspect
import json
import os
import platform
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from facelab.errors import DataError

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


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def config_hash(config: Any) -> str:
    """Hash of an experiment configuration (dataclass or JSON-able mapping)."""
    return sha256_text(canonical_json(config))[:16]


def _source(module: str) -> bytes:
    return inspect.getsource(importlib.import_module(module)).encode()


def code_hash(modules: list[str]) -> str:
    """Hash of the source files of ``modules`` (importable names), in the given order."""
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        h.update(name.encode())
        h.update(_source(name))
    return h.hexdigest()[:16]


def module_hashes(modules: list[str]) -> dict[str, str]:
    """``{module: hash of its source}`` for each of ``modules`` (to name what changed, see :func:`staleness`)."""
    return {name: hashlib.sha256(_source(name)).hexdigest()[:16] for name in sorted(set(modules))}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a reader sees the old or the new file, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result is an ordinary readable file
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
                 "onnxruntime", "facenet-pytorch", "dlib-bin"):
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


def make_provenance(*, config: Any, code_modules: list[str], device: str, started: float, finished: float,
                    data_manifest_hash: str | None = None) -> dict[str, Any]:
    env = environment(device)
    env.update(
        config_hash=config_hash(config),
        code_hash=code_hash(code_modules),
        code_modules=sorted(set(code_modules)),
        module_hashes=module_hashes(code_modules),
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


def staleness(result: Result, *, config: Any, code_modules: list[str]) -> list[str]:
    """Reasons why ``result`` no longer matches ``config`` and the current code (empty: fresh)."""
    reasons = []
    if result.provenance.get("config_hash") != config_hash(config):
        reasons.append("the experiment's configuration changed since this result was computed")
    if result.provenance.get("code_hash") != code_hash(code_modules):
        stored = result.provenance.get("module_hashes")
        if stored:  # results written since module hashes were recorded name the modules that changed
            now = module_hashes(code_modules)
            changed = [m for m in now if stored.get(m) != now[m]]
            reasons.append("the code it depends on changed since: " + ", ".join(changed))
        else:
            reasons.append("the code it depends on (" + ", ".join(sorted(set(code_modules))) + ") changed since")
    return reasons
