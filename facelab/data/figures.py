"""Figures and tables of the data chapter (``book/data.ipynb``), computed from prepared real data.

Each ``plot_*`` returns a matplotlib Figure; each ``*_table`` a pandas DataFrame. Nothing here
writes files: faces stay in the notebook's (uncommitted) outputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from facelab.data.manifest import PreparedSet, boxes_of, landmarks_of

#: Colours of the 5 landmarks in figures (left eye, right eye, nose, left/right mouth corner).
LANDMARK_COLOURS = ("tab:red", "tab:orange", "tab:green", "tab:blue", "tab:purple")
BLUR_COLOURS = {0: "lime", 1: "yellow", 2: "red"}


def _axes(n_rows: int, n_cols: int, size: float = 1.8):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n_rows, n_cols, figsize=(n_cols * size, n_rows * size), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def _draw_face(ax, box, lms, colour="lime") -> None:
    from matplotlib.patches import Rectangle

    if box is not None:
        ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False, color=colour, lw=1.2))
    if lms is not None:
        for (x, y), c in zip(lms, LANDMARK_COLOURS):
            ax.plot(x, y, "o", ms=3, color=c)


def plot_pipeline(prepared: PreparedSet, rows: Sequence[int], data_root: str | os.PathLike | None = None):
    """Per image (a column): the original with MTCNN's box and 5 landmarks, the loose crop with
    its landmarks, and the aligned 112x112 crop with the template points."""
    from facelab.data.align import template
    from facelab.data.imageio import read_rgb
    from facelab.data.manifest import resolve_image

    df = prepared.manifest.iloc[list(rows)]
    boxes, lms, loose_lms = boxes_of(df), landmarks_of(df), landmarks_of(df, "loose")
    fig, axes = _axes(3, len(df), 2.0)
    for j, (i, r) in enumerate(df.iterrows()):
        axes[0, j].imshow(read_rgb(resolve_image(prepared.dataset, r["path"], data_root)))
        _draw_face(axes[0, j], boxes[j], lms[j])
        axes[0, j].set_title(f"{r['identity']} {r['pose']}".strip()[:18] + f"\nscore {r['score']:.3f}", fontsize=7)
        axes[1, j].imshow(read_rgb(prepared.folder / r["loose"]))
        _draw_face(axes[1, j], None, loose_lms[j])
        axes[2, j].imshow(prepared.aligned[i])
        _draw_face(axes[2, j], None, template(112), colour="white")
    for k, label in enumerate(("original + MTCNN", "loose crop 128", "aligned 112")):
        axes[k, 0].text(-0.08, 0.5, label, transform=axes[k, 0].transAxes, rotation=90, va="center", ha="right",
                        fontsize=8)
    fig.tight_layout()
    return fig


def plot_rejected(prepared: PreparedSet, data_root: str | os.PathLike | None = None, limit: int = 8):
    """The rejected images of a prepared set (up to ``limit``) with their reason."""
    from facelab.data.imageio import ImageReadError, read_rgb
    from facelab.data.manifest import resolve_image

    rej = prepared.rejected.head(limit)
    fig, axes = _axes(1, max(1, len(rej)), 2.0)
    for j, (_, r) in enumerate(rej.iterrows()):
        try:
            axes[0, j].imshow(read_rgb(resolve_image(prepared.dataset, r["path"], data_root)))
        except ImageReadError:
            pass
        axes[0, j].set_title(f"{r['identity']} {r['pose']}\n{r['reason']}", fontsize=7)
    fig.tight_layout()
    return fig


def plot_masks(prepared: PreparedSet, rows: Sequence[int], seed: int = 0):
    """Every mask style (rows) on aligned faces (columns), colours drawn from ``seed``."""
    from facelab.data.align import template
    from facelab.data.masks import MASK_STYLES, add_mask

    rng = np.random.default_rng(seed)
    fig, axes = _axes(len(MASK_STYLES) + 1, len(rows), 1.6)
    for j, i in enumerate(rows):
        face = np.asarray(prepared.aligned[i])
        axes[0, j].imshow(face)
        for k, style in enumerate(sorted(MASK_STYLES), 1):
            m = add_mask(face, template(112), rng, style=style)
            axes[k, j].imshow(m.image)
            if j == 0:
                axes[k, j].set_title(style, fontsize=8, loc="left")
            axes[k, j].text(2, 108, m.colour, fontsize=6, color="white")
    fig.tight_layout()
    return fig


def plot_real_masked(data_root: str | os.PathLike | None = None, n: int = 6, seed: int = 0):
    """``n`` real photos from RWMFD (people wearing masks) for a qualitative comparison."""
    from facelab.data.imageio import read_rgb
    from facelab.paths import dataset_dir

    files = sorted(p for p in dataset_dir("rwmfd", data_root).rglob("*.jpg"))
    pick = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    fig, axes = _axes(1, len(pick), 2.0)
    for j, k in enumerate(sorted(pick)):
        axes[0, j].imshow(read_rgb(files[k]))
    fig.tight_layout()
    return fig


def plot_nir(prepared: PreparedSet, rows: Sequence[int], seed: int = 0):
    """Visible aligned faces (top) and their simulated NIR versions (bottom)."""
    from facelab.data.nir import simulate_nir

    rng = np.random.default_rng(seed)
    fig, axes = _axes(2, len(rows), 1.6)
    for j, i in enumerate(rows):
        face = np.asarray(prepared.aligned[i])
        out, p = simulate_nir(face, rng)
        axes[0, j].imshow(face)
        axes[1, j].imshow(out)
        axes[1, j].set_title(f"gamma {p.gamma:.2f}\nnoise {p.noise:.1f}", fontsize=6)
    fig.tight_layout()
    return fig


def plot_scenes(scenes_: Sequence, cols: int = 2):
    """Composite scenes with their exact boxes and landmarks."""
    rows = -(-len(scenes_) // cols)
    fig, axes = _axes(rows, cols, 4.0)
    for ax, s in zip(axes.flat, scenes_):
        ax.imshow(s.image)
        for b, lm in zip(s.boxes, s.landmarks):
            _draw_face(ax, b, lm)
        ax.set_title(f"{len(s.boxes)} faces", fontsize=8)
    fig.tight_layout()
    return fig


def plot_widerface(data_root: str | os.PathLike | None = None, indices: Sequence[int] = (0, 5)):
    """WIDER FACE validation images with their ground-truth boxes coloured by blur."""
    from facelab.data import widerface
    from facelab.data.imageio import read_rgb

    gt = widerface.read_gt(data_root)
    fig, axes = _axes(1, len(indices), 5.0)
    for ax, i in zip(axes.flat, indices):
        g = gt[i]
        ax.imshow(read_rgb(widerface.images_dir(data_root) / g.path))
        for b, blur in zip(g.boxes, g.blur):
            _draw_face(ax, b, None, colour=BLUR_COLOURS[int(blur)])
        ax.set_title(f"{g.path.split('/')[-1][:40]}: {len(g)} faces (green clear, yellow normal, red heavy blur)",
                     fontsize=7)
    fig.tight_layout()
    return fig


def status_table(data_root: str | os.PathLike | None = None):
    """One row per dataset: found or not, and its counts."""
    import pandas as pd

    from facelab.data.inventory import data_status

    rows = []
    for e in data_status(data_root):
        c = e.get("counts", {})
        rows.append({"dataset": e["name"], "title": e["title"], "found": e["found"],
                     "images": c.get("images"), "identities": c.get("identities"),
                     "faces": c.get("faces"),
                     "pairs": c.get("pairs_view2") or c.get("pairs_FP"),
                     "other": ", ".join(f"{k} {v:,}" for k, v in c.items()
                                        if k not in ("images", "identities", "faces", "pairs_view2", "pairs_FP"))})
    df = pd.DataFrame(rows)
    return df.astype({c: "Int64" for c in ("images", "identities", "faces", "pairs")})


def prepared_table(summaries: dict[str, dict]):
    """The summaries ``prepare`` returned, one row per dataset."""
    import pandas as pd

    rows = []
    for name, s in summaries.items():
        row = {"dataset": name, "profile": s["profile"], "images": s["images"], "accepted": s["accepted"],
               "rejected": s["rejected"]}
        row.update({f"rejected: {k}": v for k, v in s.get("reasons", {}).items() if v})
        if "faces" in s:
            row["faces"] = s["faces"]
        else:
            row.update({"identities": s["identities_accepted"], "several faces": s["several_faces"],
                        "found on retry": s["found_on_retry"], "packed MB": round(s["packed_bytes"] / 2**20, 1)})
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in df.columns:
        if c not in ("dataset", "profile", "packed MB"):
            df[c] = df[c].astype("Int64")
    return df


def protocol_table(prepared: dict[str, PreparedSet], data_root: str | os.PathLike | None = None):
    """Verification protocols against the prepared sets: pairs in the protocol, pairs usable, and
    dropped pairs by reason (an image rejected when prepared, or not selected by the profile)."""
    import pandas as pd

    from facelab.data import cfp, lfw
    from facelab.data.pairs import resolve_pairs

    protocols = []
    if "lfw" in prepared:
        protocols += [("lfw", "LFW View 2 (10 folds)", lfw.read_pairs("view2", data_root)),
                      ("lfw", "LFW View 1 train", lfw.read_pairs("dev_train", data_root)),
                      ("lfw", "LFW View 1 test", lfw.read_pairs("dev_test", data_root))]
    if "cfp" in prepared:
        protocols += [("cfp", f"CFP {p} (10 folds)", cfp.read_pairs(p, data_root)) for p in cfp.PROTOCOLS]
    rows = []
    for name, label, pairs in protocols:
        res = resolve_pairs(prepared[name], pairs)
        rows.append({"protocol": label, "pairs": res.n_protocol, "genuine": sum(p.same for p in pairs),
                     "usable": len(res), **{f"dropped: {k}": v for k, v in sorted(res.dropped.items())}})
    df = pd.DataFrame(rows)
    return df.fillna(0).astype({c: int for c in df.columns if c != "protocol"})


def split_table(data_root: str | os.PathLike | None = None):
    """The identity-disjoint cross-dataset training sets: kept, excluded by matching rule."""
    import pandas as pd

    from facelab.data import splits

    rows = []
    for split in (splits.cfp_train_lfw_test(data_root), splits.lfw_train_cfp_test(data_root)):
        split.check_disjoint()
        examples = [f"{n} ~ {m}" for n, m, rule in split.excluded.values() if rule != "exact"][:4]
        rows.append({"train on": split.train_dataset, "test on": split.test_dataset,
                     "train identities kept": len(split.train_identities),
                     "train images kept": sum(len(v) for v in split.train_images.values()),
                     "excluded (same person)": len(split.excluded),
                     **{f"excluded by {k}": v for k, v in split.excluded_by_rule().items()},
                     "examples (not exact)": "; ".join(examples)})
    return pd.DataFrame(rows)
