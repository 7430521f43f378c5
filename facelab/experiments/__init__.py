"""Experiments: named, configured runs that produce one :class:`~facelab.results.Result` each.

A chapter calls :func:`load_or_run`; an instructor or a long offline run uses the CLI::

    python -m facelab run getting_started.lfw_dlib --profile small

An experiment is registered with :func:`register_experiment` by its module (listed in
``_MODULES``: the chapter modules and a few more). Its result is keyed by its configuration (a dataclass built for the profile),
its seed and the source of the facelab modules the run used, recorded while it runs
(:func:`facelab.codedeps.track_modules`): when any of them changes, the stored result is
*stale* and :func:`load_or_run` says so (or reruns it).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facelab.chapters import CHAPTERS
from facelab.codedeps import module_file, track_modules
from facelab.config import PROFILES, check_device, check_profile
from facelab.errors import MissingDataError, UnknownNameError
from facelab.paths import cache_root, results_root
from facelab.results import Result, load_result, make_provenance, result_filename, save_result, staleness

#: Modules that define experiments (imported on first use of the registry): one per chapter
#: (facelab.chapters), for the chapters written so far.
_MODULES = tuple(ch.module for ch in CHAPTERS if module_file(ch.module) is not None)
#: Experiment modules a chapter module does not import itself: added after that chapter's results
#: were stored, they register from their own file so that the chapter module (whose source every
#: one of its stored results depends on) stays unchanged.
_MODULES += ("facelab.experiments.squeezefaceposenet_crossfit",
             "facelab.experiments.nirvis_masked_hsst_table2_mobilefacenet",
             "facelab.experiments.nirvis_masked_hsst_end_to_end",
             "facelab.experiments.uniface_floor")


@dataclass(frozen=True)
class RunContext:
    """What the caller controls: where data is, which device, which seed."""

    data_root: str | None = None
    device: str = "cpu"
    seed: int = 0
    progress: bool = True
    workers: int = 0  # worker processes for data-parallel steps; 0 = every core


@dataclass(frozen=True)
class Experiment:
    """A registered experiment.

    ``configure(profile)`` returns the configuration dataclass for a profile;
    ``run(config, ctx)`` returns ``(metrics, arrays, data_manifest_hash)``. Which code the result
    depends on is recorded while it runs, not declared.
    """

    name: str
    chapter: str
    description: str
    configure: Callable[[str], Any]
    run: Callable[[Any, RunContext], tuple[dict[str, Any], dict[str, Any], str | None]]


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(exp: Experiment) -> Experiment:
    """Add ``exp`` to the registry; its name must start with its chapter's slug (facelab.chapters)."""
    from facelab.chapters import get

    try:
        chapter = get(exp.name)
    except KeyError:
        chapter = None
    if chapter is not None and exp.chapter != chapter.folder:
        raise ValueError(f"experiment {exp.name!r} belongs to chapter {chapter.folder}, not {exp.chapter!r}")
    if exp.name in _REGISTRY:
        raise ValueError(f"experiment {exp.name!r} is registered twice")
    _REGISTRY[exp.name] = exp
    return exp


def _load() -> None:
    for module in _MODULES:
        importlib.import_module(module)


