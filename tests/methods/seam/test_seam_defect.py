"""SeaM spec §9 check 17: DIR on synthetic predictions; PGD stays in the eps-ball and the box."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.methods.seam import defect


def test_seam_dir_synthetic() -> None:
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    clean = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 0])  # 8 correct
    adv = np.array([0, 2, 2, 0, 4, 5, 1, 7, 8, 9])  # of the 8 correct, 3 flipped (1, 3, 6)
    out = defect.defect_inheritance_rate(clean, adv, labels)
    assert out["clean_correct"] == 8 and out["inherited"] == 3
    assert out["dir"] == pytest.approx(100 * 3 / 8)
    assert out["clean_top1"] == pytest.approx(80.0)


def test_seam_pgd_bounds_and_ascent() -> None:
    w = jax.random.normal(jax.random.key(0), (12, 6))

    def features(x: jax.Array) -> jax.Array:
        return jnp.tanh(x.reshape(x.shape[0], -1) @ w) * 3.0

    x = jnp.clip(jax.random.normal(jax.random.key(1), (4, 2, 2, 3)) * 1.5, -2.2, 2.2)
    eps = 0.1
    adv = defect.pgd_attack(features, x, jax.random.key(2), eps=eps, steps=40, step_size=0.01)
    assert float(jnp.max(jnp.abs(adv - x))) <= eps + 1e-6
    assert float(adv.min()) >= np.float32(-2.2) and float(adv.max()) <= np.float32(2.2)
    assert float(defect.feature_loss(features(adv))) > float(defect.feature_loss(features(x)))
    # zero steps = the random start, uniform in [−eps, eps] then clipped
    start = defect.pgd_attack(features, x, jax.random.key(2), eps=eps, steps=0)
    d = np.asarray(start - x)
    assert np.abs(d).max() <= eps + 1e-6 and np.abs(d).max() > eps / 2
