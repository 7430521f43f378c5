"""Training subsets that differ in how the images are spread over identities (paper 001, Table 5).

Paper 001 compares training on MS1M (many identities, few images each), on VGGFace2 (fewer
identities, many images each) and on one after the other. With a single training pool (LFW
identities disjoint from the test set) the same contrast is made by two *identity-disjoint*
subsets holding the same number of images:

* **deep**: the identities with the most images (at least ``deep_min`` each; ties broken by
  name), all their images, until ``n_images`` images are taken (the last identity may be cut);
* **wide**: from the remaining identities (sorted by name), the first ``few`` images of each
  identity that has at least ``few``, until ``n_images`` images are taken.

Image lists are taken in the given (sorted) order, so the subsets are deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class MatchedSubsets:
    """``wide`` and ``deep``: identity -> images; both hold ``n_images`` images."""

    wide: dict[str, list[str]]
    deep: dict[str, list[str]]
    n_images: int

    def describe(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, sub in (("wide", self.wide), ("deep", self.deep)):
            n = sum(len(v) for v in sub.values())
            out[name] = {"identities": len(sub), "images": n, "images_per_identity": n / max(len(sub), 1)}
        return out


def _take(order: Sequence[str], pool: Mapping[str, Sequence[str]], per_identity: int | None, n: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    left = n
    for ident in order:
        if left <= 0:
            break
        imgs = list(pool[ident])[: per_identity or None][:left]
        out[ident] = imgs
        left -= len(imgs)
    return out


def matched_subsets(pool: Mapping[str, Sequence[str]], *, few: int = 2, deep_min: int = 10,
                    n_images: int | None = None) -> MatchedSubsets:
    """Split ``pool`` (identity -> images) into identity-disjoint *wide* and *deep* subsets of equal size.

    ``n_images=None`` takes the largest size both subsets can reach.

    Raises:
        ValueError: ``few`` >= ``deep_min`` (the contrast would vanish) or the pool cannot give
            ``n_images`` to both subsets (the message says how many it can).
    """
    if few < 1 or deep_min <= few:
        raise ValueError(f"need 1 <= few < deep_min (got few={few}, deep_min={deep_min})")
    deep_order = sorted((i for i in pool if len(pool[i]) >= deep_min), key=lambda i: (-len(pool[i]), i))
    deep_cap = sum(len(pool[i]) for i in deep_order)
    # wide identities must not be deep ones; keep the deep set as small as the size allows
    best = 0
    for k in range(len(deep_order) + 1):
        deep_n = sum(len(pool[i]) for i in deep_order[:k])
        wide_n = few * sum(1 for i in pool if i not in set(deep_order[:k]) and len(pool[i]) >= few)
        best = max(best, min(deep_n, wide_n))
    if n_images is None:
        n_images = best
    if n_images < 1 or n_images > best:
        raise ValueError(f"the pool gives at most {best} images to each subset (deep identities with >= {deep_min} "
                         f"images hold {deep_cap}); asked for {n_images}")
    deep = _take(deep_order, pool, None, n_images)
    wide_order = sorted(i for i in pool if i not in deep and len(pool[i]) >= few)
    wide = _take(wide_order, pool, few, n_images)
    return MatchedSubsets(wide, deep, n_images)
