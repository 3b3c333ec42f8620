"""Defect inheritance (specs/seam.md §2.10, §3.5): PGD on the public pretrained feature extractor,
then the defect inheritance rate of the fine-tuned model.

PGD (advertorch ``LinfPGDAttack`` semantics, untargeted): random start uniform in [−eps, eps]
then clipped to [lo, hi]; 40 steps of sign-gradient *ascent* on
``−mean_batch[(f₀ − 1000)² + 0.1·mean_{j≥1} f_j²]``; after every step projection to the eps-ball
and clipping. All bounds are in normalised input space.
DIR = 100 · #(clean-correct ∧ adversarially wrong) / #(clean-correct).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def feature_loss(features: jax.Array) -> jax.Array:
    """The attack's objective (maximised): drives feature 0 to 1000 and the others to 0."""
    f0 = features[:, 0]
    rest = features[:, 1:]
    per = (f0 - 1000.0) ** 2 + 0.1 * jnp.mean(rest ** 2, axis=-1)
    return -jnp.mean(per)


def pgd_attack(feature_fn: Callable[[jax.Array], jax.Array], x: jax.Array, key: jax.Array, *,
               eps: float = 0.1, steps: int = 40, step_size: float = 0.01,
               clip: tuple[float, float] = (-2.2, 2.2)) -> jax.Array:
    lo, hi = clip
    delta = jax.random.uniform(key, x.shape, x.dtype, -eps, eps)
    x_adv = jnp.clip(x + delta, lo, hi)
    grad_fn = jax.grad(lambda z: feature_loss(feature_fn(z)))

    def body(_: int, z: jax.Array) -> jax.Array:
        z = z + step_size * jnp.sign(grad_fn(z))
        z = x + jnp.clip(z - x, -eps, eps)
        return jnp.clip(z, lo, hi)

    return jax.lax.fori_loop(0, steps, body, x_adv)


def defect_inheritance_rate(clean_pred: Any, adv_pred: Any, labels: Any) -> dict:
    clean_ok = np.asarray(clean_pred) == np.asarray(labels)
    adv_wrong = np.asarray(adv_pred) != np.asarray(labels)
    n_ok = int(clean_ok.sum())
    hit = int((clean_ok & adv_wrong).sum())
    return {"clean_top1": 100.0 * n_ok / max(len(clean_ok), 1),
            "dir": 100.0 * hit / n_ok if n_ok else float("nan"),
            "clean_correct": n_ok, "inherited": hit, "n": int(len(clean_ok))}
