"""torchvision ResNet family + the CIFAR ResNet-18: counts, logit parity, names, export."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxnets.converters.convert import flatten_tree, variables_to_state_dict  # noqa: E402
from parity import bound_logits, check_logits_parity, randomize_bn_stats  # noqa: E402
from reference.torch_resnet import ARCH_NAMES, torch_resnet  # noqa: E402

from jaxnets.models.api import (  # noqa: E402
    abstract_variables,
    apply_with_intermediates,
    count_params,
    init_variables,
    intermediate_names,
    load_weights,
)
from jaxnets.models.registry import get_spec  # noqa: E402

# torchvision's published parameter counts (ImageNet, 1000 classes).
PUBLISHED = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
# ResNet-18 with the 3×3 stem and a 512→10 head: 11,689,512 − 9,408 + 1,728 − 513,000 + 5,130.
CIFAR18_PARAMS = 11_173_962


def _reference(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch_resnet(name)


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_imagenet_specs(name: str) -> None:
    spec = get_spec(name)
    assert (spec.family, spec.input_size, spec.num_classes) == ("resnet", 224, 1000)
    assert (spec.normalization, spec.head, spec.features) == ("imagenet", "fc", "features")


def test_cifar_spec() -> None:
    spec = get_spec("resnet18_cifar")
    assert (spec.family, spec.input_size, spec.num_classes) == ("resnet", 32, 10)
    assert (spec.normalization, spec.head) == ("cifar_std", "fc")
    assert get_spec("cifar10_resnet18") is spec
    assert spec.create().stem == "cifar"


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_param_count_matches_torchvision(name: str) -> None:
    spec = get_spec(name)
    assert count_params(abstract_variables(spec, spec.create())) == PUBLISHED[name]


def test_param_count_cifar() -> None:
    spec = get_spec("resnet18_cifar")
    assert count_params(abstract_variables(spec, spec.create())) == CIFAR18_PARAMS


@pytest.mark.parametrize("name", ARCH_NAMES)
def test_reference_param_count(name: str) -> None:
    # Built on the meta device: shapes only, no memory, no init cost.
    with torch.device("meta"):
        ref = torch_resnet(name)
    expected = CIFAR18_PARAMS if name == "resnet18_cifar" else PUBLISHED[name]
    assert sum(p.numel() for p in ref.parameters()) == expected


def test_batch_stats_mirror_torch_buffers() -> None:
    spec = get_spec("resnet50")
    variables = abstract_variables(spec, spec.create())
    n_stats = sum(np.size(x) for x in jax.tree_util.tree_leaves(variables["batch_stats"]))
    with torch.device("meta"):
        ref = torch_resnet("resnet50")
    n_buffers = sum(b.numel() for k, b in ref.named_buffers() if "num_batches" not in k)
    assert n_stats == n_buffers


# ----------------------------------------------------------------------------- logit parity

PARITY = [
    ("resnet18", 224, 1),
    ("resnet50", 224, 1),
    ("resnext50_32x4d", 64, 1),  # smaller input: same weights, less CPU time
    ("wide_resnet50_2", 64, 1),
    ("resnet18_cifar", 32, 2),
]


@pytest.mark.parametrize(("name", "size", "batch"), PARITY, ids=[p[0] for p in PARITY])
def test_logits_parity(name: str, size: int, batch: int, tmp_path: Path) -> None:
    ref = _reference(name)
    bound_logits(ref, (batch, 3, size, size))
    check_logits_parity(name, ref, tmp_path, size=size, batch=batch)


def test_parity_other_num_classes(tmp_path: Path) -> None:
    torch.manual_seed(1)
    ref = torch_resnet("resnet18_cifar", num_classes=100)
    check_logits_parity("resnet18_cifar", ref, tmp_path, num_classes=100, batch=2)


# ----------------------------------------------------------------------------- checkpoint names


def test_reference_keys_are_torchvision_names() -> None:
    with torch.device("meta"):
        keys = list(torch_resnet("resnet50").state_dict())
    assert len(keys) == 320  # torchvision resnet50: 161 parameters + 53 BNs × 3 buffers
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                        "bn1.running_var", "bn1.num_batches_tracked"]
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    for key in ("layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
                "layer2.0.conv2.weight", "layer3.5.bn3.bias", "layer4.2.conv3.weight"):
        assert key in keys
    assert not any("downsample" in k for k in keys if k.startswith(("layer1.1", "layer2.1")))
    with torch.device("meta"):
        assert len(torch_resnet("resnet18").state_dict()) == 122  # torchvision resnet18


def test_wrapped_dataparallel_checkpoint_loads(tmp_path: Path) -> None:
    spec = get_spec("resnet50")
    module = spec.create()
    ref = _reference("resnet50")
    randomize_bn_stats(ref, 0)
    state = ref.state_dict()
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 90},
               tmp_path / "wrapped.pth.tar")
    plain = flatten_tree(load_weights(spec, module, tmp_path / "plain.pth"))
    wrapped = flatten_tree(load_weights(spec, module, tmp_path / "wrapped.pth.tar"))
    assert plain.keys() == wrapped.keys()
    for path, value in plain.items():
        np.testing.assert_array_equal(np.asarray(wrapped[path]), np.asarray(value), err_msg=str(path))
    kernel = plain[("params", "layer1_0", "downsample_0", "kernel")]
    assert kernel.shape == (1, 1, 64, 256)
    np.testing.assert_array_equal(
        np.asarray(kernel), state["layer1.0.downsample.0.weight"].numpy().transpose(2, 3, 1, 0))


# ----------------------------------------------------------------------------- intermediates

# The Sparsity Probe's hooked modules (spec §2.1): raw conv outputs before BN, and avgpool.
PROBE_LAYERS = {
    "layer1_0/conv1": "layer1.0.conv1",
    "layer1_0/conv2": "layer1.0.conv2",
    "layer2_0/conv1": "layer2.0.conv1",
    "layer2_0/conv2": "layer2.0.conv2",
    "layer3_0/conv1": "layer3.0.conv1",
    "layer3_0/conv2": "layer3.0.conv2",
    "features": "avgpool",
}


def test_intermediate_shapes_cifar() -> None:
    spec = get_spec("resnet18_cifar")
    module = spec.create()
    variables = init_variables(spec, module)
    x = jnp.zeros(spec.input_shape(3))
    wanted = ["features", "layer4_1", "layer1_0/conv1"]
    logits, inter = jax.jit(lambda v, x: apply_with_intermediates(module, v, x, wanted))(
        variables, x)
    assert logits.shape == (3, 10)
    assert inter["features"].shape == (3, 512)
    assert inter["layer4_1"].shape == (3, 2, 2, 512)
    assert inter["layer1_0/conv1"].shape == (3, 16, 16, 64)
    names = intermediate_names(spec, module)
    for name in ("features", "conv1", "bn1", "layer1_0/conv1", "layer2_0/downsample_0",
                 "layer4_1", "fc"):
        assert name in names


def test_probe_layers_match_torch_hooks(tmp_path: Path) -> None:
    """The 7 tensors the Sparsity Probe reads, NCHW-flattened, equal PyTorch's hooks ≤ 1e-4."""
    spec = get_spec("resnet18_cifar")
    module = spec.create()
    ref = _reference("resnet18_cifar")
    variables = check_logits_parity("resnet18_cifar", ref, tmp_path, batch=2)
    captured: dict[str, np.ndarray] = {}
    handles = [
        ref.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, key=key: captured.__setitem__(key, out.detach().numpy()))
        for key, path in PROBE_LAYERS.items()
    ]
    x = np.random.default_rng(3).standard_normal((2, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
    for h in handles:
        h.remove()
    _, inter = jax.jit(lambda v, x: apply_with_intermediates(module, v, x, list(PROBE_LAYERS)))(
        variables, x)
    for key, got in inter.items():
        got = np.asarray(got)
        if got.ndim == 4:
            got = got.transpose(0, 3, 1, 2)
        want = captured[key].reshape(got.shape)
        np.testing.assert_allclose(got.reshape(2, -1), want.reshape(2, -1), atol=1e-4, rtol=0,
                                   err_msg=key)


# ----------------------------------------------------------------------------- export


def test_export_roundtrip_resnet18(tmp_path: Path) -> None:
    spec = get_spec("resnet18")
    ref = _reference("resnet18")
    bound_logits(ref, (1, 3, 224, 224))
    variables = check_logits_parity("resnet18", ref, tmp_path, size=224, batch=1)
    exported = variables_to_state_dict(variables, spec.keymap)
    want = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = {k: v for k, v in exported.items() if not k.endswith("num_batches_tracked")}
    assert set(got) == set(want)
    for key, value in want.items():
        np.testing.assert_array_equal(got[key], value.numpy(), err_msg=key)

    fresh = _reference("resnet18", seed=7)
    fresh.load_state_dict({k: torch.tensor(v) for k, v in exported.items()}, strict=True)
    fresh.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(x).numpy(), ref(x).numpy())


# ----------------------------------------------------------------------------- misc


def test_train_mode_updates_batch_stats() -> None:
    spec = get_spec("resnet18_cifar")
    module = spec.create()
    variables = init_variables(spec, module)
    x = jax.random.normal(jax.random.key(0), spec.input_shape(4))
    logits, updates = jax.jit(
        lambda v, x: module.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
    assert logits.shape == (4, 10)
    old = variables["batch_stats"]["layer2_0"]["downsample_1"]["mean"]
    new = updates["batch_stats"]["layer2_0"]["downsample_1"]["mean"]
    assert new.shape == old.shape == (128,)
    assert not np.allclose(np.asarray(new), np.asarray(old))


def test_bfloat16_compute_keeps_float32_params() -> None:
    spec = get_spec("resnet18_cifar")
    module = spec.create(dtype=jnp.bfloat16)
    variables = init_variables(spec, module)
    assert {x.dtype for x in jax.tree_util.tree_leaves(variables)} == {jnp.dtype(jnp.float32)}
    out = jax.jit(module.apply)(variables, jnp.ones(spec.input_shape(1)))
    assert out.dtype == jnp.bfloat16


def test_basic_block_rejects_groups() -> None:
    from jaxnets.models.resnet import ResNet

    module = ResNet("basic", (1, 1, 1, 1), num_classes=10, groups=2, stem="cifar")
    with pytest.raises(ValueError, match="groups"):
        jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
