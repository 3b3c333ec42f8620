"""Weights carry their preprocessing: a train snapshot's, a converted checkpoint's, a timm
``config.json``'s or the known-weights table's mean/std is what every command feeds the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.api import load
from jaxnets.models.registry import NORMALIZATIONS
from jaxnets.models.weights import KNOWN_WEIGHTS, input_normalization, weights_preprocessing


def _results(folder: Path) -> dict:
    return json.loads((folder / "results.json").read_text())


@pytest.mark.needs_shared_data
def test_validate_uses_the_snapshot_normalisation(cifar_exact: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """vgg16_bn_cifar trained with --normalize cifar (not its registry's ImageNet default):
    validate without a flag feeds the snapshot CIFAR constants and reproduces the training's
    final test accuracy."""
    data = f"cifar10:{cifar_exact}"
    code, _, err = run_cli(["train", "vgg16_bn_cifar", "--data", data, "--limit", "128", "--epochs", "1",
                            "--batch-size", "64", "--normalize", "cifar", "--out", tmp_path / "train", "-q"],
                           capsys, monkeypatch)
    assert code == 0, err
    trained = json.loads((tmp_path / "train" / "results.json").read_text())
    snapshot = tmp_path / "train" / "snapshots" / "vgg16_bn_cifar_final_1"
    assert weights_preprocessing(snapshot).mean == NORMALIZATIONS["cifar"][0]
    code, _, err = run_cli(["validate", "vgg16_bn_cifar", "--weights", snapshot, "--data", data, "--save-logits",
                            "--out", tmp_path / "val", "-q"], capsys, monkeypatch)
    assert code == 0, err
    validated = _results(tmp_path / "val")
    assert validated["normalization"]["mean"] == list(NORMALIZATIONS["cifar"][0])
    assert validated["top1"] == pytest.approx(trained["test_top1"], abs=1e-12), (validated, trained)
    code, _, err = run_cli(["validate", "vgg16_bn_cifar", "--weights", snapshot, "--data", data, "--normalize",
                            "imagenet", "--save-logits", "--out", tmp_path / "val-imagenet", "-q"], capsys, monkeypatch)
    assert code == 0, err
    # the choice matters: other constants, other logits
    cifar, imagenet = (np.load(tmp_path / name / "logits.npz")["logits"] for name in ("val", "val-imagenet"))
    assert np.abs(cifar - imagenet).max() > 0.1 * np.abs(cifar).max()


def test_known_weights_table_gives_the_akamaster_normalisation(tmp_path: Path) -> None:
    record = KNOWN_WEIGHTS["resnet20-12fca82f.th"]
    assert tuple(record["mean"]) == NORMALIZATIONS["imagenet"][0] and record["num_classes"] == 10
    fake = tmp_path / "resnet20-12fca82f.th"
    fake.write_bytes(b"")  # found by its name; the bytes are read only when the weights load
    assert weights_preprocessing(fake).label_names[0] == "airplane"


def _timm_export(tmp_path: Path, config: object) -> Path:
    model = load("digits_cnn", seed=0)
    folder = tmp_path / "hub"
    folder.mkdir()
    path = model.export(folder / "model.safetensors", to="safetensors")
    (folder / "config.json").write_text(json.dumps(config) if not isinstance(config, str) else config)
    return path


def test_a_timm_config_json_beside_the_weights_is_used(tmp_path: Path) -> None:
    # jaxnets' own export records its preprocessing in the header; a bare hub file does not:
    path = _timm_export(tmp_path, {"architecture": "digits_cnn", "num_classes": 10,
                                   "pretrained_cfg": {"mean": [0.25], "std": [0.125], "input_size": [1, 8, 8],
                                                      "crop_pct": 0.9, "interpolation": "bicubic"}})
    from safetensors.numpy import load_file, save_file

    save_file(load_file(str(path)), str(path))  # drop jaxnets' own metadata
    found = weights_preprocessing(path)
    assert (found.mean, found.std, found.input_size, found.crop_pct, found.interpolation) == (
        (0.25,), (0.125,), 8, 0.9, "bicubic")
    model = load("digits_cnn", path)
    assert (model.mean, model.std) == ((0.25,), (0.125,))
    assert load("digits_cnn", path, normalize="0.5/0.5").mean == (0.5,)  # an explicit choice wins


@pytest.mark.parametrize("config", ['{"pretrained_cfg": {"mean": ["x"], "std": [1]}}', "not json",
                                    '{"pretrained_cfg": {"mean": [0.5], "std": [0]}}'])
def test_a_bad_config_json_is_ignored_with_a_warning(config: str, tmp_path: Path, capsys) -> None:
    path = _timm_export(tmp_path, config)
    from safetensors.numpy import load_file, save_file

    save_file(load_file(str(path)), str(path))
    spec = load("digits_cnn").spec
    assert input_normalization(spec, path) == NORMALIZATIONS["digits"]
    assert "warning:" in capsys.readouterr().err


def test_convert_records_and_prints_the_preprocessing(tmp_path: Path, capsys, monkeypatch) -> None:
    source = load("digits_cnn", seed=0).export(tmp_path / "w.pth", to="torch")
    code, out, err = run_cli(["convert", "digits_cnn", source, "--normalize", "0.3/0.2", "--out", tmp_path / "c"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "preprocessing: mean [0.3], std [0.2]" in out and "--normalize 0.3/0.2" in out
    report = json.loads((tmp_path / "c" / "conversion.json").read_text())
    assert report["preprocessing"]["mean"] == [0.3]
    model = load("digits_cnn", tmp_path / "c" / "checkpoint")
    assert (model.mean, model.std) == ((0.3,), (0.2,))
