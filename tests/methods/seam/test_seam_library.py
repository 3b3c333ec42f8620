"""SeaM from Python: ``jaxnets.methods.seam.run(model, data, config)`` writes nothing without a
run_dir and gives the numbers `jaxnets seam reengineer` writes for the same settings (digits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.api import Model, load
from jaxnets.errors import ConfigError
from jaxnets.methods import seam
from jaxnets.methods.seam.loaders import open_split
from jaxnets.methods.seam.runner import pretrain_digits

SETTINGS = {"target": "binary:3,8", "epochs": 3, "lr_head": 0.01, "lr_mask": 0.1, "alpha": 1.0, "augment": False,
            "limit": 120, "test_limit": 60}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = load("digits_cnn").replace(pretrain_digits(0, 4))
    return model.export(tmp_path_factory.mktemp("weights") / "digits_cnn.pth")


def test_python_run_writes_nothing_and_matches_the_cli(weights: Path, tmp_path: Path, capsys,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cli"
    flags = ["--target", "binary:3,8", "--epochs", "3", "--lr-head", "0.01", "--lr-mask", "0.1", "--alpha", "1.0",
             "--no-augment", "--limit", "120", "--test-limit", "60"]
    code, printed, err = run_cli(["seam", "reengineer", "digits_cnn", "--weights", weights, "--data", "digits",
                                  *flags, "--out", out], capsys, monkeypatch)
    assert code == 0, err
    cli = json.loads((out / "lr_head_mask_0.01_0.1_alpha_1.0" / "metrics.json").read_text())

    work = tmp_path / "python"
    work.mkdir()
    monkeypatch.chdir(work)  # a default runs/ folder would appear here
    train, test = open_split("digits", "train"), open_split("digits", "test")
    model = load("digits_cnn", weights, data=test)
    result = seam.run(model, train, seam.ReengineerConfig(**SETTINGS), test_data=test)
    assert list(work.iterdir()) == [] and result.run_dir is None
    s = result.to_json()
    assert s["run_dir"] is None
    for key in ("acc", "acc_pre", "retention", "kept", "n_entries", "epoch", "used_fallback", "flops", "layers",
                "train_images", "test_images", "target", "weights", "data", "epochs_run"):
        assert s[key] == cli[key], key
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(s["history"]) == strip(cli["history"])
    assert result.describe() in printed
    # The module: the pruned backbone (a jaxnets Model) and the K-way head.
    assert isinstance(result.model, Model)
    images, _ = test.arrays(limit=5)
    assert result.logits(images).shape == (5, 2)
    kernel = np.asarray(result.model.variables["params"]["conv1"]["kernel"])
    assert np.count_nonzero(kernel) <= np.asarray(model.variables["params"]["conv1"]["kernel"]).size
    assert result.plot(tmp_path / "history.png").is_file()


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="^alpha must be ≥ 0"):
        seam.ReengineerConfig(alpha=-1)
    with pytest.raises(ConfigError, match="^target "):
        seam.ReengineerConfig(target="multi:1")
    with pytest.raises(ConfigError, match="^n_classes "):
        seam.ReengineerConfig(target="superclass:0", superclass_type="random")
    with pytest.raises(ConfigError, match="^prune_threshold "):
        seam.FinetuneConfig(prune_threshold=1.5)
    assert seam.ReengineerConfig(lr_head=1).lr_head == 1.0 and isinstance(seam.ReengineerConfig(lr_head=1).lr_head,
                                                                           float)
