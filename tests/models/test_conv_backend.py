"""The conv implementation is a field of the model, chosen by backend (issue 16 item 7).

``conv_impl="auto"`` resolves when the model is built: the custom conv VJP ("fast") on CPU,
plain XLA convolutions ("xla") on GPU/TPU. The train step traced for each shows it: the custom
VJP's backward materialises its operands with a data-dependent while loop
(``layers._materialize``), plain autodiff has no loop at all.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.models import layers
from jaxnets.models.api import init_variables
from jaxnets.models.layers import CONV_IMPLS, resolve_conv_impl
from jaxnets.models.registry import NORMALIZATIONS, get_spec
from jaxnets.train.state import TrainState
from jaxnets.train.steps import make_eval_step, make_train_step

BATCH = 4


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(layers.CONV_IMPL_ENV, raising=False)


def _lowered_train_step(module, spec, precision: str = "fp32") -> str:
    """The project's jitted train step for ``module``, lowered (not compiled) to StableHLO."""
    variables = init_variables(spec, module, seed=0)
    state = TrainState.create(module, variables, optax.sgd(0.1, momentum=0.9), seed=0)
    step = make_train_step(module, normalize=NORMALIZATIONS[spec.normalization],
                           precision=precision, donate=False)
    size = spec.input_size
    images = jnp.zeros((BATCH, size, size, spec.in_channels), jnp.uint8)
    labels = jnp.zeros((BATCH,), jnp.int32)
    mask = jnp.ones((BATCH,), bool)
    return step.jitted.lower(state, images, labels, mask, None).as_text()


def _n_convs(variables: dict) -> int:
    leaves = jax.tree_util.tree_leaves_with_path(variables["params"])
    return sum(1 for path, leaf in leaves
               if jax.tree_util.keystr(path).endswith("['kernel']") and leaf.ndim == 4)


# --------------------------------------------------------------------------- resolve_conv_impl


@pytest.mark.parametrize(("backend", "impl"), [("cpu", "fast"), ("gpu", "xla"), ("cuda", "xla"),
                                               ("rocm", "xla"), ("tpu", "xla")])
def test_auto_resolves_by_backend(backend: str, impl: str) -> None:
    assert resolve_conv_impl("auto", backend=backend) == impl


def test_auto_defaults_to_the_current_backend() -> None:
    expected = "fast" if jax.default_backend() == "cpu" else "xla"
    assert resolve_conv_impl("auto") == expected


@pytest.mark.parametrize("impl", CONV_IMPLS)
def test_explicit_values_pass_on_any_backend(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for backend in ("cpu", "gpu", "tpu", None):
        assert resolve_conv_impl(impl, backend=backend) == impl
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "materialize")  # overrides "auto" only
    assert resolve_conv_impl(impl, backend="cpu") == impl


@pytest.mark.parametrize("bad", ["", "Fast", "cudnn", "default"])
def test_bad_value_names_the_allowed_ones(bad: str) -> None:
    with pytest.raises(JaxnetsError) as err:
        resolve_conv_impl(bad)
    assert repr(bad) in str(err.value)
    assert all(v in str(err.value) for v in ("auto", *CONV_IMPLS))
    with pytest.raises(JaxnetsError, match="unknown conv implementation"):
        get_spec("resnet20").create(conv_impl=bad)  # refused when the model is built


def test_env_override_of_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "xla")
    assert resolve_conv_impl("auto", backend="cpu") == "xla"
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "fast")
    assert resolve_conv_impl("auto", backend="gpu") == "fast"
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "")  # empty = unset
    assert resolve_conv_impl("auto", backend="gpu") == "xla"
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "auto")
    with pytest.raises(JaxnetsError, match="JAXNETS_CONV='auto'"):
        resolve_conv_impl("auto", backend="cpu")


# --------------------------------------------------------------------------- the model field


def test_models_hold_the_resolved_value() -> None:
    expected = resolve_conv_impl("auto")
    for name in ("resnet20", "resnet18", "vgg11_bn", "densenet121", "mixer_tiny", "lenet", "mlp",
                 "digits_cnn", "alexnet", "allconv4"):
        spec = get_spec(name)
        module = spec.create()
        assert (module.conv_impl, module.bn_impl) == (expected, "flax"), name
        assert spec.create(conv_impl="xla").conv_impl == "xla"
        # the bf16 clone the train step makes keeps the value
        assert module.clone(dtype=jnp.bfloat16).conv_impl == expected
    module = get_spec("resnet20").create(conv_impl="auto")
    assert module.conv_impl == expected and "auto" not in repr(module)