def list_experiments() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_experiment(name: str) -> Experiment:
    _load()
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown experiment {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _key(config: Any, seed: int) -> dict[str, Any]:
    return {"config": dataclasses.asdict(config), "seed": seed}


def stale_reasons(result: Result) -> list[str]:
    """Why a stored result of a registered experiment no longer matches the experiment's current
    configuration (at the result's profile and seed) or code; empty when it is fresh."""
    exp = get_experiment(result.experiment)
    return staleness(result, config=_key(exp.configure(result.profile), result.seed))


def _isolated_rng(device: str):
    """torch's global RNG (CPU, and the run's GPU) forked for the duration of a run."""
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    return torch.random.fork_rng(devices=devices)


def run_experiment(name: str, profile: str, ctx: RunContext, results_dir: str | Path | None = None,
                   save: bool = True) -> Result:
    """Run experiment ``name`` at ``profile`` and (by default) store its result."""
    exp = get_experiment(name)
    check_profile(profile)
    check_device(ctx.device)
    started = time.time()
    # The run may seed torch and needs gradients; the caller's RNG state and grad mode are restored after it.
    with _isolated_rng(ctx.device), torch.enable_grad(), track_modules() as used:
        config = exp.configure(profile)
        metrics, arrays, manifest_hash = exp.run(config, ctx)
    finished = time.time()
    result = Result(
        chapter=exp.chapter, experiment=name, profile=profile, seed=ctx.seed,
        config=dataclasses.asdict(config), metrics=metrics, arrays=arrays,
        provenance=make_provenance(config=_key(config, ctx.seed), modules=used.modules,
                                   device=ctx.device, started=started, finished=finished,
                                   data_manifest_hash=manifest_hash),
    )
    if save:
        save_result(result, results_root(results_dir))
    return result


@dataclass
class Outcome:
    """What :func:`load_or_run` did: ``status`` is 'ran', 'loaded' or 'stale'."""

    result: Result
    status: str
    reasons: list[str]
    path: Path

    @property
    def results_dir(self) -> Path:
        """The results folder this outcome was read from or written to (for :mod:`facelab.tables`)."""
        return self.path.parent.parent

    def describe(self) -> str:
        """One paragraph (Markdown) saying where the numbers come from."""
        r = self.result
        if self.status == "ran":
            head = "Computed in this run"
        elif self.status == "loaded":
            head = f"Loaded from the stored result `{self.path.name}` (pass `retrain=True` to recompute)"
        else:
            head = (f"**Stale stored result** `{self.path.name}`: " + "; ".join(self.reasons)
                    + ". Shown as stored; rerun with `retrain=True` or "
                    f"`python -m facelab run {r.experiment} --profile {r.profile}`")
        return f"{head}. {r.summary()}."


def load_or_run(name: str, profile: str, ctx: RunContext, *, retrain: bool = False,
                results_dir: str | Path | None = None, run_if_missing: bool = True) -> Outcome:
    """Load the stored result of ``name`` at ``profile``, or run it.

    Runs when ``retrain`` is true or nothing is stored (and ``run_if_missing``). A stored result
    whose configuration, seed or code changed is returned with status 'stale' and the reasons.
    At the ``smoke`` profile it always runs, and stores under ``$FACELAB_CACHE/results`` unless
    ``results_dir`` is given.
    """
    exp = get_experiment(name)
    if profile == "smoke":
        # Smoke runs always compute (they exist to exercise the pipeline) and keep their
        # results out of the committed results/ folder unless a folder is given.
        retrain = True
        results_dir = results_dir or cache_root() / "results"
    path = results_root(results_dir) / exp.chapter / result_filename(name, profile)
    if not retrain and path.exists():
        result = load_result(path)
        reasons = staleness(result, config=_key(exp.configure(profile), ctx.seed))
        return Outcome(result, "stale" if reasons else "loaded", reasons, path)
    if not retrain and not run_if_missing:
        raise MissingDataError(f"no stored result {path}: run `python -m facelab run {name} --profile {profile}`")
    result = run_experiment(name, profile, ctx, results_dir)
    return Outcome(result, "ran", [], path)


def load_stored(names: list[str] | tuple[str, ...], profile: str, ctx: RunContext, *, retrain: bool = False,
                results_dir: str | Path | None = None,
                run_missing: Callable[[str], bool] | None = None) -> tuple[dict[str, Outcome], list[str]]:
    """A chapter's results: :func:`load_or_run` for each of ``names``, without running long ones inline.

    At ``smoke`` (or with ``retrain``) every experiment runs. Otherwise stored results are loaded
    and a missing one runs only if ``run_missing(name)`` is true (default: never); the others are
    returned as messages naming the command that produces them, for the chapter to show as *not run*.
    Returns ``({name: Outcome}, [message, ...])``.
    """
    outcomes: dict[str, Outcome] = {}
    missing: list[str] = []
    for name in names:
        allowed = profile == "smoke" or retrain or (run_missing is not None and run_missing(name))
        try:
            outcomes[name] = load_or_run(name, profile, ctx, retrain=retrain, results_dir=results_dir,
                                         run_if_missing=allowed)
        except FileNotFoundError as err:
            missing.append(str(err))
    return outcomes, missing


def _cmd_run(args: argparse.Namespace) -> int:
    ctx = RunContext(data_root=args.data_root, device=args.device, seed=args.seed, progress=not args.no_progress)
    result = run_experiment(args.experiment, args.profile, ctx, args.results_dir)
    path = results_root(args.results_dir) / result.chapter / result.filename
    print(f"wrote {path}\n{result.summary()}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for name in list_experiments():
        exp = get_experiment(name)
        print(f"{name:52s} {exp.chapter:24s} {exp.description}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run an experiment and store its JSON result",
                       description="Run a registered experiment at a profile; its result is written to "
                       "results/<chapter>/<experiment>--<profile>.json with provenance.")
    p.add_argument("experiment", help="experiment name (see `python -m facelab experiments`)")
    p.add_argument("--profile", default="small", choices=PROFILES)
    p.add_argument("--data-root", default=None, help="data root (default: $FACELAB_DATA, then the user cache)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--results-dir", default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs of long runs)")
    p.set_defaults(func=_cmd_run)
    q = sub.add_parser("experiments", help="list the registered experiments")
    q.set_defaults(func=_cmd_list)
