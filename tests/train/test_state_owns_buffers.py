"""A TrainState owns its buffers: training (which donates the state) leaves the caller's variables
— a jaxnets.Model's, reused by the next method — alive and unchanged (jax >= 0.12 deletes donated
CPU arrays; running WFN for a second δ on the same model once failed with "Array has been deleted")."""

from __future__ import annotations

import jax
import numpy as np
import optax

from jaxnets.api import load, open_data
from jaxnets.train import TrainState, make_train_step


def test_training_leaves_the_models_variables_alive() -> None:
    data = open_data("digits", "train", limit=32)
    model = load("digits_cnn", data=data, seed=0)
    before = jax.tree_util.tree_map(np.array, model.variables)
    step = make_train_step(model.module, normalize=(model.mean, model.std))
    state = TrainState.create(model.module, model.variables, optax.sgd(0.1), seed=0)
    images, labels = data.arrays()
    for _ in range(2):
        state, _ = step(state, images, labels, np.ones(len(labels), bool))
    leaves = jax.tree_util.tree_leaves(model.variables)
    assert not any(leaf.is_deleted() for leaf in leaves if isinstance(leaf, jax.Array))
    for a, b in zip(jax.tree_util.tree_leaves(before), leaves, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert not np.array_equal(np.asarray(state.params["conv1"]["kernel"]),
                              np.asarray(model.variables["params"]["conv1"]["kernel"]))
