"""Checkpoints that do not fit say why and which option fits; non-finite weights are never silent."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest
from jaxnets.converters.convert import (
    BuiltFor,
    ShapeMismatch,
    compare_variables,
    count_nonfinite,
    raise_misfit,
    variables_to_state_dict,
)
from jaxnets.converters.torch_writer import save_torch_state_dict

from jaxnets.errors import CheckpointError
from jaxnets.io import save_variables
from jaxnets.models.api import abstract_variables, load_weights
from jaxnets.models.registry import ModelSpec, get_spec


def _state(spec: ModelSpec, num_classes: int | None = None, fill: float = 0.5) -> dict[str, np.ndarray]:
    """A PyTorch state_dict of ``spec`` built for its inputs, every value ``fill``."""
    abstract = abstract_variables(spec, spec.create(num_classes))
    variables = jax.tree_util.tree_map(lambda s: np.full(s.shape, fill, s.dtype), abstract)
    return variables_to_state_dict(variables, spec.keymap)


def _digits_spec(name: str) -> ModelSpec:
    """``name`` as ``--data digits`` adapts it (see jaxnets.data.pipeline.adapt_to_data)."""
    return dataclasses.replace(get_spec(name), in_channels=1, normalization="digits")


def _message(spec: ModelSpec, path: Path, num_classes: int | None = None) -> str:
    with pytest.raises(CheckpointError) as err:
        load_weights(spec, spec.create(num_classes), path)
    return str(err.value)


@pytest.fixture(scope="module")
def resnet20_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = get_spec("resnet20")
    return save_torch_state_dict(tmp_path_factory.mktemp("r20") / "r20.pth", _state(spec))


# ---------------------------------------------------------------- which option fits


def test_rgb_checkpoint_into_a_model_built_for_digits(resnet20_file: Path) -> None:
    message = _message(_digits_spec("resnet20"), resnet20_file)
    assert "conv1.weight has shape (16, 3, 3, 3) where resnet20 expects (16, 1, 3, 3)" in message
    assert ("the checkpoint has 3 input channels and 10 classes but the model was built for 1 channel "
            "(from --data digits): pass --data with 3-channel images") in message
    assert "another architecture" not in message and "missing" not in message


def test_other_class_count(resnet20_file: Path) -> None:
    message = _message(get_spec("resnet20"), resnet20_file, num_classes=100)
    assert "linear.weight has shape (10, 64) where resnet20 expects (100, 64)" in message
    assert "linear.bias has shape (10,) where resnet20 expects (100,)" in message
    assert ("the checkpoint has 3 input channels and 10 classes but the model was built for 100 classes "
            "(set by --num-classes or the data): pass --num-classes 10") in message


def test_channels_and_classes_together(resnet20_file: Path) -> None:
    message = _message(_digits_spec("resnet20"), resnet20_file, num_classes=5)
    assert ("but the model was built for 1 channel (from --data digits) and 5 classes (set by --num-classes or "
            "the data): pass --data with 3-channel images; pass --num-classes 10") in message


def test_jaxnets_snapshot_trained_on_digits_into_the_default_model(tmp_path: Path) -> None:
    digits = _digits_spec("lenet")
    abstract = abstract_variables(digits, digits.create())
    variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    folder = save_variables(tmp_path / "snapshot", variables, {"model": "lenet", "dataset": "digits"})
    message = _message(get_spec("lenet"), folder)
    assert "params/features_0/kernel has shape (3, 3, 1, 6) where lenet expects (3, 3, 3, 6)" in message
    assert ("the checkpoint has 1 input channel and 10 classes but the model was built for 3 channels (lenet's "
            "default; commands with --data adapt it): pass --data with 1-channel images (the checkpoint was "
            "trained on --data digits)") in message
    loaded = load_weights(digits, digits.create(), folder)  # the model built for the data fits
    assert loaded["params"]["features_0"]["kernel"].shape == (3, 3, 1, 6)


def test_flattened_input_size() -> None:
    built = BuiltFor(in_channels=1, num_classes=10, head="classifier", channels_origin="from --data digits")
    path = ("params", "hidden1", "fc", "kernel")
    mismatch = ShapeMismatch("hidden1.fc.weight", path, (4096, 3072), (4096, 1024), (3072, 4096), (1024, 4096))
    with pytest.raises(CheckpointError) as err:
        raise_misfit("mlp", mismatched=[mismatch], built_for=built, flattened={("hidden1", "fc")})
    assert ("the checkpoint has 10 classes and 3072 input features into hidden1.fc.weight but the model was "
            "built for 1024 input features into hidden1.fc.weight (from --data digits): pass --data with images "
            "of the size and channels it was trained on") in str(err.value)


def test_other_differences_still_suggest_another_architecture(tmp_path: Path) -> None:
    spec = get_spec("resnet20")
    state = _state(spec)
    state["layer1.0.conv1.weight"] = np.zeros((16, 8, 3, 3), np.float32)  # not the input conv
    message = _message(spec, save_torch_state_dict(tmp_path / "odd.pth", state))
    assert message.endswith("(is it a checkpoint of another architecture?)")
    assert "pass --data" not in message


def test_folder_without_metadata_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}")
    message = _message(get_spec("digits_cnn"), tmp_path)
    assert "is a folder but not a jaxnets checkpoint (it has no jaxnets.json)" in message


# ---------------------------------------------------------------- non-finite weights


def test_nonfinite_weights_load_with_one_warning(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = get_spec("digits_cnn")
    state = _state(spec)
    state["conv1.weight"].reshape(-1)[:2] = np.nan
    state["fc.bias"][3] = -np.inf
    path = save_torch_state_dict(tmp_path / "nan.pth", state)
    variables = load_weights(spec, spec.create(), path)
    assert np.isnan(np.asarray(variables["params"]["conv1"]["kernel"])).sum() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: "), err
    assert "2 tensor(s) hold non-finite values (2 NaN, 1 inf): params/conv1/kernel, params/fc/bias" in err[0]


def test_finite_weights_load_silently(resnet20_file: Path, capsys: pytest.CaptureFixture) -> None:
    spec = get_spec("resnet20")
    load_weights(spec, spec.create(), resnet20_file)
    assert capsys.readouterr().err == ""


def test_count_nonfinite() -> None:
    tree = {"params": {"a": np.array([1.0, np.nan, np.inf, -np.inf]), "b": np.arange(3),
                       "c": np.zeros(2, np.float16)}}
    assert count_nonfinite(tree) == {"params/a": (1, 2)}


def test_compare_variables_never_reads_a_nan_as_zero() -> None:
    a = {"w": np.array([1.0, np.nan, np.inf, 2.0])}
    same = compare_variables(a, {"w": np.array([1.0, np.nan, np.inf, 2.5])})
    assert same == {"max_abs_diff": 0.5, "nan": 1, "inf": 1, "nonfinite_mismatches": 0}
    moved = compare_variables(a, {"w": np.array([np.nan, 0.0, -np.inf, 2.0])})
    assert moved["nonfinite_mismatches"] == 3 and moved["max_abs_diff"] == 0.0 and moved["nan"] == 1
    assert compare_variables({"w": np.ones(3)}, {"w": np.ones(3)}) == {
        "max_abs_diff": 0.0, "nan": 0, "inf": 0, "nonfinite_mismatches": 0}
