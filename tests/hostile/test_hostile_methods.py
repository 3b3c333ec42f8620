"""Bad option values of the method commands (issue 15): inputs smaller than the model supports
(or of another size than a fixed-size model takes),
bad ``--upscale``, ``--k``, ``--epochs``, ``--target``, ``--layers`` and ``--split`` values.

Every case runs in-process on tiny inputs (digits, digits_cnn / lenet / allconv4 / alexnet at
8 px, ``--limit``), points ``--out`` at a folder that already holds somebody's results, and must
be refused by the shared rule (tests/hostile_harness.py): exit 2, one ``error:`` line holding
the fragments, no traceback, that folder untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_harness import refuse
from PIL import Image

from jaxnets.methods.decompose.indices import write_indices

# A case gets a scratch folder and returns the command line (without --out) and the fragments
# the error line must hold.
Case = Callable[[Path], tuple[list[object], tuple[str, ...]]]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__.removeprefix("case_")] = function
    return function


TRAIN = ["train", "digits_cnn", "--data", "digits", "--limit", "64", "--epochs", "1", "-q"]


def _index_file(folder: Path, k: int = 5, name: str = "k5.json") -> Path:
    """A valid (10, k) index table over 64 pooled channels (digits_cnn's and resnet20's width)."""
    return write_indices(folder / name, np.stack([(np.arange(k) + 3 * c) % 64 for c in range(10)]))


def _one_class_folder(folder: Path) -> Path:
    """An image folder whose train and test splits hold a single class."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        d = folder / "one_class" / split / "only"
        d.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(d / f"{i}.png")
    return folder / "one_class"


# -------------------------------------------------------------- inputs smaller than the model


@case
def case_train_alexnet_on_8px(folder: Path):
    return (["train", "alexnet", "--data", "digits", "--limit", "8", "--epochs", "1"],
            ("alexnet", "63×63", "8×8", "--upscale"))


@case
def case_train_alexnet_upscaled_too_little(folder: Path):
    return (["train", "alexnet", "--data", "digits", "--limit", "8", "--upscale", "32"],
            ("alexnet", "63×63", "32×32", "--upscale 32"))


@case
def case_probe_allconv4_on_8px(folder: Path):
    return (["probe", "run", "allconv4", "--data", "digits", "--limit", "40"],
            ("allconv4", "32×32 px inputs only", "8×8"))


@case
def case_train_mixer_at_another_size(folder: Path):
    return (["train", "mixer_tiny", "--data", "digits", "--limit", "64", "--upscale", "16"],
            ("mixer_tiny", "32×32 px inputs only", "16×16", "--upscale 32"))


# ----------------------------------------------------------------------------- --upscale


@case
def case_upscale_zero(folder: Path):
    return [*TRAIN, "--upscale", "0"], ("--upscale must", "got 0")


@case
def case_upscale_negative(folder: Path):
    return [*TRAIN, "--upscale", "-8"], ("--upscale must", "got -8")


@case
def case_upscale_padding_alone(folder: Path):
    return [*TRAIN, "--upscale-padding", "56"], ("--upscale-padding needs --upscale",)


@case
def case_upscale_padding_negative(folder: Path):
    return [*TRAIN, "--upscale", "16", "--upscale-padding", "-1"], ("--upscale-padding must", "got -1")


@case
def case_upscale_with_pixel_shuffle(folder: Path):
    return [*TRAIN, "--upscale", "16", "--noise", "-1"], ("pixel shuffle", "--upscale")


@case
def case_train_negative_epochs(folder: Path):
    return ["train", "lenet", "--data", "digits", "--limit", "64", "--epochs", "-1"], ("--epochs",)


# ---------------------------------------------------------------------------------- --k


@case
def case_mutual_info_k_zero(folder: Path):
    return ["mutual-info", "-i", _index_file(folder), "--k", "0"], ("--k values must be at least 1", "got 0")


@case
def case_mutual_info_k_text(folder: Path):
    return ["mutual-info", "-i", _index_file(folder), "--k", "abc"], ("--k must be comma-separated integers", "abc")


@case
def case_mutual_info_k_garbled(folder: Path):
    return ["mutual-info", "-i", _index_file(folder), "--k", "5,,x"], ("--k must be comma-separated integers",)


@case
def case_mutual_info_k_empty_item(folder: Path):
    return ["mutual-info", "-i", _index_file(folder), "--k", "5,,10"], ("--k has an empty value",)


@case
def case_mutual_info_k_without_gates(folder: Path):
    return ["mutual-info", "-i", _index_file(folder), "--k", "5,10,20"], ("--k", "needs --csg-weights")


@case
def case_mutual_info_same_k_twice(folder: Path):
    a, b = _index_file(folder, 5, "a.json"), _index_file(folder, 5, "b.json")
    return ["mutual-info", "-i", a, "-i", b], ("two --indices files have k = 5", "a.json", "b.json")


@case
def case_indices_k_zero(folder: Path):
    return (["indices", "digits_cnn", "--data", "digits", "--limit", "50", "--k", "0"],
            ("--k values must be at least 1",))


@case
def case_indices_k_twice(folder: Path):
    return ["indices", "digits_cnn", "--data", "digits", "--limit", "50", "--k", "5,5"], ("--k lists 5 twice",)


@case
def case_indices_k_above_width(folder: Path):
    return (["indices", "digits_cnn", "--data", "digits", "--limit", "50", "--k", "65"],
            ("--k 65 exceeds the 64 penultimate channels",))


# ------------------------------------------------------------------------- seam --target


@case
def case_seam_target_one_class(folder: Path):
    data = _one_class_folder(folder)
    return (["seam", "reengineer", "digits_cnn", "--data", f"imagefolder:{data}", "--target", "binary:0",
             "--epochs", "1", "--limit", "4"], ("no images for part of the target",))


@case
def case_seam_target_unknown_class(folder: Path):
    return (["seam", "reengineer", "digits_cnn", "--data", "digits", "--target", "binary:3,99", "--epochs", "1",
             "--limit", "40"], ("class 99 is out of range",))


@case
def case_seam_target_same_class_twice(folder: Path):
    return (["seam", "reengineer", "digits_cnn", "--data", "digits", "--target", "binary:3,3", "--epochs", "1"],
            ("two different classes",))


@case
def case_seam_finetune_negative_epochs(folder: Path):
    return (["seam", "finetune", "digits_cnn", "--data", "digits", "--epochs", "-1", "--limit", "40"],
            ("--epochs must be at least 1", "got -1"))


# ------------------------------------------------------------------- probe and essential


@case
def case_probe_unknown_layer(folder: Path):
    return (["probe", "run", "digits_cnn", "--data", "digits", "--limit", "40", "--layers", "conv1,nope"],
            ("unknown layer(s) nope", "digits_cnn", "valid names"))


@case
def case_essential_unknown_split(folder: Path):
    return (["essential", "--model", "digits_cnn", "--data", "digits", "--indices", _index_file(folder),
             "--split", "bogus"], ("bogus",))


@pytest.fixture()
def existing(tmp_path: Path) -> Path:
    """A folder that already holds somebody's results: every refusal leaves it as it was."""
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "results.json").write_text('{"top1": 0.99}\n')
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
def test_refused(name: str, tmp_path: Path, existing: Path, capsys: pytest.CaptureFixture,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args, fragments = CASES[name](inputs)
    refuse([*args, "--out", existing], *fragments, protect=[existing, inputs], capsys=capsys,
           monkeypatch=monkeypatch)
