"""What is on disk: raw dataset counts under a data root, and what has been prepared.

:func:`data_status` backs ``python -m facelab data status``: for every dataset in
``facelab.paths.DATASETS`` it says where it was found (or how to get it), its counts (LFW
images / identities / pairs, CFP images / identities / FF and FP pairs, WIDER FACE images /
faces, ...) and, per profile, what ``prepare`` produced (accepted, rejected by reason, cache size).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from facelab.config import PROFILES
from facelab.errors import UnknownNameError
from facelab.paths import DATASETS, DataNotFoundError, dataset_dir, prepared_dir


def _count_files(folder: Path, suffixes: tuple[str, ...]) -> int:
    return sum(1 for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())


def dataset_counts(name: str, folder: str | os.PathLike) -> dict:
    """Counts of dataset ``name`` in ``folder`` (what ``DATASETS[name].folder`` holds under a data root)."""
    folder = Path(folder)
    if name == "lfw":
        from facelab.data import lfw

        images_root = folder / lfw.IMAGES_FOLDER
        per_id = {d.name: sum(1 for f in os.scandir(d) if f.name.endswith(".jpg"))
                  for d in os.scandir(images_root) if d.is_dir()}
        counts = {"images": sum(per_id.values()), "identities": len(per_id),
                  "identities_2plus": sum(1 for v in per_id.values() if v >= 2)}
        for view, fname in lfw.PROTOCOL_FILES.items():
            path = folder / "protocol" / fname
            counts[f"pairs_{view}"] = len(lfw.parse_pairs(path.read_text(), str(path))) if path.exists() else 0
        return counts
    if name == "cfp":
        from facelab.data import cfp

        root = folder / cfp.DATASET_FOLDER
        images = cfp.list_images(cfp_root=root)
        poses = [cfp.parse_image_path(r)[1] for r in images]
        counts = {"images": len(images), "identities": len({cfp.parse_image_path(r)[0] for r in images}),
                  "frontal": poses.count("frontal"), "profile": poses.count("profile"),
                  "names": len(cfp.read_names(cfp_root=root))}
        for proto in cfp.PROTOCOLS:
            try:
                counts[f"pairs_{proto}"] = len(cfp.read_pairs(proto, cfp_root=root))
            except FileNotFoundError:
                counts[f"pairs_{proto}"] = 0
        return counts
    if name == "widerface":
        from facelab.data import widerface

        gt_path = folder / widerface.SUBSET_GT
        gt = widerface.parse_gt(gt_path.read_text(), str(gt_path)) if gt_path.exists() else []
        images = folder / widerface.IMAGES_FOLDER
        present = [g for g in gt if (images / g.path).exists()]
        return {"images": len(present), "faces": sum(len(g) for g in present), "images_in_ground_truth": len(gt),
                "images_on_disk": _count_files(images, (".jpg", ".jpeg", ".png"))}
    if name == "aflw2000":
        return {"images": _count_files(folder, (".jpg",)), "mat_files": _count_files(folder, (".mat",))}
    if name == "rwmfd":
        return {"images": _count_files(folder, (".jpg", ".jpeg", ".png")),
                "folders": sum(1 for p in folder.iterdir() if p.is_dir())}
    raise UnknownNameError(f"unknown dataset {name!r}")


def prepared_status(name: str) -> dict[str, dict]:
    """Per profile, the summary ``prepare`` wrote (absent profiles are left out)."""
    out = {}
    for profile in PROFILES:
        path = prepared_dir(name) / f"summary-{profile}.json"
        if path.exists():
            try:
                out[profile] = json.loads(path.read_text())
            except json.JSONDecodeError:
                out[profile] = {"error": f"{path} is damaged: rerun prepare"}
    return out


def data_status(data_root: str | os.PathLike | None = None) -> list[dict]:
    """One entry per known dataset: ``name``, ``found`` (bool), ``folder`` or ``how_to_get``, ``counts``,
    ``prepared`` (profile -> summary) and ``error`` where counting failed."""
    out = []
    for name, info in DATASETS.items():
        entry: dict = {"name": name, "title": info.title}
        try:
            folder = dataset_dir(name, data_root)
        except DataNotFoundError:
            entry.update(found=False, how_to_get=f"{info.how_to_get} ({info.homepage})")
        else:
            entry.update(found=True, folder=str(folder))
            try:
                entry["counts"] = dataset_counts(name, folder)
            except (OSError, ValueError) as err:
                entry["error"] = str(err)
        entry["prepared"] = prepared_status(name)
        out.append(entry)
    return out
