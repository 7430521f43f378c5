"""Build small LFW-shaped data roots in a temporary folder (a helper of the tests, not a test).

``build_lfw_root`` copies the images of the first pairs of a few View 2 folds of the real
mirror into ``<root>/lfw/lfw-deepfunneled/`` and writes a matching ``protocol/pairs.txt``,
so that ``python -m facelab data prepare --profile smoke --data-root <root>`` prepares exactly
those images (the smoke profile takes the first 5 matched and 5 mismatched pairs of every fold).
``extra`` files (``Name/Name_0001.jpg`` -> bytes) are added as one more fold of mismatched pairs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from facelab.data import lfw

PER_FOLD = 5  # matched and mismatched pairs per fold that smoke selects


def _pair_line(p: lfw.LFWPair) -> str:
    if p.same:
        return f"{p.name1}\t{p.idx1}\t{p.idx2}"
    return f"{p.name1}\t{p.idx1}\t{p.name2}\t{p.idx2}"


def build_lfw_root(root: Path, source_root: Path, folds: int, extra: dict[str, bytes] | None = None) -> list[str]:
    """Write the data root; return the image paths it holds (relative to ``lfw-deepfunneled/``)."""
    src = source_root / "lfw" / lfw.IMAGES_FOLDER
    view2 = lfw.parse_pairs((source_root / "lfw" / "protocol" / lfw.PROTOCOL_FILES["view2"]).read_text())
    chosen = [p for p in lfw.subsample_pairs(view2, 2 * PER_FOLD) if p.fold < folds]
    lines = [_pair_line(p) for p in chosen]
    images = sorted({r for p in chosen for r in p.images()})
    dest = root / "lfw" / lfw.IMAGES_FOLDER
    for rel in images:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dest / rel)
    n_folds = folds
    if extra:
        names = sorted(extra)
        for rel in names:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(extra[rel])
        # The extra fold: the first fold's matched pairs again, then the extra files as mismatched pairs.
        ids = [n.split("/")[0] for n in names]
        if len(ids) % 2:
            ids.append(chosen[0].name1)  # index 1 of a real identity
        mismatched = [f"{a}\t1\t{b}\t1" for a, b in zip(ids[::2], ids[1::2])]
        if len(mismatched) > PER_FOLD:
            raise ValueError(f"at most {2 * PER_FOLD} extra files")
        mismatched += [_pair_line(p) for p in chosen if not p.same][: PER_FOLD - len(mismatched)]
        lines += [_pair_line(p) for p in chosen if p.same][:PER_FOLD] + mismatched
        images += names
        n_folds += 1
    (root / "lfw" / "protocol").mkdir(parents=True, exist_ok=True)
    (root / "lfw" / "protocol" / "pairs.txt").write_text(f"{n_folds}\t{PER_FOLD}\n" + "\n".join(lines) + "\n")
    return images
