"""Which modules a run used (facelab.codedeps), and staleness when one of them is edited."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from facelab import codedeps

TOY = {
    "__init__.py": "",
    "used.py": "def f():\n    return 1\n",
    "consts.py": "TABLE = (1, 2, 3)\n",
    "lazy_consts.py": "OFFSET = 10\n",
    "unused.py": "def g():\n    return 2\n",
    "side.py": "REGISTERED = []\n\ndef register(name):\n    REGISTERED.append(name)\n",
    # importing this module calls side.register at import time: that alone is no dependency
    "aggregator.py": "from toypkg import side\nside.register('x')\n",
    "threaded.py": "def t(out):\n    out.append(5)\n",
    "worker_only.py": "def w(x):\n    return x + 100\n",
    "klass.py": "class Base:\n    def value(self):\n        return 7\n",
    "runner.py": textwrap.dedent("""
        import threading
        from concurrent.futures import ProcessPoolExecutor

        from toypkg.consts import TABLE
        from toypkg import unused  # imported at the top, never used


        def in_worker(x):
            from toypkg.worker_only import w
            return w(x)


        def run():
            from toypkg.used import f
            from toypkg.lazy_consts import OFFSET
            import toypkg.aggregator  # noqa: F401
            out = []
            th = threading.Thread(target=_in_thread, args=(out,))
            th.start()
            th.join()
            with ProcessPoolExecutor(1) as pool:
                pooled = list(pool.map(in_worker, [1]))
            return f() + sum(TABLE) + OFFSET + out[0] + pooled[0]


        def _in_thread(out):
            from toypkg.threaded import t
            t(out)


        def run_method():
            from toypkg.klass import Base
            return Base().value()
    """),
}


@pytest.fixture
def toypkg(tmp_path, monkeypatch):
    pkg = tmp_path / "toypkg"
    pkg.mkdir()
    for name, text in TOY.items():
        (pkg / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m == "toypkg" or m.startswith("toypkg.")]:
        del sys.modules[name]


def _track(pkg, fn_name, preimport=()):
    import importlib

    for m in preimport:
        importlib.import_module(m)
    runner = importlib.import_module("toypkg.runner")
    with codedeps.track_modules(package="toypkg", package_dir=pkg, exclude=()) as used:
        value = getattr(runner, fn_name)()
    return value, used.modules


def test_records_what_ran_in_threads_and_workers_and_what_it_read(toypkg):
    value, modules = _track(toypkg, "run")
    assert value == 1 + 6 + 10 + 5 + 101
    assert {"toypkg.runner", "toypkg.used", "toypkg.consts", "toypkg.lazy_consts", "toypkg.aggregator",
            "toypkg.threaded", "toypkg.worker_only"} <= set(modules)
    # imported but never used, and called only by an import: not dependencies; nor is the package init
    assert not {"toypkg.unused", "toypkg.side", "toypkg"} & set(modules)


def test_the_record_does_not_depend_on_what_was_imported_before(toypkg):
    _, fresh = _track(toypkg, "run")
    for name in [m for m in sys.modules if m.startswith("toypkg.")]:
        del sys.modules[name]
    _, warm = _track(toypkg, "run", preimport=("toypkg.aggregator", "toypkg.used", "toypkg.side", "toypkg.unused"))
    assert fresh == warm


def test_methods_count_for_their_class_module(toypkg):
    _, modules = _track(toypkg, "run_method")
    assert "toypkg.klass" in modules


def test_profile_hook_is_restored(toypkg):
    def mine(frame, event, arg):
        return None

    sys.setprofile(mine)
    try:
        _track(toypkg, "run_method")
        assert sys.getprofile() is mine
    finally:
        sys.setprofile(None)


def test_digests_follow_the_source(toypkg):
    before = codedeps.module_hashes(["toypkg.used", "toypkg.gone"], package_dir=toypkg)
    assert before["toypkg.gone"] is None and before["toypkg.used"]
    assert codedeps.changed_modules(before, package_dir=toypkg) == []
    (toypkg / "used.py").write_text("def f():\n    return 2\n")
    assert codedeps.changed_modules(before, package_dir=toypkg) == ["toypkg.used"]


def test_framework_modules_exist():
    for name in codedeps.FRAMEWORK_MODULES:
        assert codedeps.module_file(name) is not None, name


EDIT_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path

    from facelab.experiments import RunContext, run_experiment, stale_reasons

    src, results = Path(sys.argv[1]), sys.argv[2]
    r = run_experiment("squeezefaceposenet.train.squeezefaceposenet", "smoke", RunContext(progress=False), results)
    print("MODULES", " ".join(r.provenance["code_modules"]))
    print("FRESH", stale_reasons(r))
    with open(src / "models" / "stn.py", "a") as f:   # a module chapter 2 does not use
        f.write("\\n# edited\\n")
    print("AFTER_STN", stale_reasons(r))
    with open(src / "layers" / "fire.py", "a") as f:  # SqueezeFacePoseNet's fire module
        f.write("\\n# edited\\n")
    print("AFTER_FIRE", stale_reasons(r))
""")


def test_editing_a_used_module_marks_a_real_result_stale(tmp_path, real_data_root, repo):
    """A real experiment run from a copy of the package: editing a module it does not use leaves its
    result fresh; editing one it uses (Fire, which the hand-kept lists missed) marks it stale."""
    src = tmp_path / "src"
    shutil.copytree(repo / "facelab", src / "facelab", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(src), FACELAB_DATA=str(real_data_root))
    proc = subprocess.run([sys.executable, "-c", EDIT_SCRIPT, str(src / "facelab"), str(tmp_path / "results")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in proc.stdout.splitlines()
             if line.split(" ", 1)[0] in {"MODULES", "FRESH", "AFTER_STN", "AFTER_FIRE"}}
    modules = lines["MODULES"].split()
    assert "facelab.layers.fire" in modules and "facelab.models.squeezefaceposenet" in modules
    assert "facelab.models.stn" not in modules and "facelab.tables" not in modules
    assert lines["FRESH"] == "[]" and lines["AFTER_STN"] == "[]"
    assert "facelab.layers.fire" in lines["AFTER_FIRE"] and "facelab.models.stn" not in lines["AFTER_FIRE"]
