"""The NIR-VIS masked stand-in (chapter 4): renderings and honest, identity-disjoint splits."""

import numpy as np
import pytest

from facelab.data.nirvis import (KINDS, StandInSplit, assign_modalities, casia_standin, cfp_standins, check_standin,
                                 mask_style_of, render, render_rows)


@pytest.fixture(scope="module")
def crop():
    rng = np.random.default_rng(0)
    img = np.full((112, 112, 3), (200, 150, 120), np.uint8)  # a skin-like flat face
    return np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)


def test_renderings_are_deterministic_and_shaped(crop):
    for kind in KINDS:
        a, b = render(crop, kind, seed=1, row=7), render(crop, kind, seed=1, row=7)
        assert a.shape == crop.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert np.array_equal(render(crop, "vis", seed=1, row=7), crop)
    assert not np.array_equal(render(crop, "nir", seed=1, row=7), render(crop, "nir", seed=1, row=8))


def test_nir_and_grey_are_one_channel(crop):
    for kind in ("grey", "nir", "nir_masked"):
        out = render(crop, kind, seed=0, row=0)
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 0], out[..., 2])
    # luminance of a flat colour: the BT.601 weights
    flat = np.full((112, 112, 3), (100, 50, 200), np.uint8)
    assert int(render(flat, "grey", seed=0, row=0)[0, 0, 0]) == round(0.299 * 100 + 0.587 * 50 + 0.114 * 200)


def test_mask_is_drawn_before_the_nir_simulation(crop):
    masked = render(crop, "nir_masked", seed=0, row=3)
    plain = render(crop, "nir", seed=0, row=3)
    lower = slice(80, 100), slice(40, 72)  # mouth region of the template
    upper = slice(20, 40), slice(30, 82)   # forehead: never masked
    assert np.abs(masked[lower].astype(int) - plain[lower].astype(int)).mean() > 5
    assert np.array_equal(masked[..., 0], masked[..., 2])  # the mask is imaged in "NIR" too (one channel)
    assert masked[upper].std() > 0


def test_bad_inputs_are_refused(crop):
    with pytest.raises(ValueError, match="unknown rendering"):
        render(crop, "thermal", seed=0, row=0)
    with pytest.raises(ValueError, match="aligned"):
        render(crop[:50], "vis", seed=0, row=0)


def test_render_rows_matches_render(crop):
    images = np.stack([crop, crop[::-1]])
    out = render_rows(images, [1, 0], "nir", seed=2)
    assert np.array_equal(out[0], render(images[1], "nir", seed=2, row=1))


def test_every_photo_gets_one_modality():
    ids = np.array(["a"] * 5 + ["b"] * 2 + ["c"] * 1)
    rows = np.arange(8) + 100
    pools = assign_modalities(ids, rows, seed=0)
    assert not set(pools["vis"]) & set(pools["nir"])
    assert sorted(np.concatenate([pools["vis"], pools["nir"]])) == rows.tolist()
    for name in ("a", "b"):  # identities with two photos or more have both
        mine = set(rows[ids == name])
        assert mine & set(pools["vis"]) and mine & set(pools["nir"])


def test_casia_standin_splits_are_honest():
    rng = np.random.default_rng(0)
    ids = np.repeat([f"p{i:02d}" for i in range(20)], rng.integers(3, 7, 20))
    allowed = [f"p{i:02d}" for i in range(18)]  # two identities belong to another split of the chapter
    splits = casia_standin(ids, allowed, n_splits=10, min_images=4, seed=0)
    assert len(splits) == 10
    for s in splits:
        check_standin(s, ids)
        used = set(s.train_identities) | set(s.test_identities)
        assert used <= set(allowed)
        assert all((ids == n).sum() >= 4 for n in used)
    assert len({s.test_identities for s in splits}) > 1  # the splits differ


