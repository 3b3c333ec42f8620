"""Masks: apply_mask, the straight-through binariser (SeaM's clipped-gradient STE), patterns."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.transforms import masks


def _params() -> dict:
    return {"conv": {"kernel": jnp.arange(1.0, 7.0).reshape(1, 1, 2, 3)},
            "bn": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
            "fc": {"kernel": jnp.full((3, 2), 2.0), "bias": jnp.ones(2)}}


def test_ste_forward_and_clipped_backward():
    # specs/seam.md §2.3: upstream [5, -0.3, 2, -7] → score grads [1, -0.3, 1, -1].
    scores = jnp.array([3.0, -2.0, 0.0, 0.5])
    np.testing.assert_array_equal(masks.ste_binarize(scores), [1.0, 0.0, 0.0, 1.0])
    upstream = jnp.array([5.0, -0.3, 2.0, -7.0])
    grad = jax.grad(lambda s: jnp.sum(masks.ste_binarize(s) * upstream))(scores)
    np.testing.assert_allclose(grad, [1.0, -0.3, 1.0, -1.0], rtol=0, atol=1e-7)


def test_apply_mask_bool_float_none_and_subtree_none():
    params = _params()
    m = {"conv": {"kernel": np.array([True, False, True]).reshape(1, 1, 1, 3)},
         "bn": None, "fc": {"kernel": jnp.float32(0.5), "bias": None}}
    out = masks.apply_mask(params, m)
    np.testing.assert_array_equal(out["conv"]["kernel"].reshape(-1), [1, 0, 3, 4, 0, 6])
    assert out["bn"] is params["bn"]
    np.testing.assert_array_equal(out["fc"]["kernel"], np.ones((3, 2)))
    assert out["fc"]["bias"] is params["fc"]["bias"]
    assert masks.apply_mask(params, None) is params


def test_masked_params_gradient_reaches_scores():
    params = _params()
    pred = masks.kernel_owner_predicate(params, exclude="^fc/")
    scores = masks.scores_like(params, pred)
    assert scores["bn"]["scale"] is None and scores["fc"]["kernel"] is None
    assert scores["conv"]["kernel"].shape == (1, 1, 2, 3)
    assert masks.count_entries(scores) == 6
    # at init (scores 1.0) the masked network equals the original exactly
    same = masks.masked_params(params, scores)
    np.testing.assert_array_equal(same["conv"]["kernel"], params["conv"]["kernel"])

    def loss(s):
        p = masks.masked_params(params, s)
        return 10.0 * jnp.sum(p["conv"]["kernel"])  # dL/dm = 10 * w, clipped to 1

    g = jax.grad(loss)(scores)
    np.testing.assert_array_equal(g["conv"]["kernel"], np.ones((1, 1, 2, 3)))
    assert g["fc"]["kernel"] is None


def test_retention_uses_its_own_ste():
    scores = {"a": jnp.array([1.0, -1.0, 2.0, 0.0]), "b": None}
    assert float(masks.retention(scores)) == 0.5
    g = jax.grad(lambda s: masks.retention(s))(scores)
    np.testing.assert_allclose(g["a"], np.full(4, 0.25))
    assert int(masks.count_kept(scores)) == 2


def test_mask_from_patterns():
    params = _params()
    m = masks.mask_from_patterns(params, r"^fc/", value=False)
    assert m["conv"]["kernel"] is None and m["fc"]["kernel"].dtype == bool
    out = masks.apply_mask(params, m)
    assert float(jnp.abs(out["fc"]["kernel"]).sum()) == 0.0
    np.testing.assert_array_equal(out["conv"]["kernel"], params["conv"]["kernel"])
