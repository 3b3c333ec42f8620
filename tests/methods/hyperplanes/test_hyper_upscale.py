"""`jaxnets train --upscale N [--upscale-padding P]` and the minimum input size (issue 15):
AlexNet on images smaller than 63 px is refused; upscaled, its logits are finite."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.data.resize import FixedSizeSource, Upscale, parse_upscale, resize_and_pad
from jaxnets.errors import DataError


def test_alexnet_on_32px_cifar_is_refused(cifar_exact: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["train", "alexnet", "--data", f"cifar10:{cifar_exact}", "--limit", "8", "--epochs", "1",
                            "--out", tmp_path / "run"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    line = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(line) == 1
    for fragment in ("alexnet", "63×63", "32×32", "--upscale"):
        assert fragment in line[0], line[0]
    assert not (tmp_path / "run").exists()


def test_alexnet_upscaled_trains_with_finite_logits(tmp_path: Path, capsys, monkeypatch) -> None:
    import jax.numpy as jnp

    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalize
    from jaxnets.io import load_variables
    from jaxnets.models.api import abstract_variables
    from jaxnets.models.registry import get_spec

    code, _, err = run_cli(["train", "alexnet", "--data", "digits", "--upscale", "64", "--limit", "8", "--epochs", "1",
                            "--batch-size", "4", "--optimizer", "adam", "--out", tmp_path / "run", "-q"],
                           capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert np.isfinite(report["history"][0]["train_loss"])
    # the trained model on upscaled digits: finite, input-dependent logits
    spec = dataclasses.replace(get_spec("alexnet"), in_channels=1)  # adapted to digits' one channel
    module = spec.create(10)
    variables = load_variables(Path(report["final_snapshot"]), abstract_variables(spec, module))
    meta = json.loads((Path(report["final_snapshot"]) / "jaxnets.json").read_text())
    assert (meta["upscale"], meta["upscale_padding"]) == (64, None)  # the snapshot says what it was fed
    source = FixedSizeSource(open_source("digits", "test", limit=4), Upscale(64))
    images = source.get_batch(np.arange(4))
    assert images.shape == (4, 64, 64, 1)
    logits = np.asarray(module.apply(variables, normalize(jnp.asarray(images), (0.5,), (0.5,)), train=False))
    assert np.isfinite(logits).all() and np.ptp(logits, axis=0).max() > 0


def test_upscale_with_padding_reaches_the_model_size(tmp_path: Path) -> None:
    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    out = resize_and_pad(image, Upscale(16, 4))
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8
    assert not out[:4].any() and not out[-4:].any() and not out[:, :4].any() and not out[:, -4:].any()
    assert out[4:20, 4:20].any()


@pytest.mark.parametrize("size,padding,fragment", [
    (0, None, "--upscale must"), (-5, None, "--upscale must"), (None, 56, "needs --upscale"),
    (112, -1, "--upscale-padding must"),
])
def test_bad_upscale_values(size, padding, fragment) -> None:
    with pytest.raises(DataError, match=fragment):
        parse_upscale(size, padding)


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_alexnet_upscaled_to_224_learns_cifar(cifar_exact: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """`jaxnets train alexnet --data cifar10:… --upscale 224` trains above chance (issue 18).

    Frog vs truck (classes 6 and 9, original ids kept, so the head has CIFAR-10's 10 outputs: the
    pair with the most test images in the exact subset, 97 + 94 = 191), 256 training images at
    224×224, two epochs of Adam 1e-4 in batches of 16, seed 0. Chance is 0.5 (always the larger
    class: 0.51); 0.6 is 2.8 binomial σ above it (σ = 0.5/√191 = 0.036), so a model at chance
    passes with p ≈ 0.3 %. Deterministic: 81.68 % on each of three runs here. Measured on the
    shared 2-core CPU machine: seeds 0/1/2 → 81.7 / 80.1 / 74.3 %; about 30 s of CPU time, 40–70 s
    wall clock under the machine's usual load (batch 32 instead of 16 left seed 0 at chance after
    the same two epochs: too few Adam steps).
    """
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "alexnet", "--data", f"cifar10:{cifar_exact}", "--classes", "6,9", "--limit",
                            "256", "--upscale", "224", "--epochs", "2", "--optimizer", "adam", "--lr", "0.0001",
                            "--batch-size", "16", "--shuffle", "--seed", "0", "--out", run, "-q"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((run / "results.json").read_text())
    assert report["epochs_completed"] == 2 and all(np.isfinite(r["train_loss"]) for r in report["history"])
    assert report["test_top1"] > 0.6, report["test_top1"]
    meta = json.loads((Path(report["final_snapshot"]) / "jaxnets.json").read_text())
    assert meta["upscale"] == 224 and meta["preprocessing"]["input_size"] == 224 and meta["num_classes"] == 10
