"""Protocols: LFW View 1/2, CFP FF/FP, the SqueezeFacePoseNet protocol (Table 3), WIDER FACE ground truth,
identity-disjoint training splits."""

from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest

from facelab.data import cfp, lfw, pose_protocol, splits, widerface

data_root = os.environ.get("FACELAB_DATA")
needs_data = pytest.mark.skipif(not data_root, reason="set FACELAB_DATA")


# --- LFW ---------------------------------------------------------------------------------

def test_lfw_parse_pairs_folds_and_errors():
    text = "2\t1\nA\t1\t2\nB\t1\tC\t2\nD\t1\t3\nE\t2\tF\t1\n"
    pairs = lfw.parse_pairs(text)
    assert [(p.fold, p.same) for p in pairs] == [(0, True), (0, False), (1, True), (1, False)]
    assert pairs[1].images() == ("B/B_0001.jpg", "C/C_0002.jpg")
    with pytest.raises(ValueError, match="header says"):
        lfw.parse_pairs("2\t1\nA\t1\t2\n")
    with pytest.raises(ValueError, match="not a matched pair"):
        lfw.parse_pairs("1\nA\t1\tB\t2\nC\t1\tD\t1\n")


@needs_data
def test_lfw_view2_and_view1_counts_and_disjoint_folds():
    view2 = lfw.read_pairs("view2", data_root)
    assert len(view2) == 6000
    per_fold = Counter((p.fold, p.same) for p in view2)
    assert set(per_fold.values()) == {300} and len(per_fold) == 20
    folds_of: dict[str, set[int]] = {}
    for p in view2:
        for n in (p.name1, p.name2):
            folds_of.setdefault(n, set()).add(p.fold)
    assert all(len(f) == 1 for f in folds_of.values()), "View 2 folds must be identity-disjoint"
    train, test = lfw.read_pairs("dev_train", data_root), lfw.read_pairs("dev_test", data_root)
    assert Counter(p.same for p in train) == {True: 1100, False: 1100}
    assert Counter(p.same for p in test) == {True: 500, False: 500}
    root = lfw.images_dir(data_root)
    assert all((root / r).exists() for p in view2[::97] for r in p.images())
    sub = lfw.subsample_pairs(view2, 10)
    assert len(sub) == 100 and Counter(p.same for p in sub) == {True: 50, False: 50}
    with pytest.raises(ValueError, match="unknown LFW view"):
        lfw.read_pairs("view3", data_root)


# --- CFP ---------------------------------------------------------------------------------

