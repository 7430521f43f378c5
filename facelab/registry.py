"""A small model registry: ``register_model`` / ``create_model(name)`` / ``list_models()``.

Every paper model registers a builder here, so tests can run over all of them
(``@pytest.mark.parametrize("name", list_models())``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from facelab.errors import UnknownNameError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its function name."""
    name = fn.__name__
    if name in _BUILDERS:
        raise ValueError(f"model {name!r} is registered twice")
    _BUILDERS[name] = fn
    return fn


def _ensure_loaded() -> None:
    # The model modules register themselves on import; importing the package is enough.
    import facelab.models  # noqa: F401


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(n for n in _BUILDERS if fnmatch.fnmatch(n, pattern))


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build registered model ``name`` with keyword arguments; weights are random."""
    _ensure_loaded()
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise UnknownNameError(f"unknown model {name!r}; registered: {', '.join(sorted(_BUILDERS))}") from None
    return builder(**kwargs)
