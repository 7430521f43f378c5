"""Executing the chapters and building the HTML book.

``python -m facelab book build --profile P`` (what ``make book`` runs):

1. reads the chapters from ``_toc.yml`` (the repository root, as Jupyter Book 1.x expects);
2. executes every notebook with papermill, injecting ``profile`` (and ``data_root``/``device``
   when given), with a per-cell timeout; any cell error stops the build with the chapter's name.
   Executed notebooks are cached under ``_build/executed/<profile>/``; the cache key is the
   notebook's cell sources + the facelab version + a hash of the facelab sources + the profile,
   so an unchanged chapter is not rerun and any change to one of those reruns it;
3. stages a copy of the book with the executed notebooks (``_build/stage``) and runs
   ``jupyter-book build`` on it with execution off (everything already ran);
4. prints how long each chapter took and where the HTML is.

``python -m facelab book parameterize --profile smoke --out DIR`` writes parameterized (not
executed) copies of the notebooks for nbval, which runs them as tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from facelab import __version__
from facelab.config import CHAPTER_BUDGET_S, PROFILES, check_profile
from facelab.errors import MissingDataError

#: Seconds one notebook cell may run before the build fails.
CELL_TIMEOUT_S = 1800
#: Files and folders of the book source that are copied into the stage.
STAGE_ITEMS = ("_config.yml", "_toc.yml", "book")


def project_root() -> Path:
    """The source checkout (the folder with ``_toc.yml``)."""
    from facelab.paths import repo_root

    root = repo_root()
    if root is None or not (root / "_toc.yml").exists():
        raise MissingDataError("the book is built from a source checkout of facelab (with _toc.yml); "
                                "clone the repository and run `make book` there")
    return root


def toc_files(root: Path) -> list[Path]:
    """Every page named in ``_toc.yml`` (root first), as paths with their real suffix."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    walk(child)

    walk(toc)
    pages = []
    for name in names:
        for suffix in (".ipynb", ".md"):
            if (root / f"{name}{suffix}").exists():
                pages.append(root / f"{name}{suffix}")
                break
        else:
            raise MissingDataError(f"_toc.yml names {name!r} but neither {name}.ipynb nor {name}.md exists")
    return pages


def toc_notebooks(root: Path) -> list[Path]:
    return [p for p in toc_files(root) if p.suffix == ".ipynb"]


