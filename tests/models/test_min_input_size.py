"""``ModelSpec.min_input_size`` by direct evaluation: at the minimum the features are finite and
depend on the input; one pixel less they are NaN, constant or impossible. ``fixed_input_size``:
initialised at the registry size, the model cannot run at another (issue 15)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.errors import ScopeParamShapeError

from jaxnets.models.api import apply_with_intermediates
from jaxnets.models.registry import all_specs, get_spec


def _features_work(name: str, size: int) -> bool:
    spec = get_spec(name)
    module = spec.create(10)
    shape = (2, size, size, spec.in_channels)
    try:
        variables = module.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                                jnp.zeros(shape), train=False)
        x = jax.random.normal(jax.random.key(1), shape)
        _, inter = apply_with_intermediates(module, variables, x, ("features",))
    except (ValueError, ZeroDivisionError, TypeError):  # no token / no feature at all
        return False
    f = np.asarray(inter["features"]).reshape(2, -1)
    return bool(f.size and np.isfinite(f).all() and np.abs(f[0] - f[1]).max() > 1e-6)


@pytest.mark.parametrize("name", ["alexnet", "vgg16_bn_cifar", "lenet", "allconv4", "digits_cnn", "mixer_tiny",
                                  pytest.param("vgg11", marks=pytest.mark.slow),
                                  pytest.param("densenet121", marks=pytest.mark.slow)])
def test_min_input_size_is_the_smallest_that_works(name: str) -> None:
    least = get_spec(name).min_input_size
    assert least is not None
    assert _features_work(name, least)
    assert not _features_work(name, least - 1)


def test_alexnet_minimum_is_63() -> None:
    assert get_spec("alexnet").min_input_size == 63  # torchvision layout: 63 → 15 → 7 → 3 → 1


@pytest.mark.parametrize("name", ["resnet20", "resnet18_cifar", "resnet18"])
def test_resnets_take_any_size(name: str) -> None:
    assert get_spec(name).min_input_size is None
    assert _features_work(name, 1)


def test_every_spec_fits_its_own_input_size() -> None:
    for spec in all_specs():
        assert spec.min_input_size is None or spec.min_input_size <= spec.input_size, spec.name


@pytest.mark.parametrize("name", ["mlp", "mixer_tiny", "allconv4", "vgg16_bn_cifar"])
def test_fixed_size_models_run_only_at_their_size(name: str) -> None:
    from jaxnets.models.api import init_variables

    spec = get_spec(name)
    assert spec.fixed_input_size
    module = spec.create(10)
    variables = init_variables(spec, module, 0)
    module.apply(variables, jnp.zeros(spec.input_shape(1)), train=False)
    with pytest.raises(ScopeParamShapeError):
        module.apply(variables, jnp.zeros(spec.input_shape(1, 2 * spec.input_size)), train=False)


def test_size_free_models_are_not_fixed() -> None:
    assert not any(get_spec(n).fixed_input_size for n in ("lenet", "alexnet", "vgg16", "resnet20", "digits_cnn"))
