"""Codebooks (WFN): a registered pytree, quantize, padding, jit without recompilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.transforms.codebook import Codebook, quantize


def _params() -> dict:
    return {"conv": {"kernel": jnp.array([[0.1, -0.26], [0.49, 0.9]])},
            "bn": {"scale": jnp.ones(2)}}


def _book(assign_conv, values=(0.0, -0.25, 0.5), k_max=8) -> Codebook:
    return Codebook.create(values, {"conv": {"kernel": np.array(assign_conv)}, "bn": None},
                           k_max=k_max)


def test_create_pads_and_marks_fixed():
    cb = _book([[-1, 1], [2, -1]], values=(-0.0, -0.25, 0.5))
    assert cb.k_max == 8 and cb.values.shape == (8,)
    assert np.all(np.isfinite(cb.values)) and cb.valid.tolist() == [True] * 3 + [False] * 5
    assert np.signbit(cb.values[0]) == np.False_  # -0.0 stored as +0.0
    np.testing.assert_array_equal(cb.fixed["conv"]["kernel"], [[False, True], [True, False]])
    assert cb.fixed["bn"] is None and cb.num_fixed() == 2 and cb.num_quantisable() == 4
    np.testing.assert_array_equal(cb.trainable_mask()["conv"]["kernel"],
                                  [[True, False], [False, True]])


def test_quantize_replaces_only_fixed_entries():
    p = _params()
    q = quantize(p, _book([[-1, 1], [2, -1]]))
    np.testing.assert_array_equal(q["conv"]["kernel"], np.float32([[0.1, -0.25], [0.5, 0.9]]))
    assert q["bn"]["scale"] is p["bn"]["scale"]
    g = jax.grad(lambda w: jnp.sum(quantize({"conv": {"kernel": w}, "bn": p["bn"]},
                                            _book([[-1, 1], [2, -1]]))["conv"]["kernel"]))(
        p["conv"]["kernel"])
    np.testing.assert_array_equal(g, [[1.0, 0.0], [0.0, 1.0]])


def test_codebook_is_a_pytree_and_changes_do_not_recompile():
    f = jax.jit(quantize)
    p = _params()
    a = f(p, _book([[-1, 1], [2, -1]]))
    b = f(p, _book([[0, 0], [-1, 2]], values=(0.3, 0.7, -0.9)))
    c = f(p, Codebook.create(np.linspace(-1, 1, 5), {"conv": {"kernel": np.full((2, 2), 4)},
                                                     "bn": None}, k_max=8))
    assert f._cache_size() == 1
    np.testing.assert_array_equal(b["conv"]["kernel"], np.float32([[0.3, 0.3], [0.49, -0.9]]))
    np.testing.assert_array_equal(c["conv"]["kernel"], np.ones((2, 2)))
    assert not np.array_equal(a["conv"]["kernel"], b["conv"]["kernel"])
    leaves = jax.tree_util.tree_leaves(_book([[-1, 1], [2, -1]]))
    assert len(leaves) == 4  # values, assign, fixed, valid (None leaves skipped)


def test_empty_and_bad_assignments():
    cb = Codebook.empty(_params(), r"kernel$", k_max=4)
    assert cb.num_fixed() == 0 and cb.assign["bn"]["scale"] is None
    np.testing.assert_array_equal(quantize(_params(), cb)["conv"]["kernel"],
                                  _params()["conv"]["kernel"])
    with pytest.raises(JaxnetsError, match="outside"):
        _book([[5, 0], [0, 0]])
    with pytest.raises(JaxnetsError, match="k_max"):
        Codebook.create(np.arange(5.0), {"w": np.zeros(2, int)}, k_max=3)