def facelab_source_hash() -> str:
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent
    for path in sorted(pkg.rglob("*.py")) + sorted(pkg.rglob("*.json")):
        h.update(str(path.relative_to(pkg)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def notebook_cache_key(path: Path, profile: str, parameters: dict) -> str:
    """Hash of the notebook's cell sources, the facelab version and sources, profile and parameters."""
    nb = json.loads(path.read_text())
    cells = [(c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
             for c in nb["cells"]]
    payload = json.dumps({"cells": cells, "version": __version__, "source": facelab_source_hash(),
                          "profile": profile, "parameters": parameters}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class ChapterRun:
    name: str
    status: str  # 'executed' or 'cached'
    seconds: float
    output: Path


def execute_chapter(nb: Path, out_dir: Path, profile: str, parameters: dict, force: bool = False) -> ChapterRun:
    """Execute one notebook with papermill unless an executed copy with the same key exists."""
    import papermill as pm

    key = notebook_cache_key(nb, profile, parameters)
    out = out_dir / f"{nb.stem}.{key}.ipynb"
    timing = out.with_suffix(".seconds")
    if out.exists() and not force:
        return ChapterRun(nb.stem, "cached", float(timing.read_text()) if timing.exists() else 0.0, out)
    tmp = out.with_name(f".partial-{out.name}")
    t0 = time.time()
    try:
        pm.execute_notebook(str(nb), str(tmp), parameters={"profile": profile, **parameters},
                            cwd=str(nb.parent), execution_timeout=CELL_TIMEOUT_S, progress_bar=False,
                            log_output=False, kernel_name="python3")
    except pm.PapermillExecutionError as err:
        raise RuntimeError(f"chapter {nb.name} failed at cell {err.exec_count} ({err.ename}: {err.evalue}); "
                           f"the partly executed notebook is {tmp}") from None
    seconds = time.time() - t0
    for stale in out_dir.glob(f"{nb.stem}.*.ipynb"):
        stale.unlink()
    tmp.replace(out)
    timing.write_text(f"{seconds:.1f}")
    return ChapterRun(nb.stem, "executed", seconds, out)


def stage_book(root: Path, stage: Path, executed: dict[str, Path]) -> None:
    """Copy the book sources into ``stage`` with executed notebooks and execution switched off."""
    import yaml

    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for item in STAGE_ITEMS:
        src = root / item
        if src.is_dir():
            shutil.copytree(src, stage / item, ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, stage / item)
    for rel, path in executed.items():
        shutil.copy2(path, stage / rel)
    config = yaml.safe_load((stage / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))


def build(profile: str, *, data_root: str | None = None, device: str | None = None,
          force: bool = False) -> Path:
    check_profile(profile)
    root = project_root()
    build_dir = root / "_build"
    out_dir = build_dir / "executed" / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters = {k: v for k, v in {"data_root": data_root, "device": device}.items() if v is not None}
    runs, executed = [], {}
    for nb in toc_notebooks(root):
        print(f"[book] {nb.relative_to(root)} at profile {profile} ...", flush=True)
        run = execute_chapter(nb, out_dir, profile, parameters, force=force)
        runs.append(run)
        executed[str(nb.relative_to(root))] = run.output
        print(f"[book]   {run.status} ({run.seconds:.0f} s)", flush=True)
    stage = build_dir / "stage"
    stage_book(root, stage, executed)
    # The console script installed next to this interpreter (the project's venv).
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb), "build", str(stage), "--path-output", str(root)]
    print("[book] jupyter-book build ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError("jupyter-book build failed (its log is above)")
    html = build_dir / "html" / "index.html"
    budget = CHAPTER_BUDGET_S[profile]
    print(f"\n{'chapter':32s} {'status':9s} {'seconds':>8s}")
    for run in runs:
        flag = "  over budget!" if budget and run.status == "executed" and run.seconds > budget else ""
        print(f"{run.name:32s} {run.status:9s} {run.seconds:8.0f}{flag}")
    print(f"\nThe book is at {html}")
    return html


def parameterize(profile: str, out: Path, *, data_root: str | None = None) -> list[Path]:
    """Write copies of every notebook with the profile injected (papermill), not executed."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    check_profile(profile)
    root = project_root()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for nb_path in toc_notebooks(root):
        nb = load_notebook_node(str(nb_path))  # papermill's reader adds the metadata it expects
        params = {"profile": profile, **({"data_root": data_root} if data_root else {})}
        nb = parameterize_notebook(nb, params)
        target = out / nb_path.name
        nbformat.write(nb, target)
        written.append(target)
    return written


def _cmd_build(args: argparse.Namespace) -> int:
    try:
        build(args.profile, data_root=args.data_root, device=args.device, force=args.force)
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _cmd_parameterize(args: argparse.Namespace) -> int:
    for path in parameterize(args.profile, Path(args.out), data_root=args.data_root):
        print(path)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("book", help="execute the chapters and build the HTML book")
    bsub = p.add_subparsers(dest="book_command", metavar="ACTION", required=True)
    b = bsub.add_parser("build", help="execute every chapter (cached) and build _build/html")
    b.add_argument("--profile", default="small", choices=PROFILES)
    b.add_argument("--data-root", default=None)
    b.add_argument("--device", default=None)
    b.add_argument("--force", action="store_true", help="re-execute chapters even when cached")
    b.set_defaults(func=_cmd_build)
    q = bsub.add_parser("parameterize", help="write notebooks with a profile injected (for nbval)")
    q.add_argument("--profile", default="smoke", choices=PROFILES)
    q.add_argument("--out", required=True)
    q.add_argument("--data-root", default=None)
    q.set_defaults(func=_cmd_parameterize)
