"""Training sets that share no identity with the test set they are used with.

Cross-dataset use in the book: train on CFP and test on LFW View 2, or train on LFW identities
with at least two images and test on CFP. CFP and LFW are both celebrity datasets, so the same
person can be in both under slightly different spellings ("Joe Biden" / "Joseph_Biden",
"Nicholas Cage" / "Nicolas_Cage", "George Bush" / "George_W_Bush"). A training identity is
excluded when its name *may* match a test name under any of these rules (a false match only
costs a training identity, a missed one leaks a test identity):

1. ``exact``: equal after :func:`normalize_name` (accents, case, punctuation, ``_`` ignored);
2. ``first_last``: same first and same last name token (middle names ignored);
3. ``spelling``: same last token and first tokens spelled alike (difflib ratio >= 0.8);
4. ``nickname``: same last token and first tokens in :data:`NICKNAMES` (Joe/Joseph, ...).

Identities within one dataset are its own labels (LFW folder name, CFP three-digit id).
"""

from __future__ import annotations

import difflib
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

#: Common English short forms of first names (both directions are checked).
NICKNAMES: tuple[tuple[str, ...], ...] = (
    ("joe", "joseph", "joey"), ("bill", "william", "will", "billy"), ("bob", "robert", "rob", "bobby"),
    ("jim", "james", "jimmy"), ("mike", "michael"), ("tom", "thomas", "tommy"), ("dick", "richard", "rick"),
    ("tony", "anthony"), ("chris", "christopher"), ("dan", "daniel", "danny"), ("dave", "david"),
    ("ed", "edward", "eddie"), ("steve", "steven", "stephen"), ("nick", "nicholas", "nicolas"),
    ("alex", "alexander", "alexandra"), ("kate", "katherine", "catherine", "katie"), ("liz", "elizabeth"),
    ("matt", "matthew", "mathew"), ("ben", "benjamin"), ("sam", "samuel", "samantha"), ("jen", "jennifer"),
    ("andy", "andrew"), ("pat", "patrick", "patricia"), ("ron", "ronald"), ("don", "donald"),
)

SPELLING_RATIO = 0.8
RULES = ("exact", "first_last", "spelling", "nickname")


def normalize_name(name: str) -> str:
    """``"Andrés_Manuel López-Obrador"`` -> ``"andres manuel lopez obrador"``."""
    ascii_name = unicodedata.normalize("NFKD", name.replace("_", " ")).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", " ", ascii_name.lower()).strip()


def _nick_groups() -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for i, group in enumerate(NICKNAMES):
        for n in group:
            out.setdefault(n, set()).add(i)
    return out


_NICK = _nick_groups()


def match_rule(a: str, b: str) -> str | None:
    """The first rule (see module docstring) under which names ``a`` and ``b`` may be one person."""
    na, nb = normalize_name(a), normalize_name(b)
    if not na or not nb:
        return None
    if na == nb:
        return "exact"
    ta, tb = na.split(), nb.split()
    if ta[-1] != tb[-1]:
        return None
    if ta[0] == tb[0]:
        return "first_last"
    if difflib.SequenceMatcher(None, ta[0], tb[0]).ratio() >= SPELLING_RATIO:
        return "spelling"
    if _NICK.get(ta[0], set()) & _NICK.get(tb[0], set()):
        return "nickname"
    return None


