"""``.safetensors`` checkpoints (written by the safetensors package's NumPy API, as the hubs do):
logits equal the PyTorch reference modules, export → re-import is bit-exact, and a sharded
checkpoint (``*.safetensors.index.json``) reads the same as the single file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli
from jaxnets.converters.convert import flatten_tree
from jaxnets.converters.safetensors_io import load_safetensors, load_safetensors_state
from safetensors.numpy import load_file, save_file

from jaxnets.api import load
from jaxnets.models.api import load_weights
from jaxnets.models.registry import get_spec

PARITY_SIZES = {"resnet18": 64, "resnet50": 64, "vgg16_bn": 32, "densenet121": 64}


def _reference(name: str, size: int):
    """The PyTorch reference module with torchvision's names and random weights."""
    torch = pytest.importorskip("torch")
    from parity import bound_logits
    from reference.torch_densenet import densenet121
    from reference.torch_resnet import torch_resnet
    from reference.torch_vgg import vgg

    torch.manual_seed(0)
    if name.startswith("resnet"):
        ref = torch_resnet(name)
        bound_logits(ref, (1, 3, size, size))  # |logits| ≲ 10, as a trained net's
        return ref
    return vgg(16, True) if name == "vgg16_bn" else densenet121()


@pytest.mark.parametrize("name", list(PARITY_SIZES))
def test_torchvision_named_safetensors_match_the_reference(name: str, tmp_path: Path) -> None:
    ref = _reference(name, PARITY_SIZES[name])
    from parity import check_logits_parity

    check_logits_parity(name, ref, tmp_path, size=PARITY_SIZES[name], batch=1, file_format="safetensors")


def _digits_file(tmp_path: Path) -> tuple[Path, dict]:
    """A digits_cnn checkpoint in PyTorch names, via jaxnets' own export (random init, seed 3)."""
    model = load("digits_cnn", seed=3)
    path = model.export(tmp_path / "digits.safetensors", to="safetensors")
    return path, jax.device_get(model.variables)


def test_export_then_import_is_bit_exact(tmp_path: Path) -> None:
    path, variables = _digits_file(tmp_path)
    spec = get_spec("digits_cnn")
    again = jax.device_get(load_weights(spec, spec.create(), path))
    flat_a, flat_b = flatten_tree(variables), flatten_tree(again)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        assert np.array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key])), key
    state, metadata = load_safetensors(path)
    assert metadata["jaxnets.model"] == "digits_cnn"
    default = load("digits_cnn")
    assert json.loads(metadata["jaxnets.preprocessing"]) == {"mean": list(default.mean), "std": list(default.std),
                                                           "input_size": 8, "num_classes": 10}
    assert state.keys() == load_file(str(path)).keys()  # the package reads what jaxnets wrote


def test_sharded_checkpoint_reads_as_the_single_file(tmp_path: Path) -> None:
    path, _ = _digits_file(tmp_path)
    whole = load_file(str(path))
    keys = sorted(whole)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    shards = tmp_path / "sharded"
    shards.mkdir()
    weight_map = {}
    for shard, names in halves.items():
        save_file({k: whole[k] for k in names}, str(shards / shard))
        weight_map.update(dict.fromkeys(names, shard))
    index = shards / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    sharded = load_safetensors_state(index)
    assert sharded.keys() == whole.keys()
    for key in whole:
        assert np.array_equal(sharded[key], whole[key]), key
    spec = get_spec("digits_cnn")
    a = flatten_tree(jax.device_get(load_weights(spec, spec.create(), path)))
    b = flatten_tree(jax.device_get(load_weights(spec, spec.create(), index)))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_load_uses_the_normalisation_recorded_in_the_file(tmp_path: Path) -> None:
    model = load("digits_cnn", seed=1)
    custom = dataclasses.replace(model, mean=(0.25,), std=(0.5,))
    path = custom.export(tmp_path / "custom.safetensors", to="safetensors")
    again = load("digits_cnn", path)
    assert (again.mean, again.std) == ((0.25,), (0.5,))


def test_convert_to_safetensors_and_back(tmp_path: Path, capsys, monkeypatch) -> None:
    path, variables = _digits_file(tmp_path)
    code, out, err = run_cli(["convert", "digits_cnn", path, "--to", "safetensors", "--out", tmp_path / "conv"],
                             capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "conv" / "conversion.json").read_text())
    assert report["format"] == "safetensors" and report["round_trip_max_abs_diff"] == 0.0
    written = Path(report["output"])
    assert written.name == "digits_cnn.safetensors"
    assert load_file(str(written)).keys() == load_file(str(path)).keys()
    code, _, err = run_cli(["wfn", "stats", written], capsys, monkeypatch)
    assert code == 0, err
