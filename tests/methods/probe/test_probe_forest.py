"""Sparsity Probe, spec §8B: sklearn-level checks (forest, wavelets, alpha) on small data."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnets.methods.probe.config import ProbeConfig
from jaxnets.methods.probe.forest import fit_forest, minmax_scale
from jaxnets.methods.probe.runner import probe_matrix
from jaxnets.methods.probe.wavelets import forest_norms, recursive_norms_reference

NOTEBOOK = ProbeConfig(trees=5, depth=20, seed=1079, epsilon_1=0.1, feature_dimension=100_000)
# The spec's §8B.7 values to 6 digits; this machine (sklearn 1.9.1) reproduces them to the last bit,
# so the tests assert the full values (rel 1e-9: a seeded forest is bitwise deterministic, the
# tolerance only absorbs float formatting) — a refactor that moves alpha at all fails here.
ALPHA_DIGITS = 0.45253079269757057  # spec 0.452531
ALPHA_DIGITS_FIRST, ALPHA_DIGITS_LAST = 0.5526315789473677, 0.38495575221238876  # spec 0.552632, 0.384956
ALPHA_DIGITS_SHUFFLED = 0.3159723310435154  # spec 0.315972


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def blobs(sep: float, n: int, dim: int, seed: int = 0, noise: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, sep, (10, dim)) if sep > 0 else np.zeros((10, dim))
    y = rng.integers(0, 10, n)
    X = centres[y] + rng.normal(size=(n, dim))
    if noise:
        flip = rng.random(n) < noise
        y = y.copy()
        y[flip] = rng.integers(0, 10, int(flip.sum()))
    return X.astype(np.float32), y


def alpha(X: np.ndarray, y: np.ndarray, settings: ProbeConfig = NOTEBOOK) -> float:
    res = probe_matrix(X, y, settings)
    assert res.error is None, res.error
    return res.alpha_mean


@pytest.mark.parametrize("depth", [20, -1])
def test_probe_vectorised_equals_recursive(digits: tuple, depth: int) -> None:
    X, y = digits
    Xs, _ = minmax_scale(X)
    forest = fit_forest(Xs, y, trees=3, depth=depth, seed=7)
    fast, _ = forest_norms(forest, Xs, "original")
    slow = recursive_norms_reference(forest, Xs)
    assert fast.shape == slow.shape
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-15)


def test_probe_digits_reference_and_shuffled(digits: tuple) -> None:
    X, y = digits
    res = probe_matrix(X, y, NOTEBOOK)
    assert res.constant_columns == 3
    assert res.alpha_mean == pytest.approx(ALPHA_DIGITS, rel=1e-9)
    assert abs(res.alpha_mean - 0.452531) <= 5e-7  # the spec's rounding
    assert res.alphas[0] == pytest.approx(ALPHA_DIGITS_FIRST, rel=1e-9)
    assert res.alphas[-1] == pytest.approx(ALPHA_DIGITS_LAST, rel=1e-9)
    assert res.alphas == sorted(res.alphas, reverse=True)
    shuffled = y[np.random.RandomState(0).permutation(len(y))]
    a_shuffled = alpha(X, shuffled)
    assert a_shuffled == pytest.approx(ALPHA_DIGITS_SHUFFLED, rel=1e-9)
    assert abs(a_shuffled - 0.315972) <= 5e-7  # the spec's rounding
    assert res.alpha_mean >= a_shuffled + 0.1


def test_probe_blobs_ordering() -> None:
    a = {sep: alpha(*blobs(sep, 5000, 50)) for sep in (10.0, 3.0, 0.0)}
    assert a[10.0] > a[3.0] > a[0.0] + 0.3, a


def test_probe_label_noise_lowers_alpha() -> None:
    a = [alpha(*blobs(3.0, 10_000, 20, seed=1, noise=p)) for p in (0.0, 0.1, 0.3)]
    assert a[0] > a[1] > a[2], a


def test_probe_exact_invariances(digits: tuple) -> None:
    X, y = digits
    base = probe_matrix(X, y, NOTEBOOK)
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.5, 4.0, X.shape[1]).astype(np.float32)
    shift = rng.uniform(-3, 3, X.shape[1]).astype(np.float32)
    assert probe_matrix(X * scale + shift, y, NOTEBOOK).alphas == base.alphas
    perm = rng.permutation(10)
    assert probe_matrix(X, perm[y], NOTEBOOK).alphas == base.alphas
    single = ProbeConfig(**{**NOTEBOOK.__dict__, "n_jobs": 1})
    assert probe_matrix(X, y, single).alphas == base.alphas


def test_probe_row_permutation_is_close(digits: tuple) -> None:
    X, y = digits
    base = alpha(X, y)
    order = np.random.default_rng(5).permutation(len(y))
    permuted = alpha(X[order], y[order])
    assert abs(permuted - base) <= 0.02
    assert permuted == pytest.approx(0.4459165436140881, rel=1e-9)  # reproduced value, sklearn 1.9.1


def test_probe_fewer_nodes_higher_alpha(digits: tuple) -> None:
    X, y = digits
    shallow = alpha(X, y, ProbeConfig(**{**NOTEBOOK.__dict__, "depth": 5}))
    deep = alpha(X, y, ProbeConfig(**{**NOTEBOOK.__dict__, "depth": 15}))
    assert shallow > deep
    # Reproduced values (sklearn 1.9.1): depth 15 already grows the full digits trees, so it equals depth 20.
    assert shallow == pytest.approx(0.7490815254349928, rel=1e-9)
    assert deep == pytest.approx(ALPHA_DIGITS, rel=1e-9)


def test_probe_fixed_variant_close_to_original(digits: tuple) -> None:
    X, y = digits
    fixed = alpha(X, y, ProbeConfig(**{**NOTEBOOK.__dict__, "variant": "fixed"}))
    assert abs(fixed - 0.452531) <= 0.02
    assert fixed == pytest.approx(0.4517117918785698, rel=1e-9)  # reproduced value, sklearn 1.9.1


def test_probe_svd_methods_agree(digits: tuple) -> None:
    X, y = digits
    X = np.concatenate([X, X @ np.random.default_rng(0).normal(size=(64, 200)).astype(np.float32)], axis=1)
    values = {m: alpha(X, y, ProbeConfig(**{**NOTEBOOK.__dict__, "feature_dimension": 40, "svd": m}))
              for m in ("sklearn", "jax", "exact")}
    assert max(values.values()) - min(values.values()) <= 0.02, values