def find_name_overlaps(train_names: Mapping[str, str], test_names: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Training identities whose name may be a test person.

    Args:
        train_names: training identity -> person name.
        test_names: person names in the test set.

    Returns:
        ``{train identity: (matching test name, rule)}``.
    """
    by_last: dict[str, list[str]] = {}
    for name in set(test_names):
        norm = normalize_name(name)
        if norm:
            by_last.setdefault(norm.split()[-1], []).append(name)
    out: dict[str, tuple[str, str]] = {}
    for ident, name in train_names.items():
        norm = normalize_name(name)
        if not norm:
            continue
        best: tuple[str, str] | None = None
        for cand in sorted(by_last.get(norm.split()[-1], [])):
            rule = match_rule(name, cand)
            if rule and (best is None or RULES.index(rule) < RULES.index(best[1])):
                best = (cand, rule)
        if best:
            out[ident] = best
    return out


@dataclass
class TrainTestSplit:
    """A training identity set and the test set it must not overlap.

    Attributes:
        train_dataset, test_dataset: dataset names.
        train_identities: sorted identity labels of the training dataset that are kept.
        excluded: removed training identity -> (its name, matching test name, rule).
        test_names: person names in the test set.
        train_images: training identity -> its image paths (relative to the dataset folder).
    """

    train_dataset: str
    test_dataset: str
    train_identities: list[str]
    excluded: dict[str, tuple[str, str, str]]
    test_names: set[str]
    train_names: dict[str, str] = field(default_factory=dict)
    train_images: dict[str, list[str]] = field(default_factory=dict)

    def excluded_by_rule(self) -> dict[str, int]:
        counts = {r: 0 for r in RULES}
        for _, _, rule in self.excluded.values():
            counts[rule] += 1
        return counts

    def check_disjoint(self) -> None:
        """Raise ValueError if a kept training identity may be a test person (see module rules)."""
        kept = {i: self.train_names[i] for i in self.train_identities}
        clash = find_name_overlaps(kept, self.test_names)
        if clash:
            ident, (name, rule) = next(iter(clash.items()))
            raise ValueError(f"{self.train_dataset} identity {ident} ({kept[ident]}) matches test person "
                             f"{name} of {self.test_dataset} by rule {rule!r}; {len(clash)} overlaps in all")


def _make_split(train_dataset: str, test_dataset: str, train_names: dict[str, str], test_names: set[str],
                train_images: dict[str, list[str]]) -> TrainTestSplit:
    overlaps = find_name_overlaps(train_names, test_names)
    kept = sorted(i for i in train_names if i not in overlaps)
    excluded = {i: (train_names[i], name, rule) for i, (name, rule) in sorted(overlaps.items())}
    split = TrainTestSplit(train_dataset, test_dataset, kept, excluded, test_names, train_names,
                           {i: train_images[i] for i in kept})
    split.check_disjoint()
    return split


def lfw_identities(data_root: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """LFW identity (folder name) -> sorted image paths relative to ``lfw-deepfunneled/``."""
    from facelab.data.lfw import images_dir

    root = images_dir(data_root)
    return {d.name: sorted(f"{d.name}/{f.name}" for f in d.glob("*.jpg"))
            for d in sorted(root.iterdir()) if d.is_dir()}


def cfp_train_lfw_test(data_root: str | os.PathLike | None = None, test_view: str = "view2") -> TrainTestSplit:
    """Train on CFP identities whose names are not among the LFW test set's persons.

    The LFW test persons are every identity of LFW (not only those in ``test_view``'s pairs),
    so the split stays valid for any LFW protocol; ``test_view`` is kept for the record.
    """
    from facelab.data import cfp

    names = cfp.read_names(data_root)
    images: dict[str, list[str]] = {}
    for rel in cfp.list_images(data_root):
        images.setdefault(cfp.parse_image_path(rel)[0], []).append(rel)
    test_names = {ident.replace("_", " ") for ident in lfw_identities(data_root)}
    return _make_split("cfp", f"lfw:{test_view}", names, test_names, images)


def lfw_train_cfp_test(data_root: str | os.PathLike | None = None, min_images: int = 2) -> TrainTestSplit:
    """Train on LFW identities with at least ``min_images`` images that are not CFP persons."""
    from facelab.data import cfp

    ids = {k: v for k, v in lfw_identities(data_root).items() if len(v) >= min_images}
    names = {k: k.replace("_", " ") for k in ids}
    return _make_split("lfw", "cfp", names, set(cfp.read_names(data_root).values()), ids)


def lfw_view2_identities(data_root: str | os.PathLike | None = None) -> set[str]:
    """LFW identities (folder names) with an image in some View 2 pair: the LFW test persons."""
    from facelab.data import lfw

    return {r.split("/", 1)[0] for p in lfw.read_pairs("view2", data_root) for r in p.images()}


@dataclass
class DistillationPool:
    """Identities a student may learn from when it is tested on LFW View 2 (and on some CFP users).

    Attributes:
        lfw_identities: LFW identities in no View 2 pair (and not named like an excluded CFP user).
        cfp_identities: CFP identities whose names match no LFW person, minus the excluded CFP users.
        excluded: how many identities each rule removed (for the chapter's account of the pool).
    """

    lfw_identities: list[str]
    cfp_identities: list[str]
    excluded: dict[str, int]


def lfw_test_pool(data_root: str | os.PathLike | None = None, *,
                  exclude_cfp_users: Iterable[str] = ()) -> DistillationPool:
    """The training pool of a student tested on LFW View 2 and on CFP users ``exclude_cfp_users``.

    * LFW: the identities with no image in a View 2 pair (every View 2 person is a test identity);
      those named like an excluded CFP user are removed too (name rules of this module).
    * CFP: the identities whose names may not be any LFW person's (:func:`cfp_train_lfw_test`,
      all of LFW, not only View 2), minus the excluded CFP users themselves.
    """
    from facelab.data import cfp

    test_lfw = lfw_view2_identities(data_root)
    lfw_ids = sorted(set(lfw_identities(data_root)) - test_lfw)
    excluded_cfp = set(exclude_cfp_users)
    cfp_names = cfp.read_names(data_root)
    lfw_clash = find_name_overlaps({i: i.replace("_", " ") for i in lfw_ids},
                                   {cfp_names[u] for u in excluded_cfp if u in cfp_names})
    split = cfp_train_lfw_test(data_root)
    cfp_ids = [i for i in split.train_identities if i not in excluded_cfp]
    pool = DistillationPool(
        lfw_identities=[i for i in lfw_ids if i not in lfw_clash], cfp_identities=cfp_ids,
        excluded={"lfw_in_view2": len(test_lfw), "lfw_named_like_a_cfp_test_user": len(lfw_clash),
                  "cfp_named_like_an_lfw_person": len(split.excluded),
                  "cfp_test_users": len(excluded_cfp & set(split.train_identities))})
    return pool
