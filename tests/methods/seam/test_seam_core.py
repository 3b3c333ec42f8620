"""SeaM spec §9 checks 1–5, 12, 13, 15, 16: STE, identity at all-ones scores, retention, N,
extraction, file naming, mask-dict round trip."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.methods.seam import core, maskdict
from jaxnets.models.api import abstract_variables, init_variables
from jaxnets.models.registry import get_spec
from jaxnets.transforms import masks


def test_seam_ste_forward_and_backward() -> None:
    s = jnp.array([3.0, -2.0, 0.0, 0.5])
    np.testing.assert_array_equal(masks.ste_binarize(s), [1, 0, 0, 1])  # zero is dropped
    _, vjp = jax.vjp(masks.ste_binarize, s)
    (g,) = vjp(jnp.array([5.0, -0.3, 2.0, -7.0]))
    np.testing.assert_array_equal(g, np.array([1.0, -0.3, 1.0, -1.0], np.float32))
    # The backward pass does not depend on the score values.
    _, vjp2 = jax.vjp(masks.ste_binarize, jnp.array([-100.0, 100.0, 0.0, 7.0]))
    np.testing.assert_array_equal(vjp2(jnp.array([5.0, -0.3, 2.0, -7.0]))[0], g)


def test_seam_toy_retention_and_gradient() -> None:
    params = {"conv": {"kernel": jnp.ones((3, 3, 2, 4)), "bias": jnp.ones(4)},
              "bn": {"scale": jnp.ones(4), "bias": jnp.zeros(4)}}
    scores = core.init_scores(params)
    assert scores["bn"]["scale"] is None and scores["bn"]["bias"] is None
    k = -np.ones(72, np.float32)
    k[:18] = 2.0
    b = np.array([0.5, -1.0, -1.0, 0.0], np.float32)
    scores = {"conv": {"kernel": jnp.asarray(k.reshape(3, 3, 2, 4)), "bias": jnp.asarray(b)},
              "bn": {"scale": None, "bias": None}}
    assert core.num_entries(scores) == 76
    assert core.count_kept(scores) == 19
    assert float(masks.retention(scores)) == pytest.approx(0.25)
    alpha = 1.7
    grads = jax.grad(lambda s: alpha * masks.retention(s))(scores)
    for leaf in jax.tree_util.tree_leaves(grads):
        np.testing.assert_allclose(leaf, alpha / 76, rtol=1e-6)


@pytest.mark.parametrize("name,classes,size", [
    ("resnet20", 10, 32), ("resnet20_b", 100, 32), ("vgg16_bn_cifar", 10, 32), ("digits_cnn", 10, 8),
    ("mixer_tiny", 10, 32),
    pytest.param("resnet50", 1000, 32, marks=pytest.mark.slow),
    pytest.param("densenet121", 1000, 32, marks=pytest.mark.slow),
])
def test_seam_all_ones_scores_bit_identical(name: str, classes: int, size: int) -> None:
    spec = get_spec(name)
    module = spec.create(classes)
    variables = init_variables(spec, module, seed=1, size=size)
    if "batch_stats" in variables:  # non-trivial running statistics
        keys = iter(jax.random.split(jax.random.key(2), 1000))
        variables["batch_stats"] = jax.tree_util.tree_map(
            lambda a: a + 0.1 * jnp.abs(jax.random.normal(next(keys), a.shape)), variables["batch_stats"])
    scores = core.init_scores(variables["params"])
    x = jax.random.normal(jax.random.key(3), (2, size, size, spec.in_channels))
    bs = variables.get("batch_stats")
    ref = jax.jit(lambda p, x: core.apply_backbone(module, p, bs, x))(variables["params"], x)
    got = jax.jit(lambda p, s, x: core.masked_logits(module, p, bs, s, x))(variables["params"], scores, x)
    assert ref.shape == (2, classes)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


@pytest.mark.parametrize("name,classes,n,n_bias", [
    ("resnet20_b", 10, 270_906, 10), ("resnet20_b", 100, 276_756, 100),
    ("vgg16_bn_cifar", 10, 15_245_130, 5_258), ("vgg16_bn_cifar", 100, 15_291_300, 5_348),
    ("resnet50", 1000, 25_503_912, 1_000), ("mixer_b16", 1000, 59_842_072, 54_808),
    ("densenet121", 1000, 7_895_208, 1_000), ("mobilenet_v3_small", 1000, 2_530_744, 4_912),
])
def test_seam_mask_counts(name: str, classes: int, n: int, n_bias: int) -> None:
    spec = get_spec(name)
    variables = abstract_variables(spec, spec.create(classes))
    scores = core.init_scores(variables["params"])
    assert core.num_entries(scores) == n
    from jaxnets.transforms import names

    biases = sum(int(np.prod(v.shape)) for k, v in names.flatten(scores).items() if k.endswith("/bias"))
    assert biases == n_bias


def test_seam_mobilenet_v3_small_masked_layers() -> None:
    """The fork's MobileNetV3-small (spec §2.2): 54 masked layers — every conv incl. the depthwise
    ones and the squeeze-excitation 1×1 convs (whose biases are masked), and the 2 linears of the
    classifier; BN is not masked."""
    from jaxnets.transforms import names

    spec = get_spec("mobilenet_v3_small")
    variables = abstract_variables(spec, spec.create(1000))
    scores = core.init_scores(variables["params"])
    layers = core.masked_layers(scores)
    kernels = {n: tuple(v.shape) for n, v in names.flatten(variables["params"]).items() if n.endswith("/kernel")}
    assert len(layers) == 54 == len(kernels)
    linears = [n for n, shape in kernels.items() if len(shape) == 2]
    depthwise = [n for n, shape in kernels.items() if len(shape) == 4 and shape[2] == 1 and shape[3] > 1]
    assert len(linears) == 2 and len(depthwise) == 11  # one depthwise conv per inverted-residual block
    biased = [n.rsplit("/", 1)[0] for n in names.flatten(scores) if n.endswith("/bias")]
    assert len(biased) == 2 + 2 * 9  # the classifier's 2 linears and the 9 SE blocks' fc1/fc2
    assert not any("bn" in n.lower() or "batch" in n.lower() for n in names.flatten(scores))


def test_seam_defect_inheritance_resnet_counts_exclude_fc() -> None:
    for name, n in (("resnet18", 11_166_912), ("resnet50", 23_454_912)):
        spec = get_spec(name)
        variables = abstract_variables(spec, spec.create())
        assert core.num_entries(core.init_scores(variables["params"], exclude=r"^fc/")) == n


def test_seam_extraction_exact() -> None:
    spec = get_spec("resnet20_b")
    variables = init_variables(spec, spec.create(10), seed=0)
    params = variables["params"]
    scores = core.init_scores(params)
    rng = np.random.default_rng(5)
    scores = jax.tree_util.tree_map(lambda s: rng.uniform(-1, 1, s.shape).astype(np.float32), scores)
    scores["conv1"]["kernel"][0, 0, 0, 0] = 0.0  # exact zeros drop too (strict > 0)
    pruned = core.pruned_params(params, scores)
    from jaxnets.transforms import names

    fp, fs, fw = names.flatten(pruned), names.flatten(scores), names.flatten(params)
    nonzero = pre_zero = 0
    for k, w in fw.items():
        if k in fs:
            keep = np.asarray(fs[k]) > 0
            np.testing.assert_array_equal(np.asarray(fp[k])[~keep], 0.0)
            np.testing.assert_array_equal(np.asarray(fp[k])[keep], np.asarray(w)[keep])
            nonzero += int(np.count_nonzero(np.asarray(fp[k])))
            pre_zero += int(np.count_nonzero(keep & (np.asarray(w) == 0)))  # e.g. zero-init biases
        else:
            np.testing.assert_array_equal(np.asarray(fp[k]), np.asarray(w))  # BN untouched
    assert nonzero == core.count_kept(scores) - pre_zero


def test_seam_file_naming() -> None:
    assert maskdict.run_name(0.1, 0.05, 2.0) == "lr_head_mask_0.1_0.05_alpha_2.0"
    assert maskdict.run_name(0.1, 0.1, 1) == "lr_head_mask_0.1_0.1_alpha_1.0"
    assert maskdict.parse_run_name("lr_head_mask_0.1_0.05_alpha_1.pth") == (0.1, 0.05, 1.0)
    assert maskdict.parse_run_name("lr_head_mask_0.1_0.05_alpha_1.0.pth") == (0.1, 0.05, 1.0)
    assert maskdict.parse_run_name("runs/x/lr_head_mask_0.1_0.12_alpha_1.5") == (0.1, 0.12, 1.5)
    with pytest.raises(Exception, match="lr_head_mask"):
        maskdict.parse_run_name("model.pth")


def test_seam_mask_dict_round_trip_and_torch_extraction(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from jaxnets.converters.convert import variables_to_state_dict

    spec = get_spec("resnet20_b")
    module = spec.create(10)
    variables = init_variables(spec, module, seed=0)
    scores = core.init_scores(variables["params"])
    rng = np.random.default_rng(7)
    scores = jax.tree_util.tree_map(lambda s: rng.uniform(-1, 2, s.shape).astype(np.float32), scores)
    _, head = core.init_head(10, 2, seed=3)
    path = maskdict.export_mask_dict(tmp_path / "lr_head_mask_0.1_0.05_alpha_1.0.pth", scores, head, spec.keymap)
    loaded = torch.load(path, weights_only=True)
    assert "conv1.weight_mask" in loaded and "layer2.0.downsample.0.weight_mask" in loaded
    assert "fc.bias_mask" in loaded and tuple(loaded["module_head.1.weight"].shape) == (2, 10)
    assert tuple(loaded["conv1.weight_mask"].shape) == (16, 3, 3, 3)  # OIHW
    back, head_back = maskdict.import_mask_dict(path, core.init_scores(variables["params"]), spec.keymap)
    for a, b in zip(jax.tree_util.tree_leaves(scores), jax.tree_util.tree_leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    for a, b in zip(jax.tree_util.tree_leaves(head), jax.tree_util.tree_leaves(head_back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    # The original extraction in PyTorch terms: weight × (mask > 0) on the state_dict.
    state = variables_to_state_dict(variables, spec.keymap)
    for key in list(state):
        if f"{key}_mask" in loaded:
            state[key] = state[key] * (loaded[f"{key}_mask"].numpy() > 0)
    pruned_flax = core.pruned_params(variables["params"], scores)
    want = variables_to_state_dict({"params": pruned_flax, "batch_stats": variables["batch_stats"]}, spec.keymap)
    for key, value in want.items():
        np.testing.assert_array_equal(state[key], value)
