"""lenet, mlp, mlp_bn, allconv4, digits_cnn: torch parity, parameter counts, initialisers."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from parity import check_logits_parity

torch = pytest.importorskip("torch")

from reference.torch_small import (  # noqa: E402
    AllConv4Ref,
    DigitsCNNRef,
    LeNetRef,
    MLPRef,
)

from jaxnets.models.api import (  # noqa: E402
    abstract_variables,
    apply_with_intermediates,
    count_params,
    init_variables,
)
from jaxnets.models.registry import get_spec  # noqa: E402


def _torch_count(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


REFS = {
    "lenet": LeNetRef,
    "mlp": lambda: MLPRef(bn=False),
    "mlp_bn": lambda: MLPRef(bn=True),
    "allconv4": AllConv4Ref,
    "digits_cnn": DigitsCNNRef,
}

# Hand-derived counts (weights + biases; BN scale/shift included, running stats not).
EXPECTED_COUNTS = {
    "lenet": 130_160,
    "mlp": 37_809_162,
    "mlp_bn": 37_809_162 + 4 * 2 * 4096,
    "allconv4": 1_147_978,
    "digits_cnn": 56_554,
}


def _parity_weights(ref: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Variance-preserving weights and non-zero biases, so logits stay O(1) and biases count.

    The hyperplane inits zero every bias (the bias mapping would go untested), and the MLP's
    fan_out init grows activations to ~100, where float32 summation noise alone exceeds 1e-4.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return ref


@pytest.mark.parametrize("name", sorted(REFS))
def test_param_count_matches_torch(name: str) -> None:
    spec = get_spec(name)
    got = count_params(abstract_variables(spec, spec.create()))
    assert got == _torch_count(REFS[name]()) == EXPECTED_COUNTS[name]


@pytest.mark.parametrize("name", ["lenet", "allconv4", "digits_cnn"])
def test_parity(name: str, tmp_path) -> None:
    check_logits_parity(name, _parity_weights(REFS[name]()), tmp_path, batch=2)


@pytest.mark.parametrize("name", ["mlp", "mlp_bn"])
def test_parity_mlp(name: str, tmp_path) -> None:
    # Full-size (38 M parameters); the first kernel's rows are permuted from torch's CHW flatten.
    check_logits_parity(name, _parity_weights(REFS[name]()), tmp_path, batch=2)


def test_lenet_mnist_single_channel(tmp_path) -> None:
    # 28 → 14 → 7 → 3: the adaptive pool is the identity; the first conv infers 1 channel.
    spec = dataclasses.replace(get_spec("lenet"), name="lenet_mnist", input_size=28,
                               in_channels=1)
    check_logits_parity(spec, _parity_weights(LeNetRef(in_channels=1), 1), tmp_path, batch=2)


def test_lenet_adaptive_pool_windows_overlap() -> None:
    # At 32 px the features end at 4×4 and the 3×3 pool averages [0,2), [1,3), [2,4).
    from jaxnets.models.layers import adaptive_avg_pool

    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    got = np.asarray(adaptive_avg_pool(x, 3))[0, :, :, 0]
    want = torch.nn.AdaptiveAvgPool2d(3)(torch.arange(16.0).reshape(1, 1, 4, 4))[0, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)


def _kernels(params: dict) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        key = "/".join(str(getattr(p, "key", p)) for p in path)
        out[key] = np.asarray(leaf)
    return out


def _fans(kernel: np.ndarray) -> tuple[int, int]:
    """PyTorch's fan_in/fan_out for an HWIO conv or (in, out) Dense kernel."""
    receptive = int(np.prod(kernel.shape[:-2])) if kernel.ndim == 4 else 1
    return kernel.shape[-2] * receptive, kernel.shape[-1] * receptive


