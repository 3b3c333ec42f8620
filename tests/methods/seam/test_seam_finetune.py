"""Indirect reuse (spec §2.10), steps 1–3 + DIR, on digits_cnn / digits (small and fast)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxnets.errors import ConfigError


@pytest.fixture(scope="module")
def pretrained() -> dict:
    from jaxnets.methods.seam.runner import pretrain_digits

    return pretrain_digits(0, 4)


def test_seam_finetune_three_steps_digits(pretrained: dict, tmp_path: Path) -> None:
    from jaxnets.api import load
    from jaxnets.methods.seam import FinetuneConfig, core, finetune, maskdict
    from jaxnets.methods.seam.loaders import open_split

    before = jax.tree_util.tree_map(lambda a: np.array(a, copy=True), pretrained)
    train, test = open_split("digits", "train"), open_split("digits", "test")
    model = load("digits_cnn", data=test).replace(pretrained)
    config = FinetuneConfig(epochs=3, prune_threshold=0.2, lr_mask=0.1, alpha=1.0, pgd_steps=3, seed=0)
    result = finetune(model, train, config, tmp_path, test_data=test)
    s = result.to_json()
    # step 1: only the new output layer trained; BN statistics adapted (train mode, pitfall 21)
    s1 = maskdict.load_tree(tmp_path / "step_1_model_ft.msgpack")
    for name in ("conv1", "conv2", "conv3", "bn1", "bn2", "bn3"):
        for key, leaf in s1["params"][name].items():
            np.testing.assert_array_equal(leaf, before["params"][name][key])
    assert not np.array_equal(s1["batch_stats"]["bn1"]["mean"], before["batch_stats"]["bn1"]["mean"])
    assert s["step1"]["acc"] > 0.9
    # step 2: the output layer is not masked; the threshold rule picks the first epoch with
    # pruned fraction ≥ 0.2, otherwise the best acc − r snapshot
    s2 = s["step2"]
    assert s2["n_entries"] == 56_234 - (64 * 10 + 10)
    if s2["stopped_by"] == "threshold":
        assert 1 - s2["retention"] >= 0.2 and s2["epoch"] == s2["epochs_run"] - 1
    else:
        assert s2["stopped_by"] == "epochs" and s2["retention"] > 0.8
    assert s["retention"] == pytest.approx(s2["retention"])
    saved = maskdict.load_tree(tmp_path / "step_2_seam.msgpack")
    assert "fc" in saved and "fc" not in saved["scores"]
    assert core.count_kept(saved["scores"]) == s["kept"]
    # step 3 + DIR
    assert s["step3"]["acc"] > 0.8 and 0 <= s["dir"] <= 100 and s["n"] == 360
    assert json.loads((tmp_path / "defect.json").read_text())["step2"]["stopped_by"] == s2["stopped_by"]
    # the pretrained model itself is untouched (steps donate copies)
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(pretrained), strict=True):
        np.testing.assert_array_equal(np.asarray(b), a)


@pytest.mark.parametrize("opts,match", [
    ({"prune_threshold": 0.0}, "prune-threshold"),
    ({"alpha": -1.0}, "alpha"),
    ({"early_stop": 0}, "early-stop"),
    ({"lr_mask": 0.0}, "lr-mask"),
])
def test_seam_finetune_bad_input(opts: dict, match: str, tmp_path: Path) -> None:
    from jaxnets.methods.seam import FinetuneConfig

    # The Config names the field; the CLI shows it as the flag (ConfigError.flag).
    with pytest.raises(ConfigError) as caught:
        FinetuneConfig(**opts)
    assert match in f"{caught.value.flag} {caught.value.problem}"


def test_seam_finetune_cli_options_reach_the_runner(tmp_path: Path, capsys, monkeypatch) -> None:
    from cli_helpers import run_cli

    code, _, err = run_cli(["seam", "finetune", "digits_cnn", "--data", "digits", "--lr-s1-output", "0",
                            "--out", tmp_path], capsys, monkeypatch)
    assert code == 2 and err.startswith("error:") and "lr-s1-output" in err
    code, _, err = run_cli(["seam", "finetune", "digits_cnn", "--data", "digits", "--early-stop", "-2",
                            "--out", tmp_path], capsys, monkeypatch)
    assert code == 2 and "early-stop" in err


def _mixed_size_folder(root: Path) -> Path:
    """train/ and test/ image folders whose images all differ in size (as CUB, Dogs, MIT-67)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", 3), ("test", 2)):
        for c, cls in enumerate(("ant", "bee")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                h, w = 40 + 7 * i + 3 * c, 52 - 5 * i + 2 * c
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_seam_finetune_on_mixed_size_images(tmp_path: Path, capsys, monkeypatch) -> None:
    """finetune builds its loaders as reengineer does: ImageNet resize/crop per image for a
    224-px model, so mixed image sizes no longer fail with "images differ in size"."""
    import dataclasses

    from cli_helpers import run_cli

    from jaxnets.models import registry

    registry._load()
    # A tiny 224-px model (digits_cnn's layers on RGB): the same loader rule as resnet18, cheap on a CPU.
    tiny = dataclasses.replace(registry.get_spec("digits_cnn"), name="tiny224", input_size=224, in_channels=3,
                               normalization="imagenet", num_classes=2)
    monkeypatch.setitem(registry._REGISTRY, "tiny224", tiny)
    data = _mixed_size_folder(tmp_path / "folder")
    code, out, err = run_cli(["seam", "finetune", "tiny224", "--data", f"imagefolder:{data}", "--limit", "6",
                              "--epochs", "1", "--batch-size", "2", "--pgd-steps", "1", "--out", tmp_path / "run",
                              "-q"], capsys, monkeypatch)
    assert code == 0, err
    defect = json.loads((tmp_path / "run" / "defect.json").read_text())
    assert defect["n"] == 4 and "step3" in defect