@pytest.mark.parametrize("name", ["resnet20", "digits_cnn"])
def test_train_step_for_cpu_uses_the_conv_vjp_and_for_gpu_none(name: str) -> None:
    """The ResNet-20 train step (``make_train_step``) traced with the conv impl resolved for
    backend "cpu" has one while loop per conv (the VJP's materialisation); forced to the "gpu"
    resolution through the model's field, it has none."""
    spec = get_spec(name)
    cpu = spec.create(conv_impl=resolve_conv_impl("auto", backend="cpu"))
    gpu = spec.create(conv_impl=resolve_conv_impl("auto", backend="gpu"))
    assert (cpu.conv_impl, gpu.conv_impl) == ("fast", "xla")
    n_convs = _n_convs(init_variables(spec, cpu))

    text_cpu = _lowered_train_step(cpu, spec)
    text_gpu = _lowered_train_step(gpu, spec)
    # every conv whose operands are large enough to leave the tiny-map path has its loop
    assert 0 < text_cpu.count("stablehlo.while") <= n_convs
    if name == "resnet20":
        assert text_cpu.count("stablehlo.while") == n_convs == 19
    assert "stablehlo.while" not in text_gpu
    assert "stablehlo.convolution" in text_gpu
    # bf16 compute (the GPU default precision) keeps the choice too
    assert "stablehlo.while" not in _lowered_train_step(gpu, spec, precision="bf16")


def test_choice_is_fixed_at_construction_not_at_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The env override is read when "auto" is resolved (model built), never while tracing."""
    spec = get_spec("digits_cnn")
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "fast")
    fast = spec.create()
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "xla")
    assert fast.conv_impl == "fast"
    assert "stablehlo.while" in _lowered_train_step(fast, spec)
    xla = spec.create()
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "fast")
    assert xla.conv_impl == "xla"
    assert "stablehlo.while" not in _lowered_train_step(xla, spec)


def test_fast_and_xla_steps_agree() -> None:
    """Same loss and (to float rounding) same update from the two implementations."""
    spec = get_spec("digits_cnn")
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (8, 8, 8, 1), np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, (8,), np.int32))
    out = {}
    for impl in ("fast", "xla"):
        module = spec.create(conv_impl=impl)
        variables = init_variables(spec, module, seed=1)
        state = TrainState.create(module, variables, optax.sgd(0.1), seed=0)
        step = make_train_step(module, normalize=NORMALIZATIONS[spec.normalization])
        out[impl] = step(state, images, labels)
    (s_f, m_f), (s_x, m_x) = out["fast"], out["xla"]
    assert abs(float(m_f["loss"]) - float(m_x["loss"])) <= 1e-6
    for a, b in zip(jax.tree_util.tree_leaves(s_f.params), jax.tree_util.tree_leaves(s_x.params),
                    strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_eval_step_is_plain_convolutions_either_way() -> None:
    """The custom VJP changes only the backward: the eval step has no loop with "fast"."""
    spec = get_spec("resnet20")
    module = spec.create(conv_impl="fast")
    variables = init_variables(spec, module)
    step = make_eval_step(module, normalize=NORMALIZATIONS[spec.normalization])
    images = jnp.zeros((BATCH, 32, 32, 3), jnp.uint8)
    text = step.jitted.lower(variables, images, jnp.zeros((BATCH,), jnp.int32),
                             jnp.ones((BATCH,), bool), None).as_text()
    assert "stablehlo.while" not in text and "stablehlo.convolution" in text


def test_config_json_records_the_conv_impl(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jaxnets.train.logging import library_versions, write_config

    path = write_config(tmp_path, {"model": "resnet20"})
    doc = json.loads(path.read_text())
    assert doc["versions"]["conv_impl"] == resolve_conv_impl("auto") == \
        get_spec("resnet20").create().conv_impl
    monkeypatch.setenv(layers.CONV_IMPL_ENV, "xla")
    assert library_versions()["conv_impl"] == "xla"
