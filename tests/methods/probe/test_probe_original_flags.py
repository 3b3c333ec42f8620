"""Issue 18: the original Sparsity Probe command lines run through jaxnets — underscore
spellings of ``DL_smoothness.py`` and ``plot_DL_json_results.py``, one UMAP picture per layer,
``probe plot``'s test-accuracy panel and ``remove_layers``/``remove_begin``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from jaxnets.methods.probe.alpha import tau_grid


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_probe_original_spellings_resolve(capsys, monkeypatch) -> None:
    """Every ``DL_smoothness.py`` flag is accepted and lands on its jaxnets option."""
    code, out, err = run_cli(["probe", "run", "digits_cnn", "--trees", "3", "--depth", "-1", "--seed", "2",
                              "--batch_size", "64", "--env_name", "cifar10_env", "--checkpoints_folder", "ck",
                              "--epsilon_1", "0.2", "--only_umap", "--use_clustering", "--calc_test",
                              "--output_folder", "somewhere", "--feature_dimension", "2500", "--dry-run"],
                             capsys, monkeypatch)
    assert code == 0, err
    options = json.loads(out)["options"]
    assert {k: options[k] for k in ("trees", "depth", "seed", "batch_size", "epsilon_1", "only_umap",
                                    "use_clustering", "calc_test", "out", "feature_dimension")} == {
        "trees": 3, "depth": -1, "seed": 2, "batch_size": 64, "epsilon_1": 0.2, "only_umap": True,
        "use_clustering": True, "calc_test": True, "out": "somewhere", "feature_dimension": 2500}


def test_probe_original_command_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """``DL_smoothness.py --env_name … --trees 5 --depth 20 --seed 1079 --epsilon_1 0.2
    --feature_dimension 40 --batch_size 128 --calc_test --output_folder OUT`` after
    ``jaxnets probe run digits_cnn --data digits``: the original's result.json schema."""
    out = tmp_path / "out"
    code, stdout, err = run_cli(["probe", "run", "digits_cnn", "--data", "digits", "--limit", "300",
                                 "--layers", "input,features", "--env_name", "cifar10_env",
                                 "--checkpoints_folder", "ck", "--trees", "5", "--depth", "20", "--seed", "1079",
                                 "--epsilon_1", "0.2", "--feature_dimension", "40", "--batch_size", "128",
                                 "--calc_test", "--output_folder", out], capsys, monkeypatch)
    assert code == 0, err
    warnings = _warnings(err)
    assert [w.split(" is ignored")[0] for w in warnings if "is ignored" in w] == [
        "warning: --env_name", "warning: --checkpoints_folder"]
    doc = json.loads((out / "result.json").read_text())
    assert set(doc) >= {"alphas", "sizes", "test_stats", "clustering_stats"}
    assert doc["sizes"] == [-1, 0] and doc["clustering_stats"] == {}
    assert all(len(row) == 10 for row in doc["alphas"])
    # every alpha is 1/τ − 1/2 of a grid τ; the ε grid starts at --epsilon_1
    grid = 1 / tau_grid() - 0.5
    assert all(np.isclose(grid, a, rtol=0, atol=1e-12).any() for row in doc["alphas"] for a in row)
    assert doc["epsilons"][0] == 0.2 and len(doc["epsilons"]) == 10
    assert (doc["config"]["feature_dimension"], doc["config"]["batch_size"], doc["config"]["trees"]) == (40, 128, 5)
    assert doc["layers"][0]["reduced_dim"] == 40  # the 64 input pixels reduced to --feature_dimension
    assert 0.0 <= doc["test_stats"]["top_1_accuracy"] <= 1.0
    assert "env_name" not in json.loads((out / "config.json").read_text())
    assert f"alpha {doc['alpha_mean'][1]:.4f}" in stdout


def test_probe_only_umap_writes_one_picture_per_layer(tmp_path: Path, capsys, monkeypatch) -> None:
    """``--only_umap --output_folder OUT``: ``<layer>.png`` per layer (the original's names) with
    that layer's panel only, the grid umap.png, no result.json."""
    pytest.importorskip("umap")
    out = tmp_path / "u"
    code, _, err = run_cli(["probe", "run", "digits_cnn", "--layers", "input,conv3,features", "--limit", "200",
                            "--only_umap", "--output_folder", out], capsys, monkeypatch)
    assert code == 0, err
    assert not (out / "result.json").exists()
    pictures = sorted(p.name for p in out.glob("*.png"))
    assert pictures == ["-1.png", "0.png", "1.png", "umap.png"]
    with Image.open(out / "0.png") as one, Image.open(out / "umap.png") as grid:
        assert one.size == (750, 600)  # one 5×4-inch panel at 150 dpi
        assert grid.size == (2250, 600)  # three panels side by side


