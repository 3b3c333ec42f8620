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


def test_seam_pgd_on_a_linear_feature_map_by_hand() -> None:
    """Features f = x·W with W[:, 1] = 0: the loss −[(f₀ − 1000)² + 0.1·f₁²] has the input
    gradient 2(1000 − f₀)·W[:, 0] (f₀ ≪ 1000), so every step moves each pixel by step_size ·
    sign(W[i, 0]) and the projection keeps it within eps of x: after k steps the perturbation is
    clip(start + k·step·sign(w), −eps, eps) per pixel (pixels with w = 0 keep their random start)."""
    w0 = np.array([0.5, -2.0, 0.0, 1.0, -0.25, 0.0, 3.0, -1.0, 0.7, -0.7, 0.2, 0.0], np.float32)
    w = jnp.asarray(np.stack([w0, np.zeros_like(w0)], 1))

    def features(x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], -1) @ w

    x = jnp.asarray(np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 2, 2, 3))  # far inside [-2.2, 2.2]
    key, eps, step = jax.random.key(7), 0.1, 0.03
    start = np.asarray(defect.pgd_attack(features, x, key, eps=eps, steps=0, step_size=step)) - np.asarray(x)
    sign = np.sign(w0).reshape(2, 2, 3)
    for k in (1, 2, 3):
        adv = np.asarray(defect.pgd_attack(features, x, key, eps=eps, steps=k, step_size=step))
        np.testing.assert_allclose(adv - np.asarray(x), np.clip(start + k * step * sign, -eps, eps), atol=1e-6)
    # enough steps: every pixel with w ≠ 0 sits on the ball's face that raises f₀
    adv = np.asarray(defect.pgd_attack(features, x, key, eps=eps, steps=10, step_size=step)) - np.asarray(x)
    np.testing.assert_allclose(adv[:, sign != 0], (eps * sign[sign != 0])[None].repeat(2, 0), atol=1e-6)
    np.testing.assert_array_equal(adv[:, sign == 0], start[:, sign == 0])


def test_seam_dir_by_hand_and_edge_cases() -> None:
    """DIR = 100·#(clean-correct ∧ adversarially wrong)/#(clean-correct): 5 clean-correct of 7, of
    which 2 flip → 40.0; none clean-correct → NaN (no defect to inherit); no flips → 0."""
    labels = np.array([1, 1, 0, 0, 1, 0, 1])
    clean = np.array([1, 1, 0, 0, 1, 1, 0])  # rows 0-4 correct
    adv = np.array([0, 1, 1, 0, 1, 1, 1])  # rows 0 and 2 flip; rows 5, 6 were wrong already
    out = defect.defect_inheritance_rate(clean, adv, labels)
    assert (out["clean_correct"], out["inherited"], out["n"]) == (5, 2, 7)
    assert out["dir"] == 40.0 and out["clean_top1"] == pytest.approx(100 * 5 / 7)
    assert np.isnan(defect.defect_inheritance_rate(1 - labels, labels, labels)["dir"])
    assert defect.defect_inheritance_rate(labels, labels, labels)["dir"] == 0.0
