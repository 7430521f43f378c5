"""`python -m facelab eval verification` and the curve figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facelab import cli
from facelab.eval import cli as eval_cli
from facelab.eval import verification as V


@pytest.fixture
def only_eval(monkeypatch):
    """Build the top-level parser with just the eval group (the other groups are tested elsewhere)."""
    monkeypatch.setattr(cli, "_command_groups", lambda: [eval_cli.add_parser])


def _write(path, rows, header="score,label,fold"):
    path.write_text(header + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


def test_eval_group_is_registered():
    pytest.importorskip("facelab.bookbuild", reason="facelab.bookbuild is not on this branch yet")
    assert eval_cli.add_parser in cli._command_groups()


def test_verification_json(tmp_path, capsys, only_eval):
    rng = np.random.default_rng(0)
    labels = np.tile([1, 0], 100)
    scores = np.round(rng.normal(size=200) + labels, 4)
    folds = np.repeat(np.arange(10), 20)
    f = _write(tmp_path / "s.csv", zip(scores, labels, folds))
    assert cli.main(["eval", "verification", "--scores", str(f), "--out", str(tmp_path / "o.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = V.verification_report(scores, labels, folds)
    assert out["accuracy"]["mean"] == pytest.approx(ref.accuracy.mean)
    assert out["accuracy"]["sd_population"] == pytest.approx(ref.accuracy.std)
    assert out["eer"]["value"] == pytest.approx(ref.eer.eer)
    assert out["n_impostor"] == 100
    t = {x["far_target"]: x for x in out["tar_at_far"]}
    assert t[0.001]["tar"] is None and t[0.001]["measurable"] is False  # 0.1% < 1/100
    assert t[0.1]["tar"] == pytest.approx(ref.tar_at_far[2].tar)
    assert json.loads((tmp_path / "o.json").read_text()) == out


def test_verification_options(tmp_path, capsys, only_eval):
    f = _write(tmp_path / "s.csv", [(0.9, 1, 0), (0.1, 0, 0), (0.8, 1, 1), (0.5, 0, 1)])
    assert cli.main(["eval", "verification", "--scores", str(f), "--far", "0.5",
                     "--tar-method", "interpolate", "--eer-method", "nearest"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["eer"]["method"] == "nearest"
    assert out["tar_at_far"][0]["method"] == "interpolate" and out["tar_at_far"][0]["tar"] == 1.0


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("score,label\n0.1,1\n", "missing column(s) fold"),
    ("score,label,fold\n", "no data rows"),
    ("score,label,fold\nabc,1,0\n", "line 2: score 'abc' is not a number"),
    ("score,label,fold\n0.5,2,0\n", "line 2: label '2' must be 1"),
    ("score,label,fold\n0.5,1,x\n", "line 2: fold 'x' is not an integer"),
    ("score,label,fold\nnan,1,0\n", "not finite"),
    ("score,label,fold\n0.5,1,0\n0.4,1,1\n", "need both genuine and impostor"),
    ("score,label,fold\n0.5,1,0\n0.4,0,0\n", "at least 2 distinct fold"),
])
def test_bad_csv_gives_one_line_error(tmp_path, capsys, only_eval, content, message):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    assert cli.main(["eval", "verification", "--scores", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_and_binary_files(tmp_path, capsys, only_eval):
    assert cli.main(["eval", "verification", "--scores", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    f = tmp_path / "bin.csv"
    f.write_bytes(b"\xff\xfe\x00\x81score")
    assert cli.main(["eval", "verification", "--scores", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_bad_far_option(tmp_path, only_eval):
    f = _write(tmp_path / "s.csv", [(0.9, 1, 0), (0.1, 0, 1)])
    with pytest.raises(SystemExit):
        cli.main(["eval", "verification", "--scores", str(f), "--far", "2"])


def test_curve_figures():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from facelab.viz import curves

    rng = np.random.default_rng(0)
    labels = np.tile([1, 0], 50)
    scores = rng.normal(size=100) + labels
    r = V.roc(scores, labels)
    figs = [
        curves.plot_roc({"a": (r.far, r.tar)}, markers=[(0.1, 0.5, "x")]),
        curves.plot_roc({"a": (r.far, r.tar)}, log_far=False),
        curves.plot_det({"a": (r.far, r.frr)}),
        curves.plot_pr({"a": ([0.1, 0.5], [1.0, 0.6])}),
        curves.plot_cmc({"a": [0.5, 0.8, 1.0]}),
        curves.plot_discrete_roc({"a": ([0, 1, 3], [0.2, 0.4, 0.5])}),
        curves.plot_score_distributions(scores, labels, thresholds={"EER": 0.5}),
        curves.plot_det({"perfect": ([0.0, 0.0, 0.5, 1.0], [1.0, 0.0, 0.0, 0.0])}),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    # The DET axes are normal deviates: the 1% tick sits at Φ⁻¹(0.01).
    ax = figs[2].axes[0]
    assert any(abs(t - (-2.3263)) < 1e-3 for t in ax.get_xticks())
    assert "1%" in [t.get_text() for t in ax.get_xticklabels()]
    # A perfectly separating curve has no finite DET point: the figure says so.
    assert "separate perfectly" in figs[-1].axes[0].texts[0].get_text()
    # Operating-point markers go into the legend.
    assert "x" in [t.get_text() for t in figs[0].axes[0].get_legend().get_texts()]
    with pytest.raises(ValueError, match="lengths"):
        curves.plot_roc({"a": ([0, 1], [0, 0.5, 1])})
    for f in figs:
        plt.close(f)
    n_open = len(plt.get_fignums())
    with pytest.raises(ValueError, match="limits"):
        curves.plot_det({"a": (r.far, r.frr)}, limits=(0.5, 0.1))
    assert len(plt.get_fignums()) == n_open  # bad input leaves no half-made figure behind

