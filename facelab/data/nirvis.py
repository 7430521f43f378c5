"""The NIR-VIS masked stand-in of chapter 4 (paper 003), built from real visible faces, honest by construction.

No NIR-VIS dataset (CASIA NIR-VIS 2.0, Oulu-CASIA, BUAA-VisNir) is available offline. The stand-in
pairs a *visible* gallery photo with a *simulated near-infrared, masked* probe photo of the same person
(:mod:`facelab.data.nir`, :mod:`facelab.data.masks`), under three rules:

* **One modality per source photo.** Every photo of an identity is assigned to the VIS pool or to the
  NIR pool, never both (:func:`assign_modalities`): a probe is never the simulated twin of a gallery
  photo, so a network cannot match them by inverting a fixed transform.
* **Mask first, then simulate NIR** (:func:`render`): the mask is then imaged "in NIR" too, as a real
  masked face in front of an NIR camera would be. Masks go on NIR images only (the paper's setting).
  The crops are aligned to the ArcFace template, so the mask is drawn from the template's five points
  (a 2D-landmark mask, the family the paper argues against; its 3D reconstruction is not available).
* **Identity-disjoint splits** (:func:`casia_standin`): the CASIA NIR-VIS 2.0 stand-in follows that
  dataset's protocol, ten random 50/50 identity splits; in each, every test identity has one VIS gallery
  photo and its remaining photos as masked-NIR probes, and the training identities' photos are split
  between the two pools. The caller passes the identities it may use (those of no other split of the
  chapter, LFW∩CFP names removed with :mod:`facelab.data.splits`).

Renderings are deterministic: the mask style, colour and NIR sensor parameters of photo ``row`` come from
``numpy.random.default_rng((seed, row, kind))``, so a probe looks the same in every experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facelab.data.align import template
from facelab.data.masks import add_mask
from facelab.data.nir import simulate_nir

#: What a stand-in photo can be rendered as; the modality-gap measurement compares them all.
KINDS = ("vis", "grey", "nir", "vis_masked", "nir_masked")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
#: ITU-R BT.601 luminance weights: plain colour removal, to separate it from the rest of the NIR gap.
LUMA = (0.299, 0.587, 0.114)


def render(image: np.ndarray, kind: str, *, seed: int, row: int) -> np.ndarray:
    """One aligned ``uint8[112, 112, 3]`` RGB crop rendered as ``kind`` (:data:`KINDS`), ``uint8[112, 112, 3]``.

    ``grey``: luminance in three channels; ``nir``: :func:`facelab.data.nir.simulate_nir`; ``*_masked``: a
    mask drawn first (:func:`facelab.data.masks.add_mask` at the template's landmarks), then the modality.
    """
    if kind not in _KIND_CODE:
        raise ValueError(f"unknown rendering {kind!r}; use one of {', '.join(KINDS)}")
    if image.shape[:2] != (112, 112) or image.ndim != 3:
        raise ValueError(f"render expects an aligned uint8[112, 112, 3] crop, got shape {image.shape}")
    rng = np.random.default_rng((seed, int(row), _KIND_CODE[kind]))
    out = image
    if kind.endswith("_masked"):
        out = add_mask(out, template(112), rng).image
    if kind.startswith("nir"):
        out = simulate_nir(out, rng)[0]
    elif kind == "grey":
        g = np.clip(np.round(out.astype(np.float32) @ np.asarray(LUMA, np.float32)), 0, 255).astype(np.uint8)
        out = np.repeat(g[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


def mask_style_of(kind: str, *, seed: int, row: int) -> str | None:
    """The mask style (:data:`facelab.data.masks.MASK_STYLES`) that :func:`render` draws on photo ``row`` as
    ``kind``, without rendering (None for an unmasked kind): the first draw of the photo's generator, as in
    :func:`facelab.data.masks.add_mask`. Used to hold one style out of training."""
    from facelab.data.masks import MASK_STYLES

    if kind not in _KIND_CODE:
        raise ValueError(f"unknown rendering {kind!r}; use one of {', '.join(KINDS)}")
    if not kind.endswith("_masked"):
        return None
    rng = np.random.default_rng((seed, int(row), _KIND_CODE[kind]))
    return str(rng.choice(sorted(MASK_STYLES)))


def render_rows(images: np.ndarray, rows: Sequence[int], kind: str, *, seed: int) -> np.ndarray:
    """``uint8[len(rows), 112, 112, 3]``: :func:`render` of ``images[row]`` for each row (rows index ``images``)."""
    rows = np.asarray(rows, np.int64)
    out = np.empty((len(rows), 112, 112, 3), np.uint8)
    for i, r in enumerate(rows):
        out[i] = render(np.asarray(images[r]), kind, seed=seed, row=int(r))
    return out


def assign_modalities(identity: Sequence[str], rows: Sequence[int], *, seed: int) -> dict[str, np.ndarray]:
    """Split the photos ``rows`` (with their ``identity``) into ``{"vis": rows, "nir": rows}``: each identity's
    photos shuffled (``default_rng((seed, k))``) and alternated, so every identity with two photos or more has
    both modalities and no photo has two."""
    identity, rows = np.asarray(identity), np.asarray(rows, np.int64)
    vis, nir = [], []
    for k, name in enumerate(sorted(set(identity.tolist()))):
        mine = rows[identity == name]
        mine = np.random.default_rng((seed, k)).permutation(mine)
        vis.append(mine[0::2])
        nir.append(mine[1::2])
    cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.empty(0, np.int64)  # noqa: E731
    return {"vis": cat(vis), "nir": cat(nir)}


@dataclass(frozen=True)
class StandInSplit:
    """One identity split: ``train_*`` photo rows per modality; the test gallery (VIS, one photo per test
    identity) and probes (every other photo of a test identity, to be rendered masked NIR). Rows index the
    prepared set's arrays; ``*_identity`` are the identities of those rows."""

    split: int
    train_identities: tuple[str, ...]
    test_identities: tuple[str, ...]
    train_vis: np.ndarray
    train_nir: np.ndarray
    gallery: np.ndarray
    probes: np.ndarray

    def rows(self) -> np.ndarray:
        return np.concatenate([self.train_vis, self.train_nir, self.gallery, self.probes])


def casia_standin(identity: Sequence[str], allowed: Sequence[str], *, n_splits: int = 10, min_images: int = 4,
                  seed: int = 0) -> list[StandInSplit]:
    """The CASIA NIR-VIS 2.0 stand-in: identities of ``allowed`` with at least ``min_images`` photos (``identity``:
    one label per row of the prepared set), ``n_splits`` random 50/50 identity splits (``default_rng((seed,
    split))``). Raises ValueError when fewer than four identities qualify."""
    identity = np.asarray(identity).astype(str)
    names, counts = np.unique(identity[np.isin(identity, np.asarray(list(allowed), dtype=str))], return_counts=True)
    eligible = names[counts >= min_images]
    if len(eligible) < 4:
        raise ValueError(f"only {len(eligible)} allowed identities have {min_images} photos: the stand-in needs 4")
    out = []
    for s in range(n_splits):
        rng = np.random.default_rng((seed, s))
        order = rng.permutation(eligible)
        half = len(order) // 2
        test, train = np.sort(order[:half]), np.sort(order[half:])
        gallery, probes = [], []
        for name in test:
            mine = rng.permutation(np.flatnonzero(identity == name))
            gallery.append(mine[:1])
            probes.append(mine[1:])
        train_rows = np.flatnonzero(np.isin(identity, train))
        pools = assign_modalities(identity[train_rows], train_rows, seed=seed * 1000 + s)
        out.append(StandInSplit(split=s, train_identities=tuple(train.tolist()), test_identities=tuple(test.tolist()),
                                train_vis=pools["vis"], train_nir=pools["nir"], gallery=np.sort(np.concatenate(gallery)),
                                probes=np.sort(np.concatenate(probes))))
    return out


def check_standin(split: StandInSplit, identity: Sequence[str]) -> None:
    """Raise ValueError unless the split is honest: train and test identities disjoint, no photo in two roles
    or modalities, every test identity with one gallery photo and at least one probe."""
    identity = np.asarray(identity).astype(str)
    if set(split.train_identities) & set(split.test_identities):
        raise ValueError("a test identity is also a training identity")
    rows = split.rows()
    if len(np.unique(rows)) != len(rows):
        raise ValueError("a photo has two roles or two modalities")
    if set(identity[np.concatenate([split.train_vis, split.train_nir])]) & set(split.test_identities):
        raise ValueError("a training photo shows a test identity")
    g = identity[split.gallery]
    if len(set(g)) != len(g) or set(g) != set(split.test_identities):
        raise ValueError("every test identity needs exactly one gallery photo")
    if set(identity[split.probes]) != set(split.test_identities):
        raise ValueError("every test identity needs a probe")


@dataclass(frozen=True)
class GalleryProbeSet:
    """A cross-dataset test set: VIS ``gallery`` rows and masked-NIR ``probes`` rows (each photo one role)
    of ``identities``; rows index the prepared set's arrays."""

    name: str
    identities: tuple[str, ...]
    gallery: np.ndarray
    probes: np.ndarray


def cfp_standins(identity: Sequence[str], pose: Sequence[str], allowed: Sequence[str], *, oulu_identities: int = 20,
                 buaa_identities: int = 100, buaa_probes: int = 9, seed: int = 0) -> dict[str, GalleryProbeSet]:
    """The two cross-dataset stand-ins, from CFP (``identity`` and ``pose``, "frontal" or "profile", one per
    row of the prepared CFP set), on disjoint identities of ``allowed`` drawn with ``default_rng(seed)``:

    * ``oulu`` (Oulu-CASIA NIR-VIS: 20 test identities, frontal faces, *every* VIS photo of an identity in
      the gallery): ``oulu_identities`` identities; their frontal photos alternate between the VIS gallery
      and the NIR probes (:func:`assign_modalities`); profile photos are not used.
    * ``buaa`` (BUAA-VisNir: 100 test identities, 9 NIR photos each, with pose): ``buaa_identities``
      identities, one frontal VIS gallery photo each and ``buaa_probes`` NIR probes, every profile photo
      first and frontal ones for the rest.

    Only identities with at least two frontal photos (Oulu) or ``buaa_probes + 1`` photos including two
    frontal ones (BUAA) qualify. Raises ValueError when fewer qualify than asked for.
    """
    identity, pose = np.asarray(identity).astype(str), np.asarray(pose).astype(str)
    frontal = pose == "frontal"
    names = sorted(set(identity.tolist()) & set(map(str, allowed)))
    n_frontal = {n: 0 for n in names}
    n_all = {n: 0 for n in names}
    for name, f in zip(identity, frontal):
        if name in n_all:
            n_all[name] += 1
            n_frontal[name] += int(f)
    order = np.random.default_rng(seed).permutation(np.array(names, dtype=str)) if names else np.array([], str)
    oulu_ok = [n for n in order if n_frontal[n] >= 2][:oulu_identities]
    buaa_ok = [n for n in order if n not in set(oulu_ok) and n_frontal[n] >= 2
               and n_all[n] >= buaa_probes + 1][:buaa_identities]
    if len(oulu_ok) < oulu_identities or len(buaa_ok) < buaa_identities:
        raise ValueError(f"the CFP stand-ins need {oulu_identities} + {buaa_identities} identities; "
                         f"only {len(oulu_ok)} + {len(buaa_ok)} qualify")
    oulu_rows = np.flatnonzero(np.isin(identity, oulu_ok) & frontal)
    pools = assign_modalities(identity[oulu_rows], oulu_rows, seed=seed)
    out = {"oulu": GalleryProbeSet("oulu", tuple(sorted(oulu_ok)), pools["vis"], pools["nir"])}
    gallery, probes = [], []
    for k, name in enumerate(sorted(buaa_ok)):
        rng = np.random.default_rng((seed, 1, k))
        mine_f = rng.permutation(np.flatnonzero((identity == name) & frontal))
        mine_p = rng.permutation(np.flatnonzero((identity == name) & ~frontal))
        gallery.append(mine_f[:1])
        probes.append(np.concatenate([mine_p, mine_f[1:]])[:buaa_probes])
    out["buaa"] = GalleryProbeSet("buaa", tuple(sorted(buaa_ok)), np.sort(np.concatenate(gallery)),
                                  np.sort(np.concatenate(probes)))
    return out
