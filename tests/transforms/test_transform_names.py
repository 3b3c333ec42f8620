"""Slash-joined name helpers over variable trees."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.transforms import names


def _variables() -> dict:
    return {
        "params": {
            "conv1": {"kernel": np.ones((3, 3, 1, 4))},
            "bn1": {"scale": np.ones(4), "bias": np.zeros(4)},
            "layer1_0": {"conv1": {"kernel": np.ones((3, 3, 4, 4))}},
            "fc": {"kernel": np.ones((4, 10)), "bias": np.zeros(10)},
        },
        "batch_stats": {"bn1": {"mean": np.zeros(4), "var": np.ones(4)}},
    }


def test_flatten_names_and_order():
    flat = names.flatten(_variables())
    assert list(flat)[:4] == ["params/conv1/kernel", "params/bn1/scale", "params/bn1/bias",
                              "params/layer1_0/conv1/kernel"]
    assert "batch_stats/bn1/var" in flat
    assert names.unflatten(flat)["params"]["layer1_0"]["conv1"]["kernel"].shape == (3, 3, 4, 4)


def test_flatten_non_dict_nodes_and_none():
    state = optax.adam(1e-3).init({"w": jnp.ones(2)})
    flat = names.flatten(state)
    assert any(n.endswith("mu/w") for n in flat) and any(n.endswith("nu/w") for n in flat)
    tree = {"a": None, "b": {"c": np.zeros(1)}}
    assert list(names.flatten(tree)) == ["b/c"]
    assert list(names.flatten(tree, keep_none=True)) == ["a", "b/c"]


def test_select_regex_search_and_anchor():
    params = _variables()["params"]
    assert names.select(params, "conv1") == ["conv1/kernel", "layer1_0/conv1/kernel"]
    assert names.select(params, "^conv1/") == ["conv1/kernel"]
    assert names.select(params, ["fc/bias$", "bn1/scale"]) == ["bn1/scale", "fc/bias"]
    with pytest.raises(JaxnetsError, match="invalid layer pattern"):
        names.select(params, "(")


def test_tree_from_predicate_and_patterns():
    params = _variables()["params"]
    tree = names.tree_from_patterns(params, r"kernel$", lambda w: np.zeros(np.shape(w)), None)
    assert tree["bn1"]["scale"] is None and tree["fc"]["bias"] is None
    assert tree["fc"]["kernel"].shape == (4, 10)
    labels = names.tree_from_predicate(params, lambda n, w: np.ndim(w) == 4, True, False)
    assert labels["conv1"]["kernel"] is True and labels["fc"]["kernel"] is False


def test_get_set_subtree():
    params = _variables()["params"]
    new = names.set_subtree(params, "layer1_0/conv1/kernel", "x")
    assert new["layer1_0"]["conv1"]["kernel"] == "x"
    assert params["layer1_0"]["conv1"]["kernel"] is not "x"  # noqa: F632 - original untouched
    assert new["fc"] is params["fc"]  # untouched parts shared
    with pytest.raises(KeyError, match="no 'conv9' under layer1_0"):
        names.get_subtree(params, "layer1_0/conv9")
