"""Which facelab modules a run really used, and whether their sources changed since.

A stored result is fresh only while the code that computed it is unchanged. Lists of modules
kept by hand go stale themselves (they missed ``facelab.layers.fire``, so editing ``Fire`` left
chapter 2's results looking fresh); instead :func:`track_modules` records, while an experiment
runs, the facelab modules whose code it executes and the facelab names that code refers to:

* every Python *function* (method, lambda, comprehension) of a facelab module that runs, in this
  thread, in threads started meanwhile and in worker processes forked meanwhile (DataLoader
  workers, process pools), found with :func:`sys.setprofile`;
* for each such function, the facelab modules behind the global names it reads: a function-level
  ``from facelab.x import y`` or ``import facelab.x`` (the module name is one of the code's
  names), a function or class defined in another module (its ``__module__``), a module object,
  and constants imported at the top of its module (``from facelab.x import TABLE``).

What does *not* count: code that runs only because a module is being imported (module bodies,
class bodies and whatever they call, e.g. ``facelab.models`` importing every model file so
that they register themselves): importing a module does not make a result depend on it, using
it does. This makes the record the same whether a module was imported before the run (a
notebook) or during it (a fresh ``python -m facelab run``).

:data:`FRAMEWORK_MODULES` locate, orchestrate and record runs; they cannot change a result's
numbers, so they are left out (otherwise every edit to the runner would mark every result stale).

Limitations, stated: processes started with ``spawn`` (not fork) are not seen; code run through
``exec`` of a string has no module file and is not seen. Neither happens in facelab on Linux.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import json
import multiprocessing.util
import os
import sys
import tempfile
import threading
import types
from collections.abc import Iterable, Iterator
from pathlib import Path

from facelab.fileio import file_sha256

PACKAGE = "facelab"
_PACKAGE_DIR = Path(__file__).resolve().parent

#: Modules that locate, orchestrate or record a run. Their code cannot change the numbers a run
#: computes (data identity is recorded separately as the manifest hash; seeds and configuration as
#: their own hashes), so editing them must not mark results stale.
FRAMEWORK_MODULES: frozenset[str] = frozenset({
    "facelab",                # package init: the public API re-exports
    "facelab.cli",            # command-line assembly
    "facelab.codedeps",       # this module
    "facelab.config",         # profile names and budgets
    "facelab.experiments",    # the experiment registry and runner (the chapter modules below it do count)
    "facelab.fileio",         # atomic writes and hashing
    "facelab.paths",          # where data, caches and results are
    "facelab.registry",       # model-name lookup (the builders it calls do count)
    "facelab.results",        # result records and provenance
})

_CO_OPTIMIZED = inspect.CO_OPTIMIZED  # set for functions, unset for module and class bodies


def module_name(filename: str, package_dir: Path = _PACKAGE_DIR, package: str = PACKAGE) -> str | None:
    """``.../facelab/data/lfw.py`` -> ``'facelab.data.lfw'``; None outside the package."""
    try:
        rel = Path(filename).resolve().relative_to(package_dir)
    except (ValueError, OSError):
        return None
    if rel.suffix != ".py":
        return None
    parts = [package, *rel.with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def module_file(name: str, package_dir: Path | None = None) -> Path | None:
    """The source file of module ``name`` (``pkg/x.py`` or ``pkg/x/__init__.py``), found without
    importing anything; None when it does not exist. ``package_dir`` is the folder of the top-level
    package (default: facelab's for facelab modules, else found with importlib)."""
    parts = name.split(".")
    if package_dir is None:
        if parts[0] == PACKAGE:
            package_dir = _PACKAGE_DIR
        else:
            spec = importlib.util.find_spec(parts[0])
            if spec is None or not spec.submodule_search_locations:
                return None
            package_dir = Path(list(spec.submodule_search_locations)[0])
    base = Path(package_dir).joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")) if len(parts) > 1 else (base / "__init__.py",):
        if candidate.is_file():
            return candidate
    return None


def module_digest(name: str, package_dir: Path | None = None) -> str | None:
    """SHA-256 (first 16 hex digits) of module ``name``'s source file; None when it is gone."""
    path = module_file(name, package_dir)
    return file_sha256(path)[:16] if path is not None and path.exists() else None


def module_hashes(modules: Iterable[str], package_dir: Path | None = None) -> dict[str, str | None]:
    """``{module: source digest}`` (None for a module that no longer exists)."""
    return {m: module_digest(m, package_dir) for m in sorted(set(modules))}


# ----------------------------------------------------------------------------- static import maps

_IMPORT_MAPS: dict[tuple[str, float], dict[str, str]] = {}


def _resolve_relative(module: str, level: int, target: str | None, is_package: bool) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def top_level_imports(filename: str, module: str, package: str = PACKAGE,
                      package_dir: Path | None = None) -> dict[str, str]:
    """``{local name: facelab module}`` for the imports at the top level of a module's source
    (``from facelab.x import y`` maps ``y`` to ``facelab.x.y`` when that is a module, else to
    ``facelab.x``; ``import facelab.x as z`` maps ``z``). Cached per file and modification time."""
    try:
        key = (filename, os.path.getmtime(filename))
    except OSError:
        return {}
    if key in _IMPORT_MAPS:
        return _IMPORT_MAPS[key]
    try:
        tree = ast.parse(Path(filename).read_text())
    except (OSError, SyntaxError):
        return {}
    is_package = Path(filename).name == "__init__.py"
    out: dict[str, str] = {}

    def visit(body):
        for node in body:
            if isinstance(node, ast.ImportFrom):
                src = (_resolve_relative(module, node.level, node.module, is_package) if node.level
                       else node.module or "")
                if src.split(".")[0] != package:
                    continue
                for alias in node.names:
                    sub = f"{src}.{alias.name}"
                    out[alias.asname or alias.name] = sub if module_file(sub, package_dir) is not None else src
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package and alias.asname:
                        out[alias.asname] = alias.name
            elif isinstance(node, (ast.If, ast.Try)):  # imports guarded at module level
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(tree.body)
    _IMPORT_MAPS[key] = out
    return out


def referenced_modules(code: types.CodeType, module: str, package: str = PACKAGE,
                       package_dir: Path | None = None) -> set[str]:
    """The facelab modules a function's code refers to by name (see the module docstring)."""
    out = {module}
    mod = sys.modules.get(module)
    namespace = vars(mod) if mod is not None else {}
    imports = top_level_imports(code.co_filename, module, package, package_dir)
    for name in code.co_names:
        if name.startswith(package + ".") or name == package:
            # the target of a function-level ``import facelab.x`` / ``from facelab.x import ...``; a
            # package's ``__init__`` only counts through what it defines (``from facelab.bench import
            # onnx_export`` uses the submodule, not the package)
            path = module_file(name, package_dir)
            if path is not None and path.name != "__init__.py":
                out.add(name)
            continue
        obj = namespace.get(name)
        owner = None
        if isinstance(obj, types.ModuleType):
            owner = obj.__name__
        elif obj is not None and isinstance(getattr(obj, "__module__", None), str):
            owner = obj.__module__  # where a function or class is defined, not the package re-exporting it
        if owner is not None and owner.split(".")[0] == package:
            out.add(owner)
        elif name in imports:  # a constant imported at the top of the module
            out.add(imports[name])
    # function-level ``from facelab.x import y``: y may itself be a module
    names = set(code.co_names)
    for name in [n for n in names if n.startswith(package + ".")]:
        for attr in names:
            if module_file(f"{name}.{attr}", package_dir) is not None:
                out.add(f"{name}.{attr}")
    return out


# ----------------------------------------------------------------------------- runtime tracking


class _Recorder:
    """Collects the facelab function code objects that run outside module imports."""

    def __init__(self, package_dir: Path, package: str):
        self.package_dir, self.package = package_dir, package
        self.codes: set[types.CodeType] = set()
        self._files: dict[str, str | None] = {}
        self._local = threading.local()

    def _module_of(self, filename: str) -> str | None:
        if filename not in self._files:
            self._files[filename] = module_name(filename, self.package_dir, self.package)
        return self._files[filename]

    def profile(self, frame, event, arg):
        # Only Python frames matter: 'call'/'return' (C calls are ignored cheaply).
        if event == "call":
            code = frame.f_code
            if not code.co_flags & _CO_OPTIMIZED:  # a module body (an import) or a class body
                if code.co_name == "<module>":
                    self._local.importing = getattr(self._local, "importing", 0) + 1
                return
            if getattr(self._local, "importing", 0):
                return
            if code not in self.codes and self._module_of(code.co_filename) is not None:
                self.codes.add(code)
        elif event == "return" and frame.f_code.co_name == "<module>" and not frame.f_code.co_flags & _CO_OPTIMIZED:
            self._local.importing = max(0, getattr(self._local, "importing", 0) - 1)

    def modules(self, exclude: frozenset[str] = frozenset()) -> set[str]:
        """Modules of the recorded code and what it refers to; code of ``exclude`` modules (the
        framework) counts neither itself nor for what it refers to."""
        out: set[str] = set()
        for code in list(self.codes):
            name = self._module_of(code.co_filename)
            if name is not None and name not in exclude:
                out |= referenced_modules(code, name, self.package, self.package_dir)
        return out


class TrackedModules:
    """What :func:`track_modules` found; ``modules`` is filled when the ``with`` block ends."""

    def __init__(self) -> None:
        self.modules: list[str] = []


class _ForkToken:
    """Kept alive while tracking: multiprocessing calls its after-fork hook in forked children."""


@contextlib.contextmanager
def track_modules(*, package: str = PACKAGE, package_dir: Path | None = None,
                  exclude: Iterable[str] = FRAMEWORK_MODULES) -> Iterator[TrackedModules]:
    """Record the ``package`` modules the code inside the ``with`` block uses (module docstring).

    ``package``/``package_dir`` name another package (tests); ``exclude`` drops framework modules.
    The profile hook is installed only for the block and the previous one is restored after it.

    Example::

        with track_modules() as used:
            metrics = experiment.run(config, ctx)
        used.modules  # ['facelab.data.lfw', 'facelab.experiments.getting_started', ...]
    """
    if package_dir is None:
        init = module_file(package)
        if init is None:
            raise ValueError(f"{package!r} is not an importable package")
        package_dir = init.parent.resolve()
    excluded = frozenset(exclude)
    recorder = _Recorder(Path(package_dir), package)
    found = TrackedModules()
    child_dir = tempfile.mkdtemp(prefix="facelab-codedeps-")
    token = _ForkToken()

    def after_fork(_token) -> None:
        # In a forked worker the inherited profile hook keeps recording; write what it saw when the
        # worker exits (multiprocessing runs its finalizers on a worker's normal exit).
        recorder.codes = set()

        def report() -> None:
            with contextlib.suppress(OSError):
                Path(child_dir, f"{os.getpid()}.json").write_text(json.dumps(sorted(recorder.modules(excluded))))

        multiprocessing.util.Finalize(None, report, exitpriority=100)

    multiprocessing.util.register_after_fork(token, after_fork)
    previous, previous_threading = sys.getprofile(), threading.getprofile()
    sys.setprofile(recorder.profile)
    threading.setprofile(recorder.profile)
    try:
        yield found
    finally:
        sys.setprofile(previous)
        threading.setprofile(previous_threading)
        del token
        modules = recorder.modules(excluded)
        for report in Path(child_dir).glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                modules |= set(json.loads(report.read_text()))
            report.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.rmdir(child_dir)
        found.modules = sorted(m for m in modules if m not in excluded and module_file(m, package_dir) is not None)


def changed_modules(recorded: dict[str, str | None], package_dir: Path | None = None) -> list[str]:
    """The modules of a recorded ``{module: digest}`` whose source differs now (or is gone)."""
    return [m for m, digest in sorted(recorded.items()) if module_digest(m, package_dir) != digest]