def test_lenet_init_xavier_uniform_gain_sqrt2() -> None:
    spec = get_spec("lenet")
    leaves = _kernels(init_variables(spec, spec.create(), seed=3)["params"])
    checked = 0
    for key, w in leaves.items():
        if key.endswith("bias"):
            assert not w.any(), key
            continue
        fan_in, fan_out = _fans(w)
        bound = math.sqrt(12.0 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound + 1e-7, key
        if w.size >= 5000:  # enough samples for the uniform's std bound/√3 and its extent
            assert np.std(w) == pytest.approx(bound / math.sqrt(3), rel=0.05), key
            assert np.abs(w).max() > 0.98 * bound, key
            checked += 1
    assert checked >= 3
    # Same law as the torch reference's nn.init.xavier_uniform_(gain=√2).
    ref = LeNetRef()
    w_ref = ref.classifier[0].weight.detach().numpy()
    w_jax = leaves["classifier_0/kernel"]
    assert np.std(w_jax) == pytest.approx(np.std(w_ref), rel=0.05)


def test_mlp_init_kaiming_normal_fan_out() -> None:
    spec = get_spec("mlp_bn")
    variables = init_variables(spec, spec.create(), seed=5)
    leaves = _kernels(variables["params"])
    for key, w in leaves.items():
        if key.endswith("bias"):
            assert not w.any(), key
        elif key.endswith("kernel"):
            std = math.sqrt(2.0 / w.shape[-1])  # fan_out = out_features
            assert np.std(w) == pytest.approx(std, rel=0.02), key
            if w.size >= 1_000_000:
                # A plain (not truncated) normal reaches ≥ 4.5 σ among a million samples.
                assert np.abs(w).max() / std > 4.5, key
        elif key.endswith("scale"):
            assert (w == 1).all(), key
    ref = MLPRef(bn=False)
    assert float(ref.hidden2.fc1.weight.detach().std()) == pytest.approx(
        float(np.std(leaves["hidden2/fc1/kernel"])), rel=0.02)


def test_allconv4_init_torch_default() -> None:
    spec = get_spec("allconv4")
    leaves = _kernels(init_variables(spec, spec.create(), seed=2)["params"])
    for layer in ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2", "fc3"):
        w, b = leaves[f"{layer}/kernel"], leaves[f"{layer}/bias"]
        bound = 1.0 / math.sqrt(_fans(w)[0])
        assert np.abs(w).max() <= bound + 1e-7 and np.abs(b).max() <= bound + 1e-7, layer
        assert np.abs(b).max() > 0.5 * bound, layer  # biases are drawn, not zero


@pytest.mark.parametrize(
    "name, width",
    [("lenet", 84), ("mlp", 4096), ("allconv4", 256), ("digits_cnn", 64)],
)
def test_features_are_head_input(name: str, width: int) -> None:
    spec = get_spec(name)
    module = spec.create()
    variables = init_variables(spec, module)
    x = jnp.ones(spec.input_shape(2))
    logits, inter = apply_with_intermediates(module, variables, x, ["features"])
    assert inter["features"].shape == (2, width)
    head = variables["params"][spec.head]
    np.testing.assert_allclose(inter["features"] @ head["kernel"] + head["bias"], logits,
                               atol=1e-5)


def test_dropout_active_only_in_training() -> None:
    spec = get_spec("lenet")
    module = spec.create()
    variables = init_variables(spec, module)
    x = jnp.asarray(np.random.default_rng(0).standard_normal(spec.input_shape(4)), jnp.float32)
    a = module.apply(variables, x, train=False)
    b = module.apply(variables, x, train=False)
    np.testing.assert_array_equal(a, b)
    c = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(a, c)


def test_digits_cnn_trains_with_batch_stats() -> None:
    spec = get_spec("digits_cnn")
    assert spec.input_shape(1) == (1, 8, 8, 1) and spec.normalization == "digits"
    module = spec.create()
    variables = init_variables(spec, module)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 8, 8, 1)), jnp.float32)
    _, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
    new = updates["batch_stats"]["bn1"]["mean"]
    assert not np.allclose(new, variables["batch_stats"]["bn1"]["mean"])