def _mini_cfp(tmp_path):
    """A two-fold, three-identity CFP tree in the official layout."""
    root = tmp_path / "cfp" / "cfp-dataset"
    f_list, p_list = [], []
    for ident in ("001", "002", "003"):
        for pose, n in (("frontal", 2), ("profile", 1)):
            for k in range(1, n + 1):
                (root / "Data" / "Images" / ident / pose).mkdir(parents=True, exist_ok=True)
                (root / "Data" / "Images" / ident / pose / f"{k:02d}.jpg").write_bytes(b"x")
                (f_list if pose == "frontal" else p_list).append(f"../Data/Images/{ident}/{pose}/{k:02d}.jpg")
    (root / "Data" / "list_name.txt").write_text("Ann One\nBob Two\nCid Three\n")
    proto = root / "Protocol"
    proto.mkdir()
    (proto / "Pair_list_F.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(f_list, 1)))
    (proto / "Pair_list_P.txt").write_text("".join(f"{i} {p}\n" for i, p in enumerate(p_list, 1)))
    for kind in ("FF", "FP"):
        for fold in range(1, 11):
            d = proto / "Split" / kind / f"{fold:02d}"
            d.mkdir(parents=True)
            # fold 1: identity 001 vs itself and 002; fold 2: identity 003; the others are empty.
            if fold == 1:
                (d / "same.txt").write_text("1,2\n" if kind == "FF" else "1,1\n")
                (d / "diff.txt").write_text("1,3\n" if kind == "FF" else "2,2\n")
            else:
                (d / "same.txt").write_text(("5,6\n" if kind == "FF" else "5,3\n") if fold == 2 else "")
                (d / "diff.txt").write_text("")
    return tmp_path


def test_cfp_parsers_on_a_built_tree(tmp_path):
    root = _mini_cfp(tmp_path)
    ff = cfp.read_pairs("FF", root)
    fp = cfp.read_pairs("FP", root)
    assert ff[0] == cfp.CFPPair("FF", 0, "Data/Images/001/frontal/01.jpg", "Data/Images/001/frontal/02.jpg", True)
    assert fp[1] == cfp.CFPPair("FP", 0, "Data/Images/001/frontal/02.jpg", "Data/Images/002/profile/01.jpg", False)
    assert len(ff) == 3 and ff[2].fold == 1
    assert cfp.read_names(root)["002"] == "Bob Two"
    assert cfp.parse_image_path("Data/Images/003/profile/01.jpg") == ("003", "profile", 1)
    folds = cfp.identity_folds(ff + fp)
    assert folds == {"001": 0, "002": 0, "003": 1}
    bad = [cfp.CFPPair("FF", 0, "Data/Images/001/frontal/01.jpg", "Data/Images/001/frontal/02.jpg", True),
           cfp.CFPPair("FF", 3, "Data/Images/001/frontal/01.jpg", "Data/Images/002/frontal/02.jpg", False)]
    with pytest.raises(ValueError, match="folds 1 and 4"):
        cfp.identity_folds(bad)
    with pytest.raises(ValueError, match="not 'a,b'"):
        cfp.parse_split_file("1;2\n")
    with pytest.raises(ValueError, match="unknown CFP protocol"):
        cfp.read_pairs("PP", root)


def test_cfp_missing_protocol_file_is_named(tmp_path):
    root = _mini_cfp(tmp_path)
    (root / "cfp" / "cfp-dataset" / "Protocol" / "Split" / "FP" / "07" / "diff.txt").unlink()
    with pytest.raises(FileNotFoundError, match="07/diff.txt is missing"):
        cfp.read_pairs("FP", root)


@needs_data
def test_cfp_real_protocols():
    for proto in cfp.PROTOCOLS:
        pairs = cfp.read_pairs(proto, data_root)
        assert len(pairs) == 7000
        assert set(Counter((p.fold, p.same) for p in pairs).values()) == {350}
        folds = cfp.identity_folds(pairs)  # raises if not identity-disjoint
        assert len(folds) == 500
        poses = Counter((cfp.parse_image_path(p.image1)[1], cfp.parse_image_path(p.image2)[1]) for p in pairs)
        assert poses == ({("frontal", "frontal"): 7000} if proto == "FF" else {("frontal", "profile"): 7000})
        assert all(cfp.parse_image_path(p.image1)[0] == cfp.parse_image_path(p.image2)[0] for p in pairs if p.same)
        assert all(cfp.parse_image_path(p.image1)[0] != cfp.parse_image_path(p.image2)[0]
                   for p in pairs if not p.same)
    images = cfp.list_images(data_root)
    assert len(images) == 7000 and len(cfp.read_names(data_root)) == 500


# --- SqueezeFacePoseNet protocol (paper 001, Table 3) --------------------------------------

#: Table 3 of paper 001, per pose combination: (same-pose genuine, same-pose impostor,
#: cross-pose genuine, cross-pose impostor).
TABLE3 = {1: (16560, 36800, 36800, 36800), 5: (368, 36800, 1472, 36800)}


@pytest.mark.parametrize("k", [1, 5])
def test_pose_protocol_reproduces_table3(k):
    layout = pose_protocol.paper_layout()
    rows = pose_protocol.count_table(layout, pose_protocol.PAPER_POSES, images_per_template=(k,))
    assert len(rows) == 6  # 3 same-pose + 3 cross-pose combinations
    for r in rows:
        expected = TABLE3[k][:2] if r["kind"] == "same-pose" else TABLE3[k][2:]
        assert (r["genuine"], r["impostor"]) == expected, r
        assert r["skipped"] == 0
    # The paper's formulas, computed independently of the implementation.
    assert TABLE3[1][0] == 368 * sum(range(1, 10)) and TABLE3[1][2] == 368 * 10 * 10
    assert TABLE3[5][2] == 368 * 2 * 2 and TABLE3[5][1] == 368 * 100


def test_pose_protocol_comparison_rules():
    layout = pose_protocol.paper_layout(n_users=120, n_images=10, poses=("frontal", "profile"))
    same = pose_protocol.build_protocol(layout, "frontal", "frontal", 1)
    t = same.templates
    gen = same.pairs[same.genuine]
    assert all(t[a].user == t[b].user and t[a].index < t[b].index for a, b in gen)
    assert len({tuple(sorted(p)) for p in gen.tolist()}) == len(gen), "no symmetric comparisons"
    imp = same.pairs[~same.genuine]
    users = sorted(layout)
    for a, b in imp:
        assert t[a].index == 0 and t[b].index == 1 and t[a].user != t[b].user
        step = (users.index(t[b].user) - users.index(t[a].user)) % len(users)
        assert 1 <= step <= 100  # the next 100 users, wrapping around
    cross = pose_protocol.build_protocol(layout, "frontal", "profile", 5)
    tc = cross.templates
    assert all(tc[a].pose == "frontal" and tc[b].pose == "profile" for a, b in cross.pairs)
    assert all(len(x.images) == 5 for x in tc)


def test_pose_protocol_on_cfp_layout_and_small_templates():
    # CFP: 10 frontal + 4 profile per identity; five-image profile templates hold 2 images.
    layout = {f"{u:03d}": {"frontal": [f"{u}/f{i}" for i in range(10)], "profile": [f"{u}/p{i}" for i in range(4)]}
              for u in range(1, 501)}
    rows = {(r["images_per_template"], r["pose_a"], r["pose_b"]): (r["genuine"], r["impostor"])
            for r in pose_protocol.count_table(layout, ("frontal", "profile"))}
    assert rows[(1, "frontal", "frontal")] == (500 * 45, 50000)
    assert rows[(1, "profile", "profile")] == (500 * 6, 50000)
    assert rows[(1, "frontal", "profile")] == (500 * 40, 50000)
    assert rows[(5, "frontal", "frontal")] == (500, 50000)
    assert rows[(5, "profile", "profile")] == (500, 50000)
    assert rows[(5, "frontal", "profile")] == (2000, 50000)
    assert pose_protocol.split_templates(["a", "b", "c", "d"], 5) == [("a", "b"), ("c", "d")]
    assert pose_protocol.split_templates(list("abcdefghijk"), 5) == [tuple("abcde"), tuple("fghij")]
    assert pose_protocol.split_templates(["a", "b", "c"], 5) == [("a",), ("b",)]  # still two templates
    assert pose_protocol.split_templates(["a", "b", "c"], 1) == [("a",), ("b",), ("c",)]
    assert pose_protocol.split_templates(["a"], 5) == [("a",)] and pose_protocol.split_templates([], 5) == []
    with pytest.raises(ValueError):
        pose_protocol.split_templates(["a"], 0)


def test_pose_protocol_counts_users_with_missing_images():
    layout = pose_protocol.paper_layout(n_users=5, n_images=4, poses=("frontal", "profile"))
    layout["u0002"]["profile"] = layout["u0002"]["profile"][:1]  # one profile image left: one template
    layout["u0003"]["profile"] = []
    proto = pose_protocol.build_protocol(layout, "profile", "profile", 1)
    assert proto.skipped["genuine_users_without_templates"] == 2
    # u0002 and u0003 lack a second template (as queries), u0003 a first one (as enrolment).
    users = sorted(layout)
    expected = sum(1 for e in users for q in users if e != q and (e == "u0003" or q in ("u0002", "u0003")))
    assert expected == 11
    assert proto.skipped["impostor_missing_template"] == expected
    assert proto.counts()["impostor"] + proto.skipped["impostor_missing_template"] == 5 * 4


@needs_data
def test_pose_protocol_on_real_cfp():
    layout = pose_protocol.cfp_layout(cfp.list_images(data_root))
    assert len(layout) == 500 and {len(v["frontal"]) for v in layout.values()} == {10}
    proto = pose_protocol.build_protocol(layout, "frontal", "profile", 5)
    assert proto.counts() == {"genuine": 2000, "impostor": 50000}


# --- WIDER FACE ----------------------------------------------------------------------------

def test_widerface_parser_handles_zero_face_entries():
    text = ("0--Parade/a.jpg\n2\n10 20 30 40 0 0 0 0 0 0\n1 2 3 4 2 0 0 1 0 0\n"
            "1--Handshaking/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n"
            "2--Demo/c.jpg\n1\n5 5 10 10 1\n")
    gt = widerface.parse_gt(text)
    assert [g.path for g in gt] == ["0--Parade/a.jpg", "1--Handshaking/b.jpg", "2--Demo/c.jpg"]
    np.testing.assert_allclose(gt[0].boxes, [[10, 20, 40, 60], [1, 2, 4, 6]])
    assert gt[0].blur.tolist() == [0, 2] and gt[0].invalid.tolist() == [False, True]
    assert len(gt[1]) == 0 and len(gt[2]) == 1
    with pytest.raises(ValueError, match="face count"):
        widerface.parse_gt("x.jpg\nmany\n")
    with pytest.raises(ValueError, match="fewer than 5"):
        widerface.parse_gt("x.jpg\n1\n1 2 3\n")


@needs_data
def test_widerface_subset_ground_truth():
    gt = widerface.read_gt(data_root)
    assert len(gt) == 19 and sum(len(g) for g in gt) == 519
    assert set(np.concatenate([g.blur for g in gt]).tolist()) <= {0, 1, 2}
    assert all((widerface.images_dir(data_root) / g.path).exists() for g in gt)
    assert all((g.boxes[:, 2:] > g.boxes[:, :2]).all() for g in gt)


# --- identity-disjoint splits ------------------------------------------------------------

def test_name_matching_rules():
    assert splits.normalize_name("Andrés_Manuel López-Obrador") == "andres manuel lopez obrador"
    assert splits.match_rule("George W Bush", "George_W_Bush") == "exact"
    assert splits.match_rule("Diego Maradona", "Diego_Armando_Maradona") == "first_last"
    assert splits.match_rule("Nicholas Cage", "Nicolas_Cage") == "spelling"
    assert splits.match_rule("Joe Biden", "Joseph_Biden") == "nickname"
    assert splits.match_rule("Jerry Brown", "James_Brown") is None
    assert splits.match_rule("Alex Morgan", "Ann_Morgan") is None
    found = splits.find_name_overlaps({"1": "Joe Biden", "2": "Ann Other"}, ["Joseph Biden", "Bob Smith"])
    assert found == {"1": ("Joseph Biden", "nickname")}


def test_split_disjointness_check_catches_a_leak():
    split = splits.TrainTestSplit("cfp", "lfw", ["1", "2"], {}, {"Nicolas Cage"},
                                  {"1": "Nicholas Cage", "2": "Someone Else"})
    with pytest.raises(ValueError, match="matches test person"):
        split.check_disjoint()


@needs_data
def test_cross_dataset_splits_are_identity_disjoint():
    a = splits.cfp_train_lfw_test(data_root)
    b = splits.lfw_train_cfp_test(data_root)
    for split in (a, b):
        split.check_disjoint()
        kept = {splits.normalize_name(split.train_names[i]) for i in split.train_identities}
        assert not kept & {splits.normalize_name(n) for n in split.test_names}
        assert set(split.train_identities).isdisjoint(split.excluded)
    # CFP identities that are LFW people, under another spelling too.
    assert len(a.excluded) + len(a.train_identities) == 500
    assert a.excluded_by_rule()["exact"] >= 170
    excluded_names = {v[0] for v in a.excluded.values()}
    assert {"Joe Biden", "Nicholas Cage", "George Bush"} <= excluded_names
    assert all(len(v) >= 2 for v in b.train_images.values())
    assert "Joseph_Biden" in b.excluded and "George_W_Bush" in b.excluded


def test_paper_table3_file_matches_our_protocol():
    """The protocol applied to the paper's layout gives exactly the counts transcribed from Table 3."""
    from facelab.tables import cells

    paper = cells("001")
    rows = {(r["images_per_template"], r["kind"]): r
            for r in pose_protocol.count_table(pose_protocol.paper_layout(), ("frontal", "profile"))}
    for k, tag in ((1, "one_image"), (5, "five_images")):
        for pose, kind in (("same", "same-pose"), ("cross", "cross-pose")):
            for what in ("genuine", "impostor"):
                assert rows[(k, kind)][what] == paper[f"table3.{tag}.{pose}_{what}"]["value"], (k, kind, what)
    assert paper["table3.one_image.same_genuine"]["value"] == TABLE3[1][0]
    assert paper["table3.five_images.cross_genuine"]["value"] == TABLE3[5][2]


def test_users_with_templates_keeps_complete_users_only():
    layout = {"a": {"frontal": ["1", "2"], "profile": ["3", "4"]}, "b": {"frontal": ["5"], "profile": ["6", "7"]},
              "c": {"frontal": ["8", "9", "10"]}}
    kept = pose_protocol.users_with_templates(layout, ("frontal", "profile"))
    assert list(kept) == ["a"]
