"""DenseNet-121: size, torchvision key paths, legacy keys, exact parity, penultimate features."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jaxnets.converters.convert import flatten_tree, variables_to_state_dict
from parity import check_logits_parity, randomize_bn_stats

from jaxnets.models.api import (
    abstract_variables,
    apply_with_intermediates,
    count_params,
    intermediate_names,
    load_weights,
)
from jaxnets.models.registry import get_spec

torch = pytest.importorskip("torch")
from reference.torch_densenet import densenet121, to_legacy_keys  # noqa: E402

PUBLISHED = 7_978_856


def test_param_count_matches_published_and_torch() -> None:
    spec = get_spec("densenet121")
    assert (spec.input_size, spec.num_classes, spec.normalization, spec.head) == (
        224, 1000, "imagenet", "classifier")
    assert count_params(abstract_variables(spec, spec.create())) == PUBLISHED
    with torch.device("meta"):
        ref = densenet121()
    assert sum(p.numel() for p in ref.parameters()) == PUBLISHED


def test_tree_mirrors_torchvision_keys() -> None:
    """Every torchvision key has a leaf, by the generic rule alone, and nothing else exists."""
    spec = get_spec("densenet121")
    abstract = abstract_variables(spec, spec.create(), size=64)
    zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), abstract)
    exported = variables_to_state_dict(zeros, spec.keymap)
    with torch.device("meta"):
        expected = densenet121().state_dict()
    assert set(exported) == set(expected)
    for key, value in expected.items():
        assert tuple(exported[key].shape) == tuple(value.shape), key
    assert "features.denseblock1.denselayer1.norm1.weight" in exported
    assert "features.denseblock4.denselayer16.conv2.weight" in exported
    assert "features.transition3.conv.weight" in exported


def test_legacy_key_rename() -> None:
    km = get_spec("densenet121").keymap
    assert km.rename("features.denseblock2.denselayer11.norm.1.running_var") == (
        "features.denseblock2.denselayer11.norm1.running_var")
    assert km.rename("features.denseblock4.denselayer3.conv.2.weight") == (
        "features.denseblock4.denselayer3.conv2.weight")
    for modern in ("features.denseblock1.denselayer1.conv1.weight",
                   "features.transition1.norm.weight", "features.norm5.bias",
                   "features.conv0.weight", "classifier.weight"):
        assert km.rename(modern) == modern


def _features_at_64(tmp_path):
    return check_logits_parity("densenet121", densenet121(), tmp_path, size=64, batch=2)


def test_parity_at_64px_and_pooled_features(tmp_path) -> None:
    variables = _features_at_64(tmp_path)
    spec = get_spec("densenet121")
    module = spec.create()
    x = np.random.default_rng(3).standard_normal((2, 64, 64, 3)).astype(np.float32)
    logits, inter = jax.jit(
        lambda v, x: apply_with_intermediates(module, v, x, ("features",)))(variables, x)
    head = variables["params"]["classifier"]
    assert inter["features"].shape == (2, 1024)
    np.testing.assert_allclose(inter["features"] @ head["kernel"] + head["bias"], logits,
                               atol=1e-4, rtol=0)
    names = intermediate_names(spec, module)
    assert "features" in names and "features/denseblock3/denselayer24" in names


def test_legacy_key_checkpoint_loads_with_same_logits(tmp_path) -> None:
    """A checkpoint in the pre-0.3 spelling (``denselayerN.norm.1.*``) gives the same model."""
    ref = densenet121()
    randomize_bn_stats(ref, seed=5)
    ref.eval()
    legacy = to_legacy_keys(ref.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert not any(".norm1." in k or ".conv2." in k for k in legacy)
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    spec = get_spec("densenet121")
    module = spec.create()
    variables = load_weights(spec, module, path)
    x = np.random.default_rng(4).standard_normal((2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    # export writes the modern names, which load strictly into the reference
    exported = variables_to_state_dict(variables, spec.keymap)
    densenet121().load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in exported.items()},
                                  strict=True)


@pytest.mark.slow
def test_parity_at_224(tmp_path) -> None:
    check_logits_parity("densenet121", densenet121(), tmp_path, batch=1)


def test_init_matches_torchvision() -> None:
    # a shallow DenseNet built from the same layer classes: same initialisers, quick to compile
    from jaxnets.models.densenet import DenseNet

    module = DenseNet(block_config=(2, 2, 2, 2), num_classes=100)
    x = np.zeros((1, 32, 32, 3), np.float32)
    variables = jax.jit(module.init)(jax.random.key(0), x)
    for path, leaf in flatten_tree(variables["params"]).items():
        leaf = np.asarray(leaf)
        if path[-1] == "kernel" and leaf.ndim == 4:
            want = np.sqrt(2.0 / np.prod(leaf.shape[:-1]))  # kaiming-normal, fan_in
            assert abs(leaf.std() / want - 1) < 0.05, (path, leaf.std(), want)
        elif path[-1] == "kernel":
            bound = leaf.shape[0] ** -0.5  # PyTorch default Linear init
            assert np.abs(leaf).max() <= bound and abs(leaf.std() * np.sqrt(3) / bound - 1) < 0.05
        elif path[-1] == "scale":
            np.testing.assert_array_equal(leaf, 1.0)
        else:
            assert path[-1] == "bias" and not leaf.any(), path
