"""A small model registry: ``register_model`` / ``create_model(name)`` / ``list_models()``.

Every paper model registers a builder here, so tests can run over all of them
(``@pytest.mark.parametrize("name", list_models())``). Models come in two kinds with different
interfaces: **recognizers** (the default kind: ``forward_features(x) -> [B, D]`` descriptors,
``num_classes`` for a softmax head) and **detectors** (``forward(x)`` -> per-anchor class, box and
landmark outputs; :mod:`facelab.models.lefv_detector`) and **normalizers** (``forward(x)`` -> a face of
the same shape; :mod:`facelab.models.lefv_normalizer`). ``list_models()`` lists recognizers, which is
what the descriptor tests and the training-throughput suite expect; ``list_models(kind="detector")``
the detectors; ``create_model`` builds either.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from facelab.errors import UnknownNameError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_KINDS: dict[str, str] = {}
KINDS = ("recognizer", "detector", "normalizer", "unified")


def register_model(fn: Callable[..., nn.Module] | None = None, *, kind: str = "recognizer"):
    """Decorator: register ``fn`` under its function name (``@register_model`` or
    ``@register_model(kind="detector")``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; use one of {', '.join(KINDS)}")

    def register(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = f
        _KINDS[name] = kind
        return f

    return register(fn) if fn is not None else register


def _ensure_loaded() -> None:
    # The model modules register themselves on import; importing the package is enough.
    import facelab.models  # noqa: F401


def list_models(pattern: str = "*", *, kind: str = "recognizer") -> list[str]:
    """Registered model names of ``kind`` matching a shell-style ``pattern``, sorted."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; use one of {', '.join(KINDS)}")
    _ensure_loaded()
    return sorted(n for n in _BUILDERS if _KINDS[n] == kind and fnmatch.fnmatch(n, pattern))


def model_kind(name: str) -> str:
    """``'recognizer'``, ``'detector'`` or ``'normalizer'``."""
    _ensure_loaded()
    if name not in _KINDS:
        raise UnknownNameError(f"unknown model {name!r}; registered: {', '.join(sorted(_BUILDERS))}")
    return _KINDS[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build registered model ``name`` with keyword arguments; weights are random."""
    _ensure_loaded()
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; registered: {', '.join(sorted(_BUILDERS))}") from None
    return builder(**kwargs)