def test_check_standin_catches_a_leak():
    ids = np.array(["a", "a", "b", "b", "c", "c"])
    bad = StandInSplit(split=0, train_identities=("a",), test_identities=("b",), train_vis=np.array([0, 2]),
                       train_nir=np.array([1]), gallery=np.array([3]), probes=np.array([2]))
    with pytest.raises(ValueError):
        check_standin(bad, ids)
    with pytest.raises(ValueError, match="needs 4"):
        casia_standin(ids, ["a", "b", "c"], min_images=2)


def test_table1_head_starts_as_the_pretrained_model_and_draws_own_photos():
    import torch

    from facelab.experiments.nirvis_masked_hsst_table1 import ResidualHead, Table1Config, _Photos, train_head

    head = ResidualHead.build(8, 16)
    f = torch.randn(3, 8)
    assert torch.equal(head.forward_features(f), f)  # W2 = 0: no fine-tuning yet means the frozen network
    photos = _Photos([np.array([0, 1]), np.array([5]), np.array([7, 8, 9])])
    rng = np.random.default_rng(0)
    for _ in range(20):
        d = photos.draw(rng, np.array([0, 1, 2]))
        assert d[0] in (0, 1) and d[1] == 5 and d[2] in (7, 8, 9)
    emb = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    vis = [np.array([2 * i]) for i in range(20)]
    nir = [np.array([2 * i + 1]) for i in range(20)]
    cfg = Table1Config(data_profile="smoke", steps=6, batch_size=2, queue_size=4, milestones=(3,), hidden=16)
    for method in ("plain", "hsst"):
        trained, curve = train_head(method, emb, emb, vis, nir, cfg, seed=0)
        assert len(curve) == 1 and np.isfinite(curve[0])
        assert not torch.equal(trained.forward_features(torch.from_numpy(emb[:2])), torch.from_numpy(emb[:2]))


def _cfp_like(n_ids: int):
    """CFP's layout: per identity 10 frontal then 4 profile photos."""
    ids = np.repeat([f"{i:03d}" for i in range(n_ids)], 14)
    pose = np.tile(["frontal"] * 10 + ["profile"] * 4, n_ids)
    return ids, pose


def test_cfp_standins_follow_the_two_protocols_and_are_disjoint():
    ids, pose = _cfp_like(30)
    allowed = [f"{i:03d}" for i in range(28)]  # two CFP identities are named like LFW persons
    sets = cfp_standins(ids, pose, allowed, oulu_identities=5, buaa_identities=10, seed=0)
    oulu, buaa = sets["oulu"], sets["buaa"]
    assert not set(oulu.identities) & set(buaa.identities)
    assert set(oulu.identities) | set(buaa.identities) <= set(allowed)
    for s in (oulu, buaa):
        assert not set(s.gallery) & set(s.probes)  # one role per photo
        assert set(ids[s.gallery]) == set(ids[s.probes]) == set(s.identities)
    # Oulu: frontal only, every identity's VIS photos (5 of 10) in the gallery
    assert (pose[oulu.gallery] == "frontal").all() and (pose[oulu.probes] == "frontal").all()
    assert len(oulu.gallery) == len(oulu.probes) == 5 * 5
    # BUAA: one frontal gallery photo, 9 probes with every profile among them
    assert len(buaa.gallery) == 10 and (pose[buaa.gallery] == "frontal").all()
    for name in buaa.identities:
        mine = buaa.probes[ids[buaa.probes] == name]
        assert len(mine) == 9 and (pose[mine] == "profile").sum() == 4
    again = cfp_standins(ids, pose, allowed, oulu_identities=5, buaa_identities=10, seed=0)
    assert np.array_equal(again["buaa"].probes, buaa.probes)
    with pytest.raises(ValueError, match="qualify"):
        cfp_standins(ids, pose, allowed, oulu_identities=20, buaa_identities=10)


def _toy_pairs(seed: int):
    """Embeddings ``float32[40, 8]`` of 20 identities, one VIS (even rows) and one NIR photo (odd rows) each."""
    emb = np.random.default_rng(seed).normal(size=(40, 8)).astype(np.float32)
    return emb, [np.array([2 * i]) for i in range(20)], [np.array([2 * i + 1]) for i in range(20)]


