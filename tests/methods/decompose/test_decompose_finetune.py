"""Fine-tuning through the decomposed head: digits runner, exports, resume, devices, JPEG CIFAR."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from cli_helpers import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    from jaxnets.methods.decompose.runners import run_digits

    out = tmp_path_factory.mktemp("digits")
    return out, run_digits(out, train_epochs=6, finetune_epochs=1)


def test_digits_runner_headline_numbers(digits_run):
    out, s = digits_run
    assert s["full_top1"] > 0.8
    assert 0.0 < s["decomposed_top1"] <= 1.0 and s["finetuned_top1"] > 0.5
    assert 0 <= s["essential_noise_at_inf"] <= s["essential_total"] == 360
    assert 0.0 < s["mutual_info"] < 0.3
    assert json.loads((out / "summary.json").read_text()) == s


def test_exports_compute_the_decomposed_model(digits_run):
    """The jaxnets checkpoint and the PyTorch state_dict hold the head baked in: a plain dense
    forward of either equals the masked forward of the fine-tuned params."""
    from jaxnets.data.spec import open_source
    from jaxnets.methods.decompose.head import apply_head_mask, mask_tree
    from jaxnets.methods.decompose.indices import load_indices
    from jaxnets.models.api import load_weights, resolve

    out, _ = digits_run
    run = out / "finetune"
    spec = resolve("digits_cnn")
    import dataclasses

    spec = dataclasses.replace(spec, in_channels=1)
    module = spec.create()
    table = load_indices(run / "indices.json", num_classes=10, num_features=64)
    x = np.asarray(open_source("digits", "test").get_batch(np.arange(16)), np.float32) / 255.0
    x = (x - 0.5) / 0.5
    from_ck = load_weights(spec, module, run / "finetuned")
    from_pt = load_weights(spec, module, run / "finetuned.pth")
    a = np.asarray(module.apply(from_ck, x))
    b = np.asarray(module.apply(from_pt, x))
    np.testing.assert_allclose(a, b, atol=1e-6)
    kernel = np.asarray(from_ck["params"]["fc"]["kernel"])
    keep = np.zeros_like(kernel, bool)
    keep[table, np.arange(10)[:, None]] = True
    assert not kernel[~keep].any() and kernel[keep].all()
    # re-masking the baked model changes nothing
    mask = mask_tree(from_ck["params"], "fc", table)
    c = np.asarray(module.apply({**from_ck, "params": apply_head_mask(from_ck["params"], mask)}, x))
    np.testing.assert_array_equal(a, c)
    v = np.load(run / "final_weights.npz")
    np.testing.assert_array_equal(v["final_weights"], np.take_along_axis(kernel.T, table, 1))


@pytest.mark.multidevice
def test_finetune_resume_and_devices(digits_run, tmp_path, capsys, monkeypatch):
    out, s = digits_run
    weights, index_file = out / "digits_cnn_trained", s["index_file"]
    base = ["finetune", "digits_cnn", "--weights", weights, "--indices", index_file, "--data", "digits",
            "--lr", "1e-3", "--batch-size", "64", "--no-initial-eval", "-q"]
    code, _, err = run_cli([*base, "--epochs", "1", "--out", tmp_path / "r"], capsys, monkeypatch)
    assert code == 0, err
    code, _, err = run_cli([*base, "--epochs", "2", "--out", tmp_path / "r", "--resume", "auto"], capsys, monkeypatch)
    assert code == 0, err
    resumed = json.loads((tmp_path / "r" / "results.json").read_text())
    code, _, err = run_cli([*base, "--epochs", "2", "--out", tmp_path / "s"], capsys, monkeypatch)
    assert code == 0, err
    straight = json.loads((tmp_path / "s" / "results.json").read_text())
    assert resumed["epochs_completed"] == straight["epochs_completed"] == 2
    assert resumed["final_top1"] == straight["final_top1"]
    code, _, err = run_cli([*base, "--epochs", "1", "--devices", "2", "--out", tmp_path / "d"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads((tmp_path / "d" / "results.json").read_text())["steps"] == 22


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_finetune_jpeg_cifar_improves(shared_data, cifar_jpeg, tmp_path, capsys, monkeypatch):
    """A short fine-tune (50 steps of 64) on the JPEG training set raises the decomposed
    model's test accuracy (measured on the same 1,000 test images before and after)."""
    dtd = shared_data / "decomposing-the-deep"
    code, out, err = run_cli(["finetune", "resnet20", "--weights", shared_data / "weights" / "resnet20-12fca82f.th",
                              "--indices", dtd / "resnet20_cifar-10_indices.json",
                              "--data", f"imagefolder:{cifar_jpeg}",
                              "--epochs", "1", "--limit", "3200", "--eval-limit", "1000", "--normalize", "imagenet",
                              "--out", tmp_path, "-q"], capsys, monkeypatch)
    assert code == 0, err
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["steps"] == 50 and r["lr"] == 1e-4 and r["batch_size"] == 64
    assert 0.70 < r["start_top1"] < 0.82
    assert r["final_top1"] > r["start_top1"] + 0.01, r
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

    state = extract_state_dict(load_torch_file(tmp_path / "finetuned.pth"))
    assert state["linear.weight"].shape == (10, 64) and int((state["linear.weight"] != 0).sum()) == 50
    assert jax.tree_util.tree_leaves(r["history"])
