"""The SqueezeFacePoseNet verification protocol (Alonso-Fernandez et al., paper 001, Sections 4-5, Table 3).

The paper tests on VGGFace2-Pose: 368 users x 3 poses (frontal, three-quarter, profile) x 10
images. A *template* is 1 or 5 images of one user in one pose (its descriptor is the mean of
the images' descriptors), so a user has 10 or 2 templates per pose. For a pose combination
(A, B):

* same pose (A == B), genuine: each template of a user against the remaining templates of the
  same user, without symmetric comparisons (i < j);
* cross pose (A != B), genuine: every template of the user in A against every template of the
  user in B;
* impostor (both cases): the *first* template of a user (pose A) against the *second* template
  (pose B) of the next 100 users. Users are taken in sorted order and "next" wraps around, which
  is what makes the paper's count 368 x 100.

This gives Table 3 exactly: one image per template 16,560 / 36,800 / 36,800 / 36,800 and five
images per template 368 / 36,800 / 1,472 / 36,800 (same-pose genuine, same-pose impostor,
cross-pose genuine, cross-pose impostor), per pose combination.

Deviation for CFP (10 frontal + 4 profile images per identity, no three-quarter pose): a user's
images of one pose are cut into consecutive templates of ``images_per_template`` images; when a
pose has fewer than two templates' worth of images (CFP profile: 4 < 2 x 5), the template size
is reduced to ``n // 2`` so that the user still has the protocol's *two* templates per pose:
five-image templates on CFP are 5 frontal images and **2 profile images** (a user left with 3
profile images after preparation gets two templates of 1). Leftover images (n not a multiple of
the size) are not used. Users whose images were rejected keep the
templates their remaining images fill; comparisons needing a template a user lacks are
counted in :attr:`PoseProtocol.skipped`, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: How many following users each user's first template is compared with (impostors).
N_IMPOSTOR_USERS = 100

#: Pose names of the paper's VGGFace2-Pose layout.
PAPER_POSES = ("frontal", "three_quarter", "profile")


@dataclass(frozen=True)
class Template:
    """``images_per_template`` images of one user in one pose; ``index`` is 0-based per (user, pose)."""

    user: str
    pose: str
    index: int
    images: tuple[str, ...]


@dataclass
class PoseProtocol:
    """The comparisons of one pose combination.

    Attributes:
        templates: every template used (indices below refer to this list).
        pairs: ``int64[M, 2]`` (enrolment template, query template) indices into ``templates``.
        genuine: ``bool[M]``.
        skipped: counts of comparisons the protocol asks for but a user lacks a template for.
    """

    pose_a: str
    pose_b: str
    images_per_template: int
    templates: list[Template]
    pairs: np.ndarray
    genuine: np.ndarray
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def same_pose(self) -> bool:
        return self.pose_a == self.pose_b

    def counts(self) -> dict[str, int]:
        return {"genuine": int(self.genuine.sum()), "impostor": int((~self.genuine).sum())}


def paper_layout(n_users: int = 368, n_images: int = 10,
                 poses: Sequence[str] = PAPER_POSES) -> dict[str, dict[str, list[str]]]:
    """The layout of VGGFace2-Pose as the paper describes it, with placeholder image names."""
    return {f"u{u:04d}": {p: [f"u{u:04d}/{p}/{i:02d}" for i in range(n_images)] for p in poses}
            for u in range(n_users)}


def split_templates(images: Sequence[str], images_per_template: int) -> list[tuple[str, ...]]:
    """Cut one user's images of one pose into consecutive templates (see the module docstring)."""
    if images_per_template < 1:
        raise ValueError(f"images_per_template must be >= 1, got {images_per_template}")
    size, n = images_per_template, len(images)
    if n >= 2 * size:
        count = n // size
    else:
        # Too few images for two full templates: two smaller ones (or one, from a single image).
        size = max(1, n // 2)
        count = min(2, n // size)
    return [tuple(images[i * size:(i + 1) * size]) for i in range(count)]


def build_templates(layout: Mapping[str, Mapping[str, Sequence[str]]],
                    images_per_template: int) -> dict[tuple[str, str], list[Template]]:
    """``{user: {pose: [image, ...]}}`` -> ``{(user, pose): [Template, ...]}`` (images in given order)."""
    out: dict[tuple[str, str], list[Template]] = {}
    for user in sorted(layout):
        for pose, images in layout[user].items():
            out[(user, pose)] = [Template(user, pose, i, t)
                                 for i, t in enumerate(split_templates(list(images), images_per_template))]
    return out


def build_protocol(layout: Mapping[str, Mapping[str, Sequence[str]]], pose_a: str, pose_b: str,
                   images_per_template: int, n_impostor_users: int = N_IMPOSTOR_USERS) -> PoseProtocol:
    """The comparisons between pose ``pose_a`` (enrolment) and ``pose_b`` (query)."""
    by_key = build_templates(layout, images_per_template)
    users = sorted(layout)
    templates: list[Template] = []
    index: dict[tuple[str, str, int], int] = {}
    for key in sorted(by_key):
        if key[1] in (pose_a, pose_b):
            for t in by_key[key]:
                index[(t.user, t.pose, t.index)] = len(templates)
                templates.append(t)
    pairs: list[tuple[int, int]] = []
    genuine: list[bool] = []
    skipped = {"genuine_users_without_templates": 0, "impostor_missing_template": 0}
    for u, user in enumerate(users):
        ta, tb = by_key.get((user, pose_a), []), by_key.get((user, pose_b), [])
        if pose_a == pose_b:
            gen = [(a, b) for i, a in enumerate(ta) for b in ta[i + 1:]]
        else:
            gen = [(a, b) for a in ta for b in tb]
        if not gen:
            skipped["genuine_users_without_templates"] += 1
        for a, b in gen:
            pairs.append((index[(a.user, a.pose, a.index)], index[(b.user, b.pose, b.index)]))
            genuine.append(True)
        for step in range(1, min(n_impostor_users, len(users) - 1) + 1):
            other = users[(u + step) % len(users)]
            a_key, b_key = (user, pose_a, 0), (other, pose_b, 1)
            if a_key not in index or b_key not in index:
                skipped["impostor_missing_template"] += 1
                continue
            pairs.append((index[a_key], index[b_key]))
            genuine.append(False)
    return PoseProtocol(pose_a, pose_b, images_per_template, templates,
                        np.asarray(pairs, dtype=np.int64).reshape(-1, 2), np.asarray(genuine, dtype=bool), skipped)


def count_table(layout: Mapping[str, Mapping[str, Sequence[str]]], poses: Sequence[str],
                images_per_template: Sequence[int] = (1, 5),
                n_impostor_users: int = N_IMPOSTOR_USERS) -> list[dict[str, object]]:
    """Table 3 for a layout: one row per (template size, pose combination) with the four counts.

    Pose combinations are the same-pose ones ``(p, p)`` and the cross-pose ones ``(p, q)`` with
    ``p`` before ``q`` in ``poses``.
    """
    rows = []
    combos = [(p, p) for p in poses] + [(p, q) for i, p in enumerate(poses) for q in poses[i + 1:]]
    for k in images_per_template:
        for pa, pb in combos:
            proto = build_protocol(layout, pa, pb, k, n_impostor_users)
            rows.append({"images_per_template": k, "pose_a": pa, "pose_b": pb,
                         "kind": "same-pose" if pa == pb else "cross-pose", **proto.counts(),
                         "skipped": sum(proto.skipped.values())})
    return rows


def cfp_layout(image_paths: Sequence[str]) -> dict[str, dict[str, list[str]]]:
    """CFP image paths (``Data/Images/<id>/<pose>/<nn>.jpg``) -> ``{id: {pose: [sorted paths]}}``."""
    from facelab.data.cfp import parse_image_path

    layout: dict[str, dict[str, list[str]]] = {}
    for rel in sorted(image_paths, key=lambda r: parse_image_path(r)):
        ident, pose, _ = parse_image_path(rel)
        layout.setdefault(ident, {}).setdefault(pose, []).append(rel)
    return layout


def users_with_templates(layout: Mapping[str, Mapping[str, Sequence[str]]], poses: Sequence[str],
                         min_images: int = 2) -> dict[str, dict[str, list[str]]]:
    """The users having at least ``min_images`` images in every pose of ``poses`` (two templates each).

    A prepared subset can hold users with a single image of a pose (pairs of a verification
    protocol); they cannot take part in this protocol, so they are left out, not counted as misses.
    """
    return {u: {p: list(v[p]) for p in poses} for u, v in layout.items()
            if all(len(v.get(p, ())) >= min_images for p in poses)}
