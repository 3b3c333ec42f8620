"""The WFN regulariser (spec §2.6, §9.7): values, gradients, λ, padding and the empty codebook."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.methods.wfn.regulariser import make_loss_fn, reg_loss, wfn_args
from jaxnets.transforms.codebook import Codebook

W = np.array([0.02, -0.01, 0.003, 0.05], np.float32)
CENTRES = np.array([-2 ** -6, 0, 2 ** -6, 2 ** -5, 2 ** -4], np.float32)
EXPECTED = {
    "relative": (0.264558196, [9.943102, 39.110458, -0.049767, -7.189527]),
    "euclidean": (0.021859206, [0.076899, -0.053251, 0.041209, 0.050813]),
}


def _setup(k_max=8, fixed=None):
    params = {"a": {"kernel": jnp.asarray(W)}, "b": {"scale": jnp.ones(3)}}
    assign = {"a": {"kernel": -np.ones(4, np.int32) if fixed is None else fixed}, "b": {"scale": None}}
    return params, Codebook.create(CENTRES, assign, k_max=k_max)


@pytest.mark.parametrize("mode", sorted(EXPECTED))
@pytest.mark.parametrize("k_max", [5, 8, 64])
def test_values_and_gradients(mode, k_max):
    params, cb = _setup(k_max)
    value, grads = jax.value_and_grad(lambda p: reg_loss(p, cb, mode=mode))(params)
    want, want_grad = EXPECTED[mode]
    assert float(value) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(np.asarray(grads["a"]["kernel"]), want_grad, rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(grads["b"]["scale"]) == 0)  # not quantised: untouched


def test_fixed_entries_leave_the_mean():
    # fixing entry 2 removes it from the mean: L = mean over the 3 free ones
    params, cb_all = _setup()
    _, cb = _setup(fixed=np.array([-1, -1, 2, -1], np.int32))
    r_all = float(reg_loss(params, cb_all, mode="euclidean"))
    one = jax.vmap(lambda x: reg_loss({"a": {"kernel": x[None]}, "b": params["b"]},
                                      _setup(fixed=None)[1].replace(
                                          assign={"a": {"kernel": -np.ones(1, np.int32)}, "b": {"scale": None}},
                                          fixed={"a": {"kernel": np.zeros(1, bool)}, "b": {"scale": None}}),
                                      mode="euclidean"))(jnp.asarray(W))
    assert r_all == pytest.approx(float(one.mean()), rel=1e-6)
    assert float(reg_loss(params, cb, mode="euclidean")) == pytest.approx(
        float(one[jnp.array([0, 1, 3])].mean()), rel=1e-6)


def test_lambda_makes_reg_term_equal_rho_ce():
    params, cb = _setup()
    loss_fn = make_loss_fn(mode="relative")
    logits = jnp.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    labels = jnp.array([0, 2])
    mask = jnp.ones(2, bool)
    loss, aux = loss_fn(logits, labels, mask, params, wfn_args(cb, 0.4, True))
    assert float(aux["reg_term"]) == pytest.approx(0.4 * float(aux["ce"]), rel=1e-6)
    assert float(loss) == pytest.approx(1.4 * float(aux["ce"]), rel=1e-6)
    # the gradient of the reg term is ρ·CE/L_reg·∇L_reg (λ is a constant)
    g = jax.grad(lambda p: loss_fn(logits, labels, mask, p, wfn_args(cb, 0.4, True))[0])(params)
    g_reg = jax.grad(lambda p: reg_loss(p, cb))(params)
    lam = 0.4 * float(aux["ce"]) / float(aux["reg"])
    np.testing.assert_allclose(g["a"]["kernel"], lam * g_reg["a"]["kernel"], rtol=1e-5)
    off, _ = loss_fn(logits, labels, mask, params, wfn_args(cb, 0.4, False))
    assert float(off) == pytest.approx(float(aux["ce"]))


def test_empty_codebook_is_finite():
    params = {"a": {"kernel": jnp.asarray(W)}}
    cb = Codebook.empty(params, lambda n, _: True, k_max=8)
    loss_fn = make_loss_fn()
    f = lambda p: loss_fn(jnp.zeros((1, 3)), jnp.array([1]), jnp.ones(1, bool), p,  # noqa: E731
                          wfn_args(cb, 0.4, False))[0]
    value, grads = jax.value_and_grad(f)(params)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grads["a"]["kernel"])))
