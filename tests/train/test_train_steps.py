"""Jitted train/eval steps: BN in train mode, donation, metrics on device, no recompilation
when a mask or codebook value changes, bf16 compute with float32 loss."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trainkit import NORM, host, make_state, random_batch

from jaxnets.errors import JaxnetsError
from jaxnets.train import TrainState, make_eval_step, make_train_step
from jaxnets.train.steps import normalize_images, resolve_precision
from jaxnets.transforms import Codebook, apply_mask, quantize


def test_step_updates_params_and_batch_stats():
    model, state = make_state(optax.sgd(0.1))
    before = host({"p": state.params, "b": state.batch_stats})
    step = make_train_step(model, normalize=NORM)
    images, labels, mask = random_batch(16)
    state, metrics = step(state, images, labels, mask)
    assert all(isinstance(v, jax.Array) for v in metrics.values())
    assert int(state.step) == 1 and int(metrics["count"]) == 16
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    after = host({"p": state.params, "b": state.batch_stats})
    assert not np.array_equal(before["p"]["conv1"]["kernel"], after["p"]["conv1"]["kernel"])
    assert not np.array_equal(before["b"]["bn1"]["mean"], after["b"]["bn1"]["mean"])


def test_state_is_donated_and_loss_decreases():
    model, state = make_state(optax.adam(1e-2))
    step = make_train_step(model, normalize=NORM)
    images, labels, mask = random_batch(32)
    old_kernel = state.params["conv1"]["kernel"]
    losses = []
    for _ in range(15):
        state, m = step(state, images, labels, mask)
        losses.append(float(m["loss"]))
    assert old_kernel.is_deleted()  # donated
    assert losses[-1] < 0.5 * losses[0]


def test_padding_mask_excludes_examples():
    model, state = make_state(optax.sgd(0.0))
    images, labels, mask = random_batch(16)
    mask[8:] = False
    ev = make_eval_step(model, normalize=NORM)
    out = ev(state, images, labels, mask)
    step = make_train_step(model, normalize=NORM, train_mode=False)
    _, m = step(state, images, labels, mask)
    assert int(m["count"]) == 8
    assert not np.any(np.asarray(out["correct"])[8:]) and not np.any(np.asarray(out["loss"])[8:])
    np.testing.assert_allclose(float(m["loss"]), np.asarray(out["loss"])[:8].mean(), rtol=1e-6)
    assert out["logits"].shape == (16, 10) and out["logits"].dtype == jnp.float32
    assert np.all(np.asarray(out["correct_topk"]) >= np.asarray(out["correct"]))


def _count_compiles(caplog, name: str = "train_step") -> int:
    return sum(f"Compiling jit({name})" in r.getMessage() for r in caplog.records)


def test_mask_change_does_not_recompile(caplog):
    model, state = make_state(optax.sgd(0.1))
    step = make_train_step(model, normalize=NORM, param_transform=apply_mask)
    images, labels, mask = random_batch(16)
    fc = state.params["fc"]["kernel"]

    def mask_tree(keep: float, seed: int) -> dict:
        rng = np.random.default_rng(seed)
        tree = jax.tree_util.tree_map(lambda _: None, state.params)
        tree["fc"] = {"kernel": (rng.random(fc.shape) < keep).astype(np.float32), "bias": None}
        return tree

    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        for i, keep in enumerate((1.0, 0.5, 0.1)):
            state, m = step(state, images, labels, mask, mask_tree(keep, i))
    assert step.jitted._cache_size() == 1
    assert _count_compiles(caplog) == 1


def test_codebook_change_does_not_recompile(caplog):
    model, state = make_state(optax.sgd(0.1))
    trainable = lambda s, cb: cb.trainable_mask()
    step = make_train_step(model, normalize=NORM, param_transform=quantize,
                           trainable_mask=trainable)
    images, labels, mask = random_batch(16)

    def book(values: list[float], frac: float, seed: int) -> Codebook:
        rng = np.random.default_rng(seed)
        assign = jax.tree_util.tree_map(lambda _: None, state.params)
        k = state.params["conv2"]["kernel"].shape
        assign["conv2"] = {"kernel": np.where(rng.random(k) < frac,
                                              rng.integers(0, len(values), k), -1)}
        return Codebook.create(values, assign, k_max=16)

    books = [book([0.0], 0.2, 0), book([0.0, 0.05, -0.05], 0.6, 1),
             book(list(np.linspace(-0.1, 0.1, 9)), 0.9, 2)]
    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        for cb in books:
            before = np.array(state.params["conv2"]["kernel"])
            state, _ = step(state, images, labels, mask, cb)
            after = np.asarray(state.params["conv2"]["kernel"])
            fixed = np.asarray(cb.fixed["conv2"]["kernel"])
            # fixed entries are frozen (bitwise); free ones train
            np.testing.assert_array_equal(after[fixed], before[fixed])
            assert np.mean(after[~fixed] != before[~fixed]) > 0.9
    assert step.jitted._cache_size() == 1
    assert _count_compiles(caplog) == 1


def test_bf16_compute_float32_loss_and_params():
    model, state = make_state(optax.sgd(0.05))
    step = make_train_step(model, normalize=NORM, precision="bf16")
    images, labels, mask = random_batch(16)
    state, m = step(state, images, labels, mask)
    assert m["loss"].dtype == jnp.float32 and np.isfinite(float(m["loss"]))
    assert state.params["conv1"]["kernel"].dtype == jnp.float32
    assert resolve_precision("auto") == "fp32"  # tests run on CPU
    with pytest.raises(JaxnetsError, match="unknown precision"):
        make_train_step(model, precision="fp8")


def test_normalize_matches_data_layer():
    from jaxnets.data.transforms import normalize

    images = random_batch(4, channels=3)[0]
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    # XLA may turn the divisions into multiplications: equal to float32 rounding, not bitwise.
    np.testing.assert_allclose(np.asarray(jax.jit(lambda x: normalize_images(
        x, (mean, std)))(images)), normalize(images, mean, std), rtol=1e-6, atol=1e-6)


def test_dropout_rng_follows_the_step():
    """Same state + same batch → same result; the key is folded with the step counter."""
    import flax.linen as nn

    class Drop(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Dense(10)(x.reshape(x.shape[0], -1))
            return nn.Dropout(0.5, deterministic=not train)(x)

    model = Drop()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    images, labels, mask = random_batch(8)
    step = make_train_step(model, normalize=NORM, donate=False)
    s0 = TrainState.create(model, variables, optax.sgd(0.1), seed=3)
    a, _ = step(s0, images, labels, mask)
    b, _ = step(s0, images, labels, mask)
    np.testing.assert_array_equal(a.params["Dense_0"]["kernel"], b.params["Dense_0"]["kernel"])
    c, _ = step(s0.replace(rng=jax.random.key_data(jax.random.key(4))), images, labels, mask)
    assert not np.array_equal(a.params["Dense_0"]["kernel"], c.params["Dense_0"]["kernel"])
