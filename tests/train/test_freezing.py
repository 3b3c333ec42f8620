"""Frozen entries stay bitwise unchanged through an epoch of Adam and of SGD with momentum and
weight decay — whole leaves (name patterns) and single entries (elementwise masks)."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from trainkit import NORM, bits, digits_loader, host, make_state

from jaxnets.train import make_train_step, trainable_from_mask, trainable_from_patterns, zero_frozen
from jaxnets.train.state import count_trainable
from jaxnets.transforms import names

OPTIMIZERS = {
    "adam": lambda: optax.adam(1e-2),
    "sgd_momentum_wd": lambda: optax.chain(optax.add_decayed_weights(5e-4),
                                           optax.sgd(0.05, momentum=0.9)),
}


def _epoch(state, step, transform_args=None):
    for batch in digits_loader(64).epoch(0):
        state, m = step(state, batch.images, batch.labels, batch.mask, transform_args)
    assert np.isfinite(float(m["loss"]))
    return state


def _with_negative_zero(state):
    # A -0.0 in a frozen entry must survive (p + 0.0 would turn it into +0.0).
    params = jax.tree_util.tree_map(np.array, state.params)
    params["conv1"]["kernel"].reshape(-1)[0] = -0.0
    params["fc"]["bias"][0] = -0.0
    return state.replace(params=jax.tree_util.tree_map(jax.numpy.asarray, params))


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_leaf_level_freezing_by_patterns(opt):
    model, state = make_state(OPTIMIZERS[opt]())
    state = _with_negative_zero(state)
    trainable = trainable_from_patterns(state.params, frozen=[r"^conv1/", r"^bn1/", r"^fc/bias"])
    assert trainable["conv1"]["kernel"] is False and trainable["conv2"]["kernel"] is True
    before = host(state.params)
    step = make_train_step(model, normalize=NORM, trainable_mask=trainable)
    after = host(_epoch(state, step).params)
    for name, x in names.flatten(before).items():
        y = names.flatten(after)[name]
        frozen = name.startswith(("conv1/", "bn1/", "fc/bias"))
        if frozen:
            np.testing.assert_array_equal(bits(x), bits(y), err_msg=name)
        else:
            assert np.mean(x != y) > 0.5, name


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_elementwise_freezing(opt):
    model, state = make_state(OPTIMIZERS[opt]())
    state = _with_negative_zero(state)
    rng = np.random.default_rng(0)
    fixed = jax.tree_util.tree_map(lambda _: None, state.params)
    for layer in ("conv1", "conv2", "fc"):
        fixed[layer] = {**fixed[layer],
                        "kernel": rng.random(state.params[layer]["kernel"].shape) < 0.5}
    fixed["fc"]["kernel"].reshape(-1)[0] = True
    fixed["conv1"]["kernel"].reshape(-1)[0] = True  # the -0.0 entry
    trainable = trainable_from_mask(fixed)
    # a traced mask (argument of the step), as WFN's changing masks need
    step = make_train_step(model, normalize=NORM, trainable_mask=lambda s, t: t)
    before = host(state.params)
    after = host(_epoch(state, step, trainable).params)
    for layer in ("conv1", "conv2", "fc"):
        f = fixed[layer]["kernel"]
        x, y = before[layer]["kernel"], after[layer]["kernel"]
        np.testing.assert_array_equal(bits(x[f]), bits(y[f]), err_msg=layer)
        assert np.mean(x[~f] != y[~f]) > 0.5
    assert np.mean(before["conv3"]["kernel"] != after["conv3"]["kernel"]) > 0.5
    n_all = count_trainable(state.params, None)
    assert count_trainable(state.params, trainable) == n_all - sum(
        int(fixed[k]["kernel"].sum()) for k in ("conv1", "conv2", "fc"))


def test_wfn_order_clip_then_mask_inside_the_chain():
    """specs/weight-fixing-networks.md §8.2: clip (over all grads) → zero fixed → Adam."""
    tx = optax.chain(optax.clip_by_global_norm(0.5), zero_frozen(), optax.adam(1e-2))
    model, state = make_state(tx)
    fixed = jax.tree_util.tree_map(lambda _: None, state.params)
    fixed["conv2"] = {"kernel": np.random.default_rng(1).random(
        state.params["conv2"]["kernel"].shape) < 0.7}
    step = make_train_step(model, normalize=NORM, trainable_mask=lambda s, t: t,
                           mask_gradients=False)
    before = host(state.params)
    after = host(_epoch(state, step, trainable_from_mask(fixed)).params)
    f = fixed["conv2"]["kernel"]
    np.testing.assert_array_equal(bits(before["conv2"]["kernel"][f]),
                                  bits(after["conv2"]["kernel"][f]))
    assert np.mean(before["conv2"]["kernel"][~f] != after["conv2"]["kernel"][~f]) > 0.5
