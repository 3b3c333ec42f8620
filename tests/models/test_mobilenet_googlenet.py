"""GoogLeNet, MobileNetV2, MobileNetV3-small against torchvision, without torchvision.

The references are tests/fixtures/peers/<model>.json, written once with real torchvision by
scripts/make_peer_fixtures.py: the state_dict layout and the eval logits of the weights
tests/peer_fixture.py regenerates from it. Here those weights go through jaxnets' strict PyTorch
reader and converter, and the logits must match to 1e-4; the export loads back bit-exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli
from jaxnets.converters.convert import flatten_tree, variables_to_state_dict
from jaxnets.converters.torch_writer import save_torch_state_dict
from peer_fixture import fixture_input, fixture_state, logits_of, read_record

from jaxnets.models.api import abstract_variables, apply_with_intermediates, count_params, load_weights
from jaxnets.models.registry import NORMALIZATIONS, get_spec

ATOL = 1e-4
# torchvision's published ``num_params`` (GoogLeNet without its training-only aux heads)
PUBLISHED = {"googlenet": 6_624_904, "mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856}
MODELS = list(PUBLISHED)


@pytest.mark.parametrize("name", MODELS)
def test_param_count_is_torchvisions(name: str) -> None:
    spec = get_spec(name)
    assert (spec.input_size, spec.num_classes, spec.normalization) == (224, 1000, "imagenet")
    assert count_params(abstract_variables(spec, spec.create(), size=64)) == PUBLISHED[name]


def _fixture_file(name: str, tmp_path: Path, file_name: str | None = None) -> tuple[dict, Path]:
    record = read_record(name)
    state = fixture_state(record)
    # the same weights torchvision saw (a changed NumPy random stream would show here first)
    assert sum(np.abs(v.astype(np.float64)).sum() for v in state.values()) == pytest.approx(record["checksum"],
                                                                                           rel=1e-12)
    return record, save_torch_state_dict(tmp_path / (file_name or f"{name}.pth"), state)


_FORWARD = jax.jit(lambda module, v, x: apply_with_intermediates(module, v, x, ("features",)),
                   static_argnums=0)


@pytest.mark.parametrize("name", MODELS)
def test_logits_match_torchvision_and_export_round_trips(name: str, tmp_path: Path) -> None:
    record, path = _fixture_file(name, tmp_path)
    spec = get_spec(name)
    module = spec.create()
    variables = load_weights(spec, module, path)
    x = fixture_input(record).transpose(0, 2, 3, 1)
    logits, inter = _FORWARD(module, variables, x)
    print(f"{name}: max |Δlogits| vs torchvision {record['torchvision']} = "
          f"{float(np.abs(np.asarray(logits) - logits_of(record)).max()):.2e} at {record['size']} px")
    np.testing.assert_allclose(np.asarray(logits), logits_of(record), atol=ATOL, rtol=0)
    head = variables["params"][spec.head]
    np.testing.assert_allclose(inter["features"] @ head["kernel"] + head["bias"], logits, atol=ATOL, rtol=0)

    # export: torchvision's key set (GoogLeNet's training-only aux heads aside), and back bit-exactly
    exported = variables_to_state_dict(variables, spec.keymap)
    layout = {k: tuple(s) for k, s, _ in record["keys"] if not k.startswith(("aux1.", "aux2."))}
    assert {k: tuple(v.shape) for k, v in exported.items()} == layout
    back = load_weights(spec, module, save_torch_state_dict(tmp_path / "back.pth", exported))
    for key, value in flatten_tree(variables).items():
        np.testing.assert_array_equal(np.asarray(flatten_tree(back)[key]), np.asarray(value), err_msg=str(key))


def test_googlenet_transform_input_is_torchvisions_and_equals_half_normalisation(tmp_path: Path) -> None:
    """``create(transform_input=True)`` = torchvision's pretrained forward on ImageNet-normalised input,
    and = the plain model on the raw image normalised with mean = std = 0.5 (the known-weights record)."""
    record, path = _fixture_file("googlenet", tmp_path)
    spec = get_spec("googlenet")
    want = logits_of(record, "logits_transform_input")
    x = fixture_input(record).transpose(0, 2, 3, 1)
    module = spec.create(transform_input=True)
    got, _ = _FORWARD(module, load_weights(spec, module, path), x)
    np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=0)
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS["imagenet"])
    raw = x * std + mean  # the image the normalised input came from
    plain = spec.create()
    got, _ = _FORWARD(plain, load_weights(spec, plain, path), (raw - 0.5) / 0.5)
    np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=0)


def test_convert_cli_reads_the_pretrained_googlenet_layout(tmp_path: Path, capsys, monkeypatch) -> None:
    """`jaxnets convert googlenet googlenet-1378be20.pth`: aux keys ignored, preprocessing 0.5/0.5."""
    _, path = _fixture_file("googlenet", tmp_path, "googlenet-1378be20.pth")
    code, out, err = run_cli(["convert", "googlenet", path, "--out", tmp_path / "c"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "c" / "conversion.json").read_text())
    assert (report["preprocessing"]["mean"], report["preprocessing"]["std"]) == ([0.5] * 3, [0.5] * 3)
    assert "mean [0.5, 0.5, 0.5]" in out


def _last_map(name: str, size: int) -> tuple[int, ...]:
    """Shape of the last feature map at ``size`` px (by shape evaluation: nothing is compiled)."""
    spec = get_spec(name)
    module = spec.create()
    last = {"googlenet": "inception5b", "mobilenet_v2": "features_18_1", "mobilenet_v3_small": "features_12_1"}[name]
    x = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
    out = jax.eval_shape(lambda v, x: apply_with_intermediates(module, v, x, (last,))[1],
                         abstract_variables(spec, module, size=64), x)
    return tuple(out[last].shape)


def test_googlenet_min_input_size() -> None:
    """torchvision's ``min_size`` (15 px): the last Inception's map is 1×1 at 15 px and empty at 14."""
    assert get_spec("googlenet").min_input_size == 15
    assert _last_map("googlenet", 15) == (1, 1, 1, 1024)
    assert _last_map("googlenet", 14)[1:3] == (0, 0)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_mobilenets_take_any_size(name: str) -> None:
    assert get_spec(name).min_input_size is None  # torchvision's min_size (1, 1)
    assert _last_map(name, 1)[1:3] == (1, 1)
