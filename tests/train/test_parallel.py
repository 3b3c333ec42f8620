"""Data parallelism over a 1-D ("data",) mesh: 4 fake CPU devices equal 1 device (BN in train
mode, statistics over the global batch); bad device counts and batch sizes are clear errors."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from trainkit import NORM, host, make_state, random_batch

from jaxnets.errors import JaxnetsError
from jaxnets.train import (
    make_eval_step,
    make_mesh,
    make_train_step,
    maybe_initialize_distributed,
    replicate,
    shard_batch,
)

pytestmark = pytest.mark.multidevice


def _one_step(devices: int, steps: int = 1):
    mesh = make_mesh(devices)
    model, state = make_state(optax.sgd(0.1, momentum=0.9))
    step = make_train_step(model, normalize=NORM, mesh=mesh)
    state = replicate(mesh, state)
    for i in range(steps):
        images, labels, mask = random_batch(16, seed=i)
        state, metrics = step(state, images, labels, mask)
    return state, metrics


def test_four_devices_equal_one_device_with_bn_in_train_mode():
    assert len(jax.devices()) >= 4, "conftest sets jax_num_cpu_devices=4"
    s1, m1 = _one_step(1)
    s4, m4 = _one_step(4)
    leaf = jax.tree_util.tree_leaves(s4.params)[0]
    assert len(leaf.sharding.device_set) == 4 and leaf.sharding.is_fully_replicated
    for a, b in ((s1.params, s4.params), (s1.batch_stats, s4.batch_stats)):
        for x, y in zip(jax.tree_util.tree_leaves(host(a)), jax.tree_util.tree_leaves(host(b)),
                        strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(float(m1["loss"]), float(m4["loss"]), rtol=1e-5)
    assert int(m4["count"]) == 16


def test_bn_statistics_are_global_not_per_device():
    # Running means after one step equal those of a 1-device step on the full batch (above);
    # here check they differ from what per-device BN would give (a quarter of the batch).
    s4, _ = _one_step(4)
    model, state = make_state(optax.sgd(0.1, momentum=0.9))
    step = make_train_step(model, normalize=NORM)
    images, labels, mask = random_batch(16, seed=0)
    quarter, _ = step(state, images[:4], labels[:4], mask[:4])
    assert not np.allclose(np.asarray(quarter.batch_stats["bn1"]["mean"]),
                           np.asarray(s4.batch_stats["bn1"]["mean"]), rtol=1e-3)


def test_eval_step_on_four_devices():
    model, state = make_state()
    images, labels, mask = random_batch(16, seed=5)
    mask[13:] = False
    out1 = make_eval_step(model, normalize=NORM)(state, images, labels, mask)
    out4 = make_eval_step(model, normalize=NORM, mesh=make_mesh(4))(state, images, labels, mask)
    np.testing.assert_allclose(np.asarray(out1["logits"]), np.asarray(out4["logits"]),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out1["correct"]), np.asarray(out4["correct"]))


def test_batch_not_divisible_by_devices():
    mesh = make_mesh(4)
    model, state = make_state()
    step = make_train_step(model, normalize=NORM, mesh=mesh)
    images, labels, mask = random_batch(10)
    with pytest.raises(JaxnetsError, match=r"batch size 10 is not divisible by the 4 devices"):
        step(state, images, labels, mask)
    with pytest.raises(JaxnetsError, match="not divisible"):
        shard_batch(mesh, images)


def test_make_mesh_arguments():
    assert make_mesh("auto").devices.size == len(jax.devices())
    assert make_mesh(2).axis_names == ("data",)
    with pytest.raises(JaxnetsError, match="only 4"):
        make_mesh(64)
    with pytest.raises(JaxnetsError, match="positive integer or 'auto'"):
        make_mesh("many")
    with pytest.raises(JaxnetsError, match="at least 1"):
        make_mesh(0)


def test_distributed_wrapper_is_a_noop_without_coordinator():
    assert maybe_initialize_distributed() is False
    with pytest.raises(JaxnetsError, match="--num-processes"):
        maybe_initialize_distributed("localhost:1234")


def test_fit_on_four_devices_tracks_one_device():
    from trainkit import digits_loader

    from jaxnets.train import fit

    results = []
    for devices in (1, 4):
        model, state = make_state(optax.sgd(0.05, momentum=0.9))
        step = make_train_step(model, normalize=NORM, mesh=make_mesh(devices))
        results.append(fit(state, step, digits_loader(64), epochs=1, log_every=0))
    one, four = results
    assert four.state.params["fc"]["kernel"].sharding.is_fully_replicated
    np.testing.assert_allclose(one.history[0]["train_loss"], four.history[0]["train_loss"],
                               rtol=1e-4)
    for x, y in zip(jax.tree_util.tree_leaves(host(one.state)),
                    jax.tree_util.tree_leaves(host(four.state)), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)


def test_multihost_batch_slicing(monkeypatch) -> None:
    """With several processes every host holds the global batch and keeps its own slice."""
    import jax

    from jaxnets.train import parallel

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    monkeypatch.setattr(jax, "make_array_from_process_local_data", lambda sharding, local: local)
    (out,) = parallel.shard_batch(parallel.make_mesh(2), np.arange(8))
    np.testing.assert_array_equal(out, np.arange(4, 8))


def test_coordinator_needs_process_arguments() -> None:
    from jaxnets.errors import JaxnetsError
    from jaxnets.train.parallel import maybe_initialize_distributed

    assert maybe_initialize_distributed() is False
    with pytest.raises(JaxnetsError, match="--num-processes"):
        maybe_initialize_distributed("localhost:1234")
