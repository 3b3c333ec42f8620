"""Sparsity Probe CLI: NCHW flatten, bad input, null layers, clustering, UMAP, plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli  # noqa: E402

from jaxnets.methods.probe.features import available_layers  # noqa: E402
from jaxnets.models.api import resolve  # noqa: E402


def test_probe_flatten_is_nchw() -> None:
    import jax
    import jax.numpy as jnp

    from jaxnets.methods.probe.features import _flatten_nchw

    a = jnp.arange(2 * 3 * 4 * 5, dtype=jnp.float32).reshape(2, 3, 4, 5)  # NHWC
    expected = np.transpose(np.asarray(a), (0, 3, 1, 2)).reshape(2, -1)
    np.testing.assert_array_equal(np.asarray(jax.jit(_flatten_nchw)(a)), expected)


def test_probe_bad_layer_lists_valid_names(capsys, monkeypatch) -> None:
    code, _, err = run_cli(["probe", "run", "digits_cnn", "--layers", "conv1,nope", "--limit", "50"],
                           capsys, monkeypatch)
    assert code == 2
    assert "unknown layer(s) nope" in err and "valid names: input, conv1, bn1" in err
    assert "features" in available_layers(resolve("digits_cnn"), resolve("digits_cnn").create(10))


def test_probe_feature_dimension_larger_than_data(capsys, monkeypatch, tmp_path: Path) -> None:
    code, _, err = run_cli(["probe", "run", "digits_cnn", "--limit", "50", "--feature-dimension", "100",
                            "--out", tmp_path / "run"], capsys, monkeypatch)
    assert code == 2
    assert "--feature-dimension 100 is not smaller than the number of samples (50)" in err
    assert not (tmp_path / "run").exists()  # checked before any work


def test_probe_fewer_samples_than_classes(capsys, monkeypatch) -> None:
    code, _, err = run_cli(["probe", "run", "digits_cnn", "--limit", "5"], capsys, monkeypatch)
    assert code == 2
    assert "fewer samples (5) than classes (10)" in err


@pytest.mark.parametrize("args,message", [
    (["--variant", "bogus"], "--variant 'bogus' is unknown"),
    (["--svd", "bogus"], "--svd 'bogus' is unknown"),
    (["--preset", "bogus"], "--preset 'bogus' is unknown"),
    (["--depth", "-3"], "--depth must be positive"),
    (["--epsilon-1", "0"], "--epsilon-1 must be positive"),
])
def test_probe_bad_options(capsys, monkeypatch, args: list[str], message: str) -> None:
    code, _, err = run_cli(["probe", "run", "digits_cnn", "--limit", "50", *args], capsys, monkeypatch)
    assert code == 2 and message in err


def test_probe_no_tau_layer_is_null_and_run_continues(capsys, monkeypatch, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    code, stdout, err = run_cli(["probe", "run", "digits_cnn", "--layers", "input,features", "--limit", "200",
                                 "--trees", "1", "--depth", "1", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((out / "result.json").read_text())
    assert doc["alphas"] == [] and doc["sizes"] == []
    assert [lay["alpha_mean"] for lay in doc["layers"]] == [None, None]
    assert all("larger --epsilon-1" in lay["error"] for lay in doc["layers"])
    assert "alpha null" in stdout


def test_probe_clustering_umap_json_and_plot(capsys, monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("umap")
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["probe", "run", "digits_cnn", "--layers", "input,conv3,features", "--limit", "300",
            "--svd", "exact", "--feature-dimension", "200"]
    code, _, err = run_cli([*base, "--use-clustering", "--out", a], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((a / "result.json").read_text())
    # The original's four keys with their types (spec §4.2).
    assert all(isinstance(row, list) and len(row) == 10 and all(isinstance(v, float) for v in row)
               for row in doc["alphas"])
    assert doc["sizes"] == [-1, 0, 1]
    assert doc["test_stats"] is None
    assert set(doc["clustering_stats"]) == {"-1", "0", "1"}
    assert set(doc["clustering_stats"]["0"]) == {"adj_rand", "MI_score", "homogeneity_score", "completeness",
                                                 "FMI"}
    assert doc["variant"] == "original" and doc["config"]["trees"] == 5 and doc["config"]["seed"] == 1079
    for png in ("result.png", "clustering.png", "umap.png"):
        assert (a / png).stat().st_size > 1000
    code, _, err = run_cli([*base, "--variant", "fixed", "--preset", "original-cli", "--out", b],
                           capsys, monkeypatch)
    assert code == 0, err
    doc_b = json.loads((b / "result.json").read_text())
    assert doc_b["config"]["trees"] == 1 and doc_b["config"]["depth"] == 15
    assert doc_b["config"]["feature_dimension"] == 200 and doc_b["variant"] == "fixed"
    assert doc_b["clustering_stats"] == {}
    png = tmp_path / "overlay.png"
    code, stdout, err = run_cli(["probe", "plot", a / "result.json", b, "--fill", "-o", png], capsys, monkeypatch)
    assert code == 0, err
    assert png.stat().st_size > 1000


def test_probe_only_umap_writes_pictures_only(capsys, monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("umap")
    out = tmp_path / "u"
    code, _, err = run_cli(["probe", "run", "digits_cnn", "--layers", "input,features", "--limit", "200",
                            "--only-umap", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    assert (out / "umap.png").exists() and not (out / "result.json").exists()


def test_probe_umap_missing_is_a_warning(monkeypatch, capsys) -> None:

    from jaxnets.methods.probe.clustering import umap_embed

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap → ImportError
    assert umap_embed(np.zeros((10, 3), np.float32)) is None
    assert "UMAP plots skipped" in capsys.readouterr().err


def test_probe_plot_bad_input(capsys, monkeypatch, tmp_path: Path) -> None:
    code, _, err = run_cli(["probe", "plot", tmp_path / "missing.json"], capsys, monkeypatch)
    assert code == 2 and "result file not found" in err
    other = tmp_path / "other.json"
    other.write_text('{"top1": 0.5}')
    code, _, err = run_cli(["probe", "plot", other], capsys, monkeypatch)
    assert code == 2 and "not a probe result" in err