def _result(alpha_means: list[float], sizes: list[int], top1: float | None, clustering: bool = False) -> dict:
    """A result.json in the original's schema: 10 alphas per layer around the given means."""
    alphas = [[m + 0.01 * (4.5 - j) for j in range(10)] for m in alpha_means]
    stats = {str(s): {"adj_rand": 0.1 * i, "MI_score": 0.1 * i} for i, s in enumerate(sizes)} if clustering else {}
    return {"alphas": alphas, "sizes": sizes, "test_stats": None if top1 is None else {"top_1_accuracy": top1},
            "clustering_stats": stats}


@pytest.fixture()
def main_dir(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    for name, means, top1 in (("epoch_a", [0.15, 0.16, 0.23, 0.64], 0.9307), ("epoch_b", [0.2, 0.3, 0.4, 0.5], None)):
        (root / name).mkdir(parents=True)
        (root / name / "result.json").write_text(json.dumps(_result(means, [-1, 0, 1, 2], top1, clustering=True)))
        (root / name / "config.json").write_text(json.dumps({"command": "probe"}))  # skipped by --main_dir
    return root


def test_probe_plot_original_options(main_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``plot_layers(main_dir, plot_test=True, add_fill=True, remove_layers=1, remove_begin=1)``:
    alphas of layers 0..1, the test-accuracy bar panel (10 : 1 : 10 with the clustering panel)."""
    png = tmp_path / "plot.png"
    code, stdout, err = run_cli(["probe", "plot", "--main_dir", main_dir, "--remove_layers", "1",
                                 "--remove_begin", "1", "--add_fill", "-o", png], capsys, monkeypatch)
    assert code == 0, err
    assert stdout.splitlines()[:2] == ["epoch_a: layers 0..1, mean alpha 0.1600 0.2300, test top-1 0.9307",
                                       "epoch_b: layers 0..1, mean alpha 0.3000 0.4000"]
    with Image.open(png) as im:
        assert im.size == (2325, 750)  # 8 + 6 (clustering) + 1.5 (test accuracy) inches at 150 dpi
    bare = tmp_path / "bare.png"
    code, _, err = run_cli(["probe", "plot", "--main_dir", main_dir, "--no-plot-test", "-o", bare], capsys, monkeypatch)
    assert code == 0, err
    with Image.open(bare) as im:
        assert im.size == (2100, 750)  # no test panel


def test_probe_plot_checkpoints_list_keeps_order(main_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--checkpoints B A`` (argparse nargs='+'): both files, in the order given."""
    png = tmp_path / "plot.png"
    code, stdout, err = run_cli(["probe", "plot", "--checkpoints", main_dir / "epoch_b" / "result.json",
                                 main_dir / "epoch_a" / "result.json", "-o", png], capsys, monkeypatch)
    assert code == 0, err
    assert [line.split(":")[0] for line in stdout.splitlines()[:2]] == ["epoch_b", "epoch_a"]


def test_overlay_series_slices_like_the_original() -> None:
    from jaxnets.methods.probe.config import PlotConfig
    from jaxnets.methods.probe.plots import overlay_series

    doc = _result([0.1, 0.2, 0.3, 0.4, 0.5], [-1, 0, 1, 2, 3], 0.5, clustering=True)
    (s,) = overlay_series([doc], ["r"], PlotConfig(remove_layers=2, remove_begin=1))
    assert s.layers == doc["sizes"][:-2][1:] == [0, 1]
    assert s.alpha_high == [a[0] for a in doc["alphas"][:-2][1:]] and s.alpha_low[-1] == doc["alphas"][2][-1]
    assert sorted(s.clustering) == ["0", "1"] and s.test_top1 == 0.5


@pytest.mark.parametrize("args,message", [
    (["--remove-layers", "-1"], "error: --remove-layers must be 0 or more (got -1)"),
    (["--remove_layers", "2", "--remove_begin", "2"],
     "error: --remove-layers 2 and --remove-begin 2 leave no layer of"),
])
def test_probe_plot_bad_removal(main_dir: Path, tmp_path: Path, capsys, monkeypatch, args: list[str],
                                message: str) -> None:
    code, _, err = run_cli(["probe", "plot", "--main_dir", main_dir, *args, "-o", tmp_path / "x.png"],
                           capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), err
    assert not (tmp_path / "x.png").exists()
