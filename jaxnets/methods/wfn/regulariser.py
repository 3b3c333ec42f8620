"""The WFN regulariser and the fine-tuning loss / optimiser (spec §2.6, §8.2).

L_reg is the mean, over the *free* quantisable entries, of Σ_k P_jk·D_jk with
P = softmin_k(D_jk + ε) at temperature T = 0.05, D the relative (or euclidean) distance to the
centres of the last clustering step. The loss is CE + λ·L_reg with λ = stop_gradient(ρ·CE/L_reg),
so the regulariser's value always equals ρ·CE and only its direction matters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnets.errors import JaxnetsError
from jaxnets.methods.wfn.candidates import ZERO_DISTANCE
from jaxnets.train.state import zero_frozen
from jaxnets.train.steps import cross_entropy
from jaxnets.transforms.codebook import Codebook

TEMPERATURE = 0.05
EPSILON = 1e-14
CLIP_NORM = 0.5


def _is_none(x: Any) -> bool:
    return x is None


def leaf_terms(w: jax.Array, free: jax.Array, values: jax.Array, valid: jax.Array, *,
               mode: str = "relative", gamma0: float = ZERO_DISTANCE,
               temperature: float = TEMPERATURE) -> tuple[jax.Array, jax.Array]:
    """(Σ_free r_j, number of free entries) for one leaf; r_j = Σ_k P_jk·D_jk."""
    x = w.reshape(-1, 1).astype(jnp.float32)
    v = values.reshape(1, -1).astype(jnp.float32)
    ok = valid.reshape(1, -1)
    dist = jnp.abs(x - v)
    if mode == "relative":
        mag = jnp.abs(x)
        big = mag > gamma0  # strict: |w| ≤ γ0 keeps absolute distances
        dist = jnp.where(big, dist / jnp.where(big, mag, 1.0), dist)  # the 1/|w| is differentiated
        dist = jnp.where(~big & (v == 0) & ok, 0.0, dist)  # the zero centre: constant 0
    elif mode != "euclidean":
        raise JaxnetsError(f"unknown calculation type {mode!r}")
    # Padded centres are masked out of the softmax with -inf logits (their values are finite,
    # so no NaN reaches the gradient); with no valid centre at all the term is ignored anyway.
    any_ok = jnp.any(ok)
    logits = jnp.where(ok | ~any_ok, -(dist + EPSILON) / temperature, -jnp.inf)
    prob = jax.nn.softmax(logits, axis=-1)
    r = jnp.sum(jnp.where(ok, prob * dist, 0.0), axis=-1)
    f = free.reshape(-1).astype(jnp.float32)
    return jnp.sum(f * r), jnp.sum(f)


def reg_loss(params: Any, codebook: Codebook, *, mode: str = "relative",
             gamma0: float = ZERO_DISTANCE, temperature: float = TEMPERATURE,
             remat: bool = True) -> jax.Array:
    """L_reg over every quantisable leaf (``codebook.fixed`` not None), free entries only."""
    fn = lambda w, fr, v, ok: leaf_terms(w, fr, v, ok, mode=mode, gamma0=gamma0,  # noqa: E731
                                         temperature=temperature)
    if remat:  # keep one leaf's (N_leaf × K) temporaries alive at a time (spec §8.2 memory note)
        fn = jax.checkpoint(fn)
    values = jnp.asarray(codebook.values, jnp.float32)
    valid = jnp.asarray(codebook.valid, bool)
    total, count = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)
    pairs = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map(lambda f, w: None if f is None else (w, f), codebook.fixed, params,
                               is_leaf=_is_none), is_leaf=lambda x: isinstance(x, tuple))
    for w, fixed in pairs:
        s, c = fn(w, jnp.logical_not(fixed), values, valid)
        total, count = total + s, count + c
    return total / jnp.maximum(count, 1.0)


def make_loss_fn(*, mode: str = "relative", gamma0: float = ZERO_DISTANCE,
                 temperature: float = TEMPERATURE) -> Callable[..., Any]:
    """``loss_fn(logits, labels, mask, params, args)`` for ``make_train_step``.

    ``args`` = ``{"codebook": Codebook, "rho": f32, "reg_on": bool}`` (traced: new centres,
    masks or ρ never recompile). λ = stop_gradient(ρ·CE/L_reg), 0 when off or L_reg < 1e-12.
    """

    def loss_fn(logits: jax.Array, labels: jax.Array, mask: jax.Array, params: Any,
                args: Any) -> tuple[jax.Array, dict]:
        ce = cross_entropy(logits, labels, mask)
        reg = reg_loss(params, args["codebook"], mode=mode, gamma0=gamma0,
                       temperature=temperature)
        on = jnp.logical_and(args["reg_on"], reg >= 1e-12)
        lam = jax.lax.stop_gradient(jnp.where(on, args["rho"] * ce / jnp.where(on, reg, 1.0), 0.0))
        return ce + lam * reg, {"ce": ce, "reg": reg, "reg_term": lam * reg}

    return loss_fn


def make_optimizer(name: str = "adam", lr: float = 2e-5, *, clip: float = CLIP_NORM,
                   weight_decay: float = 5e-4, momentum: float = 0.9
                   ) -> optax.GradientTransformation:
    """The faithful chain: clip(global norm, incl. fixed entries) → zero fixed gradients →
    Adam (or coupled weight decay + SGD with momentum). The update of fixed entries is then
    masked again after the optimiser by ``TrainState.apply_gradients`` (spec P12)."""
    name = name.lower()
    if name == "adam":
        opt = optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)
    elif name == "sgd":
        opt = optax.chain(optax.add_decayed_weights(weight_decay),
                          optax.sgd(lr, momentum=momentum or None))
    else:
        raise JaxnetsError(f"--optimizer must be adam or sgd, got {name!r}")
    parts = [optax.clip_by_global_norm(clip)] if clip and clip > 0 else []
    return optax.chain(*parts, zero_frozen(), opt)


def trainable_mask(state: Any, args: Any) -> Any:
    """The elementwise trainable tree (free = True) read from the traced codebook."""
    del state
    return args["codebook"].trainable_mask()


def wfn_args(codebook: Codebook, rho: float, reg_on: bool) -> dict:
    return {"codebook": codebook, "rho": jnp.asarray(rho, jnp.float32),
            "reg_on": jnp.asarray(bool(reg_on))}
