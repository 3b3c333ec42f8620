"""Fixed weights stay bitwise frozen through WFN fine-tuning steps (spec §9.8): Adam and
SGD + weight decay, the faithful clip → mask → optimiser chain, on 1 and 2 fake devices."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxnets.data import DigitsSource, Loader
from jaxnets.methods.wfn.clustering import cluster
from jaxnets.methods.wfn.layout import Layout, creation_order
from jaxnets.methods.wfn.regulariser import make_loss_fn, make_optimizer, trainable_mask, wfn_args
from jaxnets.models.api import init_variables
from jaxnets.models.registry import NORMALIZATIONS, get_spec
from jaxnets.train import TrainState, make_train_step
from jaxnets.transforms.codebook import Codebook, quantize

NORM = NORMALIZATIONS["digits"]


def digits_model(seed: int = 0):
    spec = get_spec("digits_cnn")
    model = spec.create()
    return spec, model, init_variables(spec, model, seed=seed)


def digits_loader(batch_size: int = 64):
    return Loader(DigitsSource("train"), batch_size, shuffle=True, seed=0, prefetch=0)


def host(tree):
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def _fixed_state(bn_inc: bool):
    spec, model, variables = digits_model(0)
    layout = Layout(variables["params"], variables["batch_stats"], bn_inc=bn_inc,
                    order=creation_order(model, spec))
    w = layout.flatten(variables["params"])
    r = cluster(w, 0.6, 0.05)
    values = r.codebook
    assign = np.where(r.fixed, np.searchsorted(values, r.values), -1).astype(np.int32)
    params = layout.unflatten(np.where(r.fixed, r.values, w), variables["params"])
    cb = Codebook.create(values, layout.tree(assign, params), k_max=64)
    return model, layout, {**variables, "params": params}, cb, r.fixed


@pytest.mark.multidevice
@pytest.mark.parametrize("devices", [1, 2])
@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_fixed_entries_bitwise_frozen(opt, devices):
    model, layout, variables, cb, fixed = _fixed_state(bn_inc=True)
    mesh = None
    if devices > 1:
        from jaxnets.train.parallel import make_mesh

        mesh = make_mesh(devices)
    tx = make_optimizer(opt, 3e-3 if opt == "adam" else 0.05)
    state = TrainState.create(model, variables, tx, seed=0)
    step = make_train_step(model, make_loss_fn(), normalize=NORM, mesh=mesh,
                           trainable_mask=trainable_mask, mask_gradients=False)
    args = wfn_args(cb, 0.4, True)
    before = layout.flatten(host(state.params))
    for n, batch in enumerate(digits_loader(64).epoch(0), start=1):
        state, m = step(state, batch.images, batch.labels, batch.mask, args)
        if n == 8:  # a few steps are enough for Adam/momentum to try to move everything
            break
    assert np.isfinite(float(m["loss"]))
    assert float(m["reg_term"]) == pytest.approx(0.4 * float(m["ce"]), rel=1e-5)
    params = host(state.params)
    after = layout.flatten(params)
    np.testing.assert_array_equal(bits(before[fixed]), bits(after[fixed]))
    assert np.mean(before[~fixed] != after[~fixed]) > 0.5  # free entries do train
    # re-projecting onto the codebook is a no-op
    reproj = jax.device_get(quantize(params, cb))
    for a, b in zip(jax.tree_util.tree_leaves(reproj), jax.tree_util.tree_leaves(params), strict=True):
        np.testing.assert_array_equal(bits(a), bits(b))


def test_layout_round_trip_and_order():
    spec, model, variables = digits_model(0)
    layout = Layout.for_model(spec, model, variables, bn_inc=True)
    assert [e.torch_name for e in layout.entries][:4] == ["conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight"]
    assert layout.entries[0].torch_shape == (32, 1, 3, 3)
    w = layout.flatten(variables["params"])
    back = layout.unflatten(w, variables["params"])
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(variables["params"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # conv kernels flatten in PyTorch OIHW order
    k = np.asarray(variables["params"]["conv1"]["kernel"])
    np.testing.assert_array_equal(w[:k.size], k.transpose(3, 2, 0, 1).reshape(-1))
    no_bn = Layout.for_model(spec, model, variables, bn_inc=False)
    assert all(e.kind != "bn" for e in no_bn.entries) and no_bn.size < layout.size
