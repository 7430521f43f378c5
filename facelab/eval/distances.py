"""Comparing descriptors: cosine similarity and the chi-square (χ²) distance.

Shapes: descriptors are numpy arrays (or anything ``np.asarray`` accepts, e.g. CPU
tensors) of shape [N, D]. The *paired* functions compare row i of ``a`` with row i of ``b``
and return [N]; the ``pairwise_*`` functions compare every row of ``a`` [N, D] with every
row of ``b`` [M, D] and return [N, M].

Verification scores in facelab are similarities (higher = same person), so a distance
becomes a score by negation: ``score = -chi2_distance(a, b)``.

χ² distance (paper 001, Section 4: "A distance measure (χ² in our case) is then used",
no formula given). facelab uses the additive form of scikit-learn's ``additive_chi2_kernel``::

    chi2(x, y) = sum_i (x_i - y_i)^2 / (x_i + y_i),   terms with x_i + y_i = 0 count as 0

(some texts put a factor 1/2 in front; it rescales every score equally and changes no
ranking, EER or accuracy). χ² is defined for non-negative features such as paper 001's
descriptor, the global average pool of ReLU outputs. For features that can be negative the
caller must choose a convention with ``negative``:

* ``"raise"`` (default): refuse, naming the fix;
* ``"clip"``: clamp negative components to 0 first (as if a ReLU were applied);
* ``"abs"``: use ``|x_i| + |y_i|`` as the denominator, which equals the formula above on
  non-negative input and remains symmetric, non-negative and zero only for x = y.
"""

from __future__ import annotations

from typing import Any

import numpy as np

NEGATIVE_CONVENTIONS = ("raise", "clip", "abs")


def _as_2d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape [N, D] (got {a.shape})")
    return a


def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a2, b2 = _as_2d(a, "a"), _as_2d(b, "b")
    if a2.shape != b2.shape:
        raise ValueError(f"paired descriptors must have the same shape (got {a2.shape} and {b2.shape})")
    return a2, b2


def l2_normalize(x: Any, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit Euclidean norm ([N, D] -> [N, D]); zero rows stay zero."""
    a = _as_2d(x, "x")
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), eps)


def cosine_similarity(a: Any, b: Any) -> np.ndarray:
    """Cosine of the angle between row i of ``a`` and row i of ``b``: [N, D], [N, D] -> [N]."""
    a2, b2 = _paired(a, b)
    return np.sum(l2_normalize(a2) * l2_normalize(b2), axis=1)


def pairwise_cosine(a: Any, b: Any) -> np.ndarray:
    """Cosine similarity of every row of ``a`` [N, D] with every row of ``b`` [M, D] -> [N, M]."""
    from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

    return sk_cosine(_as_2d(a, "a"), _as_2d(b, "b"))


def _chi2_inputs(a: np.ndarray, b: np.ndarray, negative: str) -> tuple[np.ndarray, np.ndarray]:
    if negative not in NEGATIVE_CONVENTIONS:
        raise ValueError(f"unknown convention for negative features {negative!r}; "
                         f"use one of {', '.join(NEGATIVE_CONVENTIONS)}")
    if negative == "clip":
        return np.maximum(a, 0.0), np.maximum(b, 0.0)
    if negative == "raise" and (np.any(a < 0) or np.any(b < 0)):
        raise ValueError("chi-square distance needs non-negative features (these have negative components); "
                         "pass negative='clip' or negative='abs' to choose a convention")
    return a, b


def chi2_distance(a: Any, b: Any, *, negative: str = "raise") -> np.ndarray:
    """χ² distance of row i of ``a`` and row i of ``b``: [N, D], [N, D] -> [N] (formula above)."""
    a2, b2 = _chi2_inputs(*_paired(a, b), negative)
    num = (a2 - b2) ** 2
    den = np.abs(a2) + np.abs(b2)  # equals a + b when both are non-negative
    terms = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return terms.sum(axis=1)


def pairwise_chi2(a: Any, b: Any, *, negative: str = "raise") -> np.ndarray:
    """χ² distance of every row of ``a`` [N, D] with every row of ``b`` [M, D] -> [N, M]."""
    a2, b2 = _chi2_inputs(_as_2d(a, "a"), _as_2d(b, "b"), negative)
    if a2.shape[1] != b2.shape[1]:
        raise ValueError(f"descriptors must have the same dimension (got {a2.shape[1]} and {b2.shape[1]})")
    if negative != "abs":
        from sklearn.metrics.pairwise import additive_chi2_kernel

        return -additive_chi2_kernel(a2, b2)
    out = np.empty((a2.shape[0], b2.shape[0]))
    for i, row in enumerate(a2):  # one row at a time keeps memory at [M, D]
        out[i] = chi2_distance(np.broadcast_to(row, b2.shape), b2, negative="abs")
    return out
