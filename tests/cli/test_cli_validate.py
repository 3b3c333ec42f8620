"""`jaxnets validate` on the shared checkpoints: the reference accuracies of ../shared/data/README.md."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

pytestmark = pytest.mark.needs_shared_data


@pytest.mark.parametrize(("normalize", "expected", "correct"), [(None, 91.73, 776), ("cifar", 91.84, 777)])
def test_validate_resnet20_exact_subset(shared_data, cifar_exact, tmp_path, capsys, monkeypatch,
                                        normalize, expected, correct):
    args = ["validate", "resnet20", "--weights", shared_data / "weights" / "resnet20-12fca82f.th",
            "--data", f"cifar10:{cifar_exact}", "--out", tmp_path / "run", "--batch-size", "128"]
    if normalize:
        args += ["--normalize", normalize]
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    assert f"top-1 {expected:.2f} %" in out
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["schema"] == "jaxnets.validate/1"
    assert (result["n"], result["correct"]) == (846, correct)
    assert round(100 * result["top1"], 2) == expected
    assert len(result["per_class"]) == 10 and sum(c["total"] for c in result["per_class"]) == 846
    assert result["top5"] is not None and result["top5"] > result["top1"]
    assert (tmp_path / "run" / "config.json").is_file()


@pytest.mark.parametrize(("model", "weights", "expected"), [
    ("resnet32", "resnet32-d509ac18.th", 93.03),
    ("resnet44", "resnet44-014dd654.th", 93.74),
    ("resnet56", "resnet56-4bfd9763.th", 93.26),
])
def test_validate_deeper_resnets(shared_data, cifar_exact, tmp_path, capsys, monkeypatch, model, weights, expected):
    code, out, err = run_cli(["validate", model, "--weights", shared_data / "weights" / weights,
                              "--data", f"cifar10:{cifar_exact}", "--out", tmp_path, "-q"], capsys, monkeypatch)
    assert code == 0, err
    assert f"top-1 {expected:.2f} %" in out


@pytest.mark.slow
def test_validate_resnet20_jpeg_test_set(shared_data, cifar_jpeg, tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(["validate", "resnet20", "--weights", shared_data / "weights" / "resnet20-12fca82f.th",
                              "--data", f"imagefolder:{cifar_jpeg}", "--out", tmp_path, "--save-logits"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "top-1 81.03 % (8103/10000)" in out
    import numpy as np

    saved = np.load(tmp_path / "logits.npz")
    assert saved["logits"].shape == (10000, 10) and saved["labels"].shape == (10000,)


@pytest.mark.multidevice
def test_validate_multi_device_matches(shared_data, cifar_exact, tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(["validate", "resnet20", "--weights", shared_data / "weights" / "resnet20-12fca82f.th",
                              "--data", f"cifar10:{cifar_exact}", "--out", tmp_path, "--devices", "4",
                              "--batch-size", "64", "--limit", "300"], capsys, monkeypatch)
    assert code == 0, err
    one = json.loads((tmp_path / "results.json").read_text())
    code, out, err = run_cli(["validate", "resnet20", "--weights", shared_data / "weights" / "resnet20-12fca82f.th",
                              "--data", f"cifar10:{cifar_exact}", "--out", tmp_path / "one",
                              "--batch-size", "64", "--limit", "300"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads((tmp_path / "one" / "results.json").read_text())["correct"] == one["correct"]
