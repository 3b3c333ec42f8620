"""VGG / AlexNet / CIFAR VGG16-BN: sizes, torchvision key indices, initialisers, exact parity."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jaxnets.converters.convert import flatten_tree, torch_key_to_flax, variables_to_state_dict
from parity import check_logits_parity

from jaxnets.models.api import (
    abstract_variables,
    apply_with_intermediates,
    count_params,
    init_variables,
)
from jaxnets.models.registry import get_spec
from jaxnets.models.vgg import CONFIGS, VGG_KEYMAP, feature_layout

torch = pytest.importorskip("torch")
from reference.torch_vgg import AlexNet, cifar_vgg16_bn, vgg  # noqa: E402

PUBLISHED = {
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248, "alexnet": 61_100_840,
}


def _torch_reference(name: str, **kw) -> torch.nn.Module:
    if name == "alexnet":
        return AlexNet(**kw)
    depth = int(name[3:5])
    return vgg(depth, name.endswith("_bn"), **kw)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_matches_published_and_torch(name: str) -> None:
    spec = get_spec(name)
    assert count_params(abstract_variables(spec, spec.create())) == PUBLISHED[name]
    with torch.device("meta"):  # no allocation
        ref = _torch_reference(name, **({} if name == "alexnet" else {"init": False}))
    # BN running stats are buffers, not parameters, in both frameworks.
    assert sum(p.numel() for p in ref.parameters()) == PUBLISHED[name]


def test_registry_names_and_aliases() -> None:
    for depth in (11, 13, 16, 19):
        assert get_spec(f"vgg{depth}bn").name == f"vgg{depth}_bn"
    for name in ("vgg16", "vgg19_orig", "alexnet"):
        spec = get_spec(name)
        assert (spec.input_size, spec.num_classes, spec.normalization) == (224, 1000, "imagenet")
        assert spec.head == "classifier_6"
    cifar = get_spec("vgg16_bn_cifar")
    assert (cifar.input_size, cifar.num_classes, cifar.normalization) == (32, 10, "cifar_std")
    assert get_spec("cifar10_vgg16_bn") is cifar


def _conv_indices(name: str, size: int | None = None) -> list[int]:
    spec = get_spec(name)
    params = abstract_variables(spec, spec.create(10), size=size)["params"]
    return sorted(int(k.split("_")[1]) for k, v in params.items()
                  if k.startswith("features_") and "kernel" in v)


def test_torchvision_feature_indices() -> None:
    # hyperplane spec §5.3, verified there by enumerating torchvision's modules
    assert _conv_indices("vgg11", 32) == [0, 3, 6, 8, 11, 13, 16, 18]
    assert _conv_indices("vgg13", 32) == [0, 2, 5, 7, 10, 12, 15, 17, 20, 22]
    assert _conv_indices("vgg16", 32) == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert _conv_indices("vgg19", 32) == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30,
                                          32, 34]
    assert _conv_indices("vgg19_bn", 32) == [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40,
                                             43, 46, 49]
    assert _conv_indices("alexnet", 64) == [0, 3, 6, 8, 10]
    # SeaM spec §5.1: chenyaofo's CIFAR VGG16-BN
    cifar = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    assert _conv_indices("vgg16_bn_cifar") == cifar
    bns = [i for kind, i, _ in feature_layout(CONFIGS["vgg16"], True) if kind == "bn"]
    assert bns == [i + 1 for i in cifar]


def test_flatten_chw_permutation_is_torch_flatten() -> None:
    """The converter's row permutation turns torch's (C,H,W) flatten into our NHWC flatten."""
    rng = np.random.default_rng(0)
    c, h, w, o = 5, 3, 4, 7
    weight = rng.standard_normal((o, c * h * w)).astype(np.float32)  # torch Linear layout
    fmap = rng.standard_normal((2, c, h, w)).astype(np.float32)  # NCHW
    expected = fmap.reshape(2, -1) @ weight.T
    from jaxnets.converters.keymaps import KeyMap

    km = KeyMap(flatten_chw={"head.0": (c, h, w)})
    path, kernel = torch_key_to_flax("head.0.weight", weight, km)
    assert path == ("params", "head_0", "kernel")
    got = fmap.transpose(0, 2, 3, 1).reshape(2, -1) @ kernel
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    back = variables_to_state_dict({"params": {"head_0": {"kernel": kernel}}}, km)["head.0.weight"]
    np.testing.assert_array_equal(back, weight)


def test_vgg11_parity_at_32px_and_export_round_trip(tmp_path) -> None:
    """32 px: the 1×1 map is replicated to 7×7 and the 25088-row kernel is permuted."""
    ref = vgg(11)
    variables = check_logits_parity("vgg11", ref, tmp_path, size=32, batch=2)
    exported = variables_to_state_dict(variables, get_spec("vgg11").keymap)
    state = ref.state_dict()
    assert set(exported) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(exported[key], value.numpy(), err_msg=key)
    fresh = vgg(11, init=False)
    fresh.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in exported.items()},
                          strict=True)


@pytest.mark.slow
def test_vgg16_bn_parity_at_224(tmp_path) -> None:
    check_logits_parity("vgg16_bn", vgg(16, True), tmp_path, batch=1)


def test_alexnet_parity_at_224_and_other_sizes(tmp_path) -> None:
    ref = AlexNet()
    variables = check_logits_parity("alexnet", ref, tmp_path, batch=1)
    spec = get_spec("alexnet")
    module = spec.create()
    apply = jax.jit(lambda v, x: module.apply(v, x, train=False))
    rng = np.random.default_rng(1)
    # 160 px ends at a 4×4 map: torch's 6×6 bins overlap ([0,1), [0,2), [1,2), …);
    # 100 px ends at 2×2: each value is replicated into three bins.
    for size in (224, 160, 100):
        x = rng.standard_normal((1, size, size, 3)).astype(np.float32)
        expected = _torch_logits(ref, x)
        np.testing.assert_allclose(np.asarray(apply(variables, x)), expected, atol=1e-4, rtol=0,
                                   err_msg=f"{size} px")
        _assert_rel_close(apply(variables, x), expected)
    # the sown features are the input of the last Linear
    x = rng.standard_normal((1, 160, 160, 3)).astype(np.float32)
    logits, inter = jax.jit(
        lambda v, x: apply_with_intermediates(module, v, x, ("features",)))(variables, x)
    head = variables["params"]["classifier_6"]
    assert inter["features"].shape == (1, 4096)
    np.testing.assert_allclose(inter["features"] @ head["kernel"] + head["bias"], logits,
                               atol=1e-4, rtol=0)


def _torch_logits(ref: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _assert_rel_close(got: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    """Relative to the largest logit: these inits give logits ~1e-2, where atol 1e-4 is lax."""
    err = float(np.abs(np.asarray(got) - expected).max())
    assert err <= rel * float(np.abs(expected).max()), (err, float(np.abs(expected).max()))


def test_vgg16_bn_cifar_parity_features_and_dropout(tmp_path) -> None:
    ref = cifar_vgg16_bn(10)
    variables = check_logits_parity("vgg16_bn_cifar", ref, tmp_path, batch=2)
    module = get_spec("vgg16_bn_cifar").create()
    x = np.random.default_rng(2).standard_normal((2, 32, 32, 3)).astype(np.float32)
    logits, inter = jax.jit(
        lambda v, x: apply_with_intermediates(module, v, x, ("features",)))(variables, x)
    _assert_rel_close(logits, _torch_logits(ref, x))
    head = variables["params"]["classifier_6"]
    assert inter["features"].shape == (2, 512)
    np.testing.assert_allclose(inter["features"] @ head["kernel"] + head["bias"], logits,
                               atol=1e-4, rtol=0)
    # train mode: dropout (rng "dropout") is active, BN statistics are updated
    out, updates = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                                mutable=["batch_stats"])
    out2, _ = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)},
                           mutable=["batch_stats"])
    assert not np.allclose(out, out2)
    assert "features_1" in updates["batch_stats"]


def _std_ok(a: np.ndarray, want: float, tol: float = 0.05) -> bool:
    return abs(float(np.std(a)) / want - 1) < tol


def test_vgg19_orig_init_is_normal_001() -> None:
    spec = get_spec("vgg19_orig")
    # hidden=512 (same initialisers, 8× fewer random draws than 4096) keeps the test quick
    params = init_variables(spec, spec.create(10, hidden=512), seed=0, size=32)["params"]
    for path, leaf in flatten_tree(params).items():
        leaf = np.asarray(leaf)
        if path[-1] == "kernel":
            assert _std_ok(leaf, 0.01), (path, leaf.std())
            assert abs(leaf.mean()) < 0.002, path
        else:
            assert path[-1] == "bias" and not leaf.any(), path


def test_vgg_bn_init_matches_torchvision() -> None:
    spec = get_spec("vgg11_bn")
    variables = init_variables(spec, spec.create(10, hidden=512), seed=0, size=32)
    for path, leaf in flatten_tree(variables["params"]).items():
        leaf = np.asarray(leaf)
        if path[-1] == "kernel" and leaf.ndim == 4:
            k, _, _, o = leaf.shape[0], leaf.shape[1], leaf.shape[2], leaf.shape[3]
            want = np.sqrt(2.0 / (o * k * k))  # kaiming-normal, fan_out, relu
            assert _std_ok(leaf, want), (path, leaf.std(), want)
            # untruncated normal: jax's he_normal would cap |w| near 2 std
            assert np.abs(leaf).max() > 3 * want, path
        elif path[-1] == "kernel":
            assert _std_ok(leaf, 0.01), path
        elif path[-1] == "scale":
            np.testing.assert_array_equal(leaf, 1.0)
        else:
            assert path[-1] == "bias" and not leaf.any(), path
    assert all(not np.asarray(v).any() if k[-1] == "mean" else np.all(np.asarray(v) == 1)
               for k, v in flatten_tree(variables["batch_stats"]).items())


def test_alexnet_init_is_pytorch_default() -> None:
    spec = get_spec("alexnet")
    params = init_variables(spec, spec.create(10, hidden=512), seed=0, size=64)["params"]
    for name, layer in params.items():
        kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
        fan_in = int(np.prod(kernel.shape[:-1]))
        bound = fan_in ** -0.5
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound, name
        assert _std_ok(kernel, bound / np.sqrt(3)), name  # U(±b) has std b/√3
        assert np.abs(bias).max() > 0.5 * bound, name  # biases are drawn too, not zero


def test_vgg_keymap_is_the_family_keymap() -> None:
    for name in ("vgg11", "vgg19_bn", "vgg19_orig"):
        assert get_spec(name).keymap is VGG_KEYMAP
    assert get_spec("alexnet").keymap.flatten_chw == {"classifier.1": (256, 6, 6)}
    assert not get_spec("vgg16_bn_cifar").keymap.flatten_chw  # 1×1×512: nothing to permute