def test_table2_losses_train_plain_and_hsst():
    import torch

    from facelab.experiments.nirvis_masked_hsst_table1 import Table1Config, train_head
    from facelab.train.hsst import LOSSES

    emb, vis, nir = _toy_pairs(seed=1)
    cfg = Table1Config(data_profile="smoke", steps=6, batch_size=2, queue_size=4, milestones=(3,), hidden=16)
    heads = {}
    for method in ("plain", "hsst"):
        for loss in LOSSES:
            trained, curve = train_head(method, emb, emb, vis, nir, cfg, seed=0, loss=loss)
            assert len(curve) == 1 and np.isfinite(curve[0])
            heads[method, loss] = trained.forward_features(torch.from_numpy(emb[:4])).detach()
    # the loss changes what is learned, and softmax is Table I's training (same seed, same head)
    assert not torch.allclose(heads["plain", "softmax"], heads["plain", "triplet"])
    assert not torch.allclose(heads["hsst", "softmax"], heads["hsst", "am"])
    same, _ = train_head("plain", emb, emb, vis, nir, cfg, seed=0)
    assert torch.equal(same.forward_features(torch.from_numpy(emb[:4])).detach(), heads["plain", "softmax"])


def test_mask_style_of_replays_the_style_render_draws(crop):
    from facelab.data.align import template
    from facelab.data.masks import add_mask

    seen = set()
    for row in range(30):
        style = mask_style_of("nir_masked", seed=3, row=row)
        rng = np.random.default_rng((3, row, KINDS.index("nir_masked")))
        assert add_mask(crop, template(112), rng).style == style  # what render draws for this photo
        seen.add(style)
    assert len(seen) == 3  # every style occurs
    assert mask_style_of("nir", seed=3, row=0) is None


def test_ablation_overrides_reach_the_semi_siamese_pair():
    import torch

    from facelab.experiments.nirvis_masked_hsst_ablations import VARIANTS, AblationConfig, _scaled_overrides
    from facelab.experiments.nirvis_masked_hsst_table1 import train_head

    emb, vis, nir = _toy_pairs(seed=2)
    cfg = AblationConfig(data_profile="smoke", steps=6, batch_size=2, queue_size=4, milestones=(3,), hidden=16)
    assert _scaled_overrides({"queue_size": 192}, cfg) == {"queue_size": 6}  # 192/128 of Q = 4, a multiple of B
    out = {}
    for name in ("hsst", "hsst, one shared queue", "hsst, alpha = 0", "hsst, one random direction per step"):
        method, overrides, _ = VARIANTS[name]
        head, curve = train_head(method, emb, emb, vis, nir, cfg, seed=0, hsst=_scaled_overrides(overrides, cfg))
        assert np.isfinite(curve).all()
        out[name] = head.forward_features(torch.from_numpy(emb[:4])).detach()
    for name in ("hsst, one shared queue", "hsst, alpha = 0", "hsst, one random direction per step"):
        assert not torch.allclose(out[name], out["hsst"]), name  # each override changes the training


def test_chapter4_pretraining_pool_is_disjoint_from_every_standin(real_data_root):
    from facelab.data import cfp
    from facelab.data.splits import cfp_train_lfw_test
    from facelab.experiments.nirvis_masked_hsst import standin_identities
    from facelab.experiments.nirvis_masked_hsst_backbone import chapter_pool

    pool = chapter_pool(real_data_root, 4)
    casia = set(standin_identities(real_data_root, 4))
    cross = set(cfp_train_lfw_test(real_data_root).train_identities)  # where Oulu and BUAA stand-ins draw
    assert pool["lfw"] and pool["cfp"]
    assert not set(pool["lfw"]) & casia and not set(pool["cfp"]) & cross
    names = cfp.read_names(real_data_root)
    lfw_persons = {i.replace("_", " ") for i in pool["lfw"]}
    assert not lfw_persons & {names[i] for i in cross}  # no LFW pool person is a CFP test person
    assert not {names[i] for i in pool["cfp"]} & {i.replace("_", " ") for i in casia}
