"""Which images each profile prepares (deterministic; no randomness).

=========  =====================================================================================
profile    images
=========  =====================================================================================
smoke      LFW: the images of View 2's first 5 matched + 5 mismatched pairs of every fold (what
           the smoke chapters score). CFP: the images of the first 3 same + 3 different pairs of
           every FF and FP fold, plus every image (10 frontal + 4 profile) of identities 001-010
           (templates of the pose protocol and a tiny training set). A few hundred images.
small      LFW: every image in View 2 or View 1 pairs, and every image of an identity with at least
           two images (the cross-dataset training set). CFP: all 7,000 images.
full       everything: LFW 13,233 images, CFP 7,000 images.
=========  =====================================================================================

WIDER FACE is not "prepared" face by face (it is the detection test set): every profile
validates its 19 images and writes the ground truth as a manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from facelab.config import check_profile
from facelab.errors import UnknownNameError
from facelab.paths import DATASETS

#: View 2 pairs per fold scored at smoke (matched + mismatched), as in getting_started.
SMOKE_LFW_PAIRS_PER_FOLD = 10
#: CFP FF/FP pairs per fold prepared at smoke (same + different).
SMOKE_CFP_PAIRS_PER_FOLD = 6
#: CFP identities prepared in full at smoke (pose-protocol templates, a tiny training set).
SMOKE_CFP_IDENTITIES = tuple(f"{i:03d}" for i in range(1, 11))
#: LFW identities with at least this many images form the small profile's training set.
LFW_MIN_TRAIN_IMAGES = 2

FACE_DATASETS = ("lfw", "cfp")


@dataclass(frozen=True)
class ImageItem:
    """One image to prepare.

    ``path`` is relative to the data root (``<dataset folder>/...``), ``rel`` relative to the
    dataset's image root (what protocols use: ``Name/Name_0001.jpg``, ``Data/Images/001/frontal/01.jpg``).
    """

    dataset: str
    path: str
    rel: str
    identity: str
    name: str
    pose: str
    split: str


def _lfw_items(profile: str, data_root: str | os.PathLike | None) -> list[ImageItem]:
    from facelab.data import lfw
    from facelab.data.splits import lfw_identities

    view2 = lfw.read_pairs("view2", data_root)
    fold_of: dict[str, int] = {}
    for p in view2:
        for name in (p.name1, p.name2):
            fold_of.setdefault(name, p.fold)
    if profile == "smoke":
        # Only the pairs: listing 5,749 folders is the slowest part of a smoke run.
        rels = {r for p in lfw.subsample_pairs(view2, SMOKE_LFW_PAIRS_PER_FOLD) for r in p.images()}
    elif profile == "small":
        protocol = view2 + lfw.read_pairs("dev_train", data_root) + lfw.read_pairs("dev_test", data_root)
        rels = {r for p in protocol for r in p.images()}
        rels |= {r for imgs in lfw_identities(data_root).values() if len(imgs) >= LFW_MIN_TRAIN_IMAGES for r in imgs}
    else:
        rels = {r for imgs in lfw_identities(data_root).values() for r in imgs}
    prefix = f"{DATASETS['lfw'].folder}/{lfw.IMAGES_FOLDER}"
    out = []
    for rel in sorted(rels):
        ident = rel.split("/")[0]
        split = f"fold{fold_of[ident] + 1:02d}" if ident in fold_of else "none"
        out.append(ImageItem("lfw", f"{prefix}/{rel}", rel, ident, ident.replace("_", " "), "", split))
    return out


def _cfp_items(profile: str, data_root: str | os.PathLike | None) -> list[ImageItem]:
    from facelab.data import cfp

    names = cfp.read_names(data_root)
    pairs = {proto: cfp.read_pairs(proto, data_root) for proto in cfp.PROTOCOLS}
    fold_of = cfp.identity_folds(pairs["FF"] + pairs["FP"])
    every = cfp.list_images(data_root)
    if profile == "smoke":
        rels = {r for proto in cfp.PROTOCOLS for p in cfp.subsample_pairs(pairs[proto], SMOKE_CFP_PAIRS_PER_FOLD)
                for r in p.images()}
        rels |= {r for r in every if cfp.parse_image_path(r)[0] in SMOKE_CFP_IDENTITIES}
    else:
        rels = set(every)
    prefix = f"{DATASETS['cfp'].folder}/{cfp.DATASET_FOLDER}"
    out = []
    for rel in sorted(rels):
        ident, pose, _ = cfp.parse_image_path(rel)
        split = f"fold{fold_of[ident] + 1:02d}" if ident in fold_of else "none"
        out.append(ImageItem("cfp", f"{prefix}/{rel}", rel, ident, names.get(ident, ""), pose, split))
    return out


def select_images(dataset: str, profile: str, data_root: str | os.PathLike | None = None) -> list[ImageItem]:
    """The images ``profile`` prepares for face dataset ``dataset`` (``lfw`` or ``cfp``), sorted by path."""
    check_profile(profile)
    if dataset == "lfw":
        return _lfw_items(profile, data_root)
    if dataset == "cfp":
        return _cfp_items(profile, data_root)
    raise UnknownNameError(f"no face selection for dataset {dataset!r}: choose one of {', '.join(FACE_DATASETS)}")
