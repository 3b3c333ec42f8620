"""Dimensionality reduction of a layer's outputs to ``feature_dimension`` columns (spec §2.3, §7.2).

- ``sklearn`` (parity): ``TruncatedSVD(n_components=k, random_state=seed).fit_transform(X)`` —
  randomized, 5 power iterations, 10 oversamples, no centring; the original left the seed to
  the global RNG (P6), jaxnets always passes one.
- ``jax`` (speed on large layers / accelerators): the same randomized range finder under
  ``jax.jit`` with QR-normalised power iterations; equal to sklearn's only up to subspace and
  sign, so alpha agrees to about ±0.02, not bitwise.
- ``exact``: the top-k eigenvectors of the smaller Gram matrix (X Xᵀ when N < D, else XᵀX) in
  float64 — the true rank-k truncation, fast whenever N or D is a few thousand (the digits demo,
  the 846-image CIFAR subset); equal to sklearn's up to its randomized error and column signs.
"""

from __future__ import annotations

import functools

import numpy as np

from jaxnets.errors import JaxnetsError

SVD_METHODS = ("sklearn", "jax", "exact")


def check_feature_dimension(k: int, n_samples: int, dim: int, layer: str = "") -> None:
    """A reduction from ``dim`` to ``k`` columns needs k < number of samples."""
    if k < 1:
        raise JaxnetsError(f"--feature-dimension must be at least 1 (got {k})")
    if dim > k and k >= n_samples:
        where = f" for layer '{layer}' ({dim} features)" if layer else ""
        raise JaxnetsError(
            f"--feature-dimension {k} is not smaller than the number of samples ({n_samples})"
            f"{where}; use --feature-dimension ≤ {n_samples - 1} or more data")


def reduce_features(X: np.ndarray, k: int, *, seed: int, method: str = "sklearn") -> np.ndarray:
    """X (N, D) → (N, k) float32 when D > k; X unchanged otherwise."""
    X = np.asarray(X, dtype=np.float32)
    if X.shape[1] <= k:
        return X
    check_feature_dimension(k, X.shape[0], X.shape[1])
    if method == "sklearn":
        from sklearn.decomposition import TruncatedSVD

        svd = TruncatedSVD(n_components=k, algorithm="randomized", n_iter=5, random_state=seed)
        return np.asarray(svd.fit_transform(X), dtype=np.float32)
    if method == "jax":
        import jax

        out = _jax_randomized_svd(k, min(k + 10, min(X.shape)), 5)(X, jax.random.key(seed))
        return np.asarray(out, dtype=np.float32)
    if method == "exact":
        return _exact_truncation(X, k)
    raise JaxnetsError(f"unknown --svd '{method}'; use one of {', '.join(SVD_METHODS)}")


@functools.lru_cache(maxsize=8)
def _jax_randomized_svd(k: int, width: int, n_iter: int):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def run(X, key):
        omega = jax.random.normal(key, (X.shape[1], width), X.dtype)
        q, _ = jnp.linalg.qr(X @ omega)
        for _ in range(n_iter):  # power iterations, QR-normalised for stability
            q, _ = jnp.linalg.qr(X.T @ q)
            q, _ = jnp.linalg.qr(X @ q)
        ub, s, vt = jnp.linalg.svd(q.T @ X, full_matrices=False)
        u = q @ ub[:, :k]
        # sklearn-style sign: the largest |entry| of each right singular vector is positive.
        signs = jnp.sign(vt[jnp.arange(k), jnp.argmax(jnp.abs(vt[:k]), axis=1)])
        signs = jnp.where(signs == 0, 1.0, signs)
        return u * (s[:k] * signs)[None, :]

    return run


def _exact_truncation(X: np.ndarray, k: int) -> np.ndarray:
    """U_k·Σ_k by an eigendecomposition of the smaller Gram matrix (float64)."""
    X64 = X.astype(np.float64)
    n, d = X64.shape
    if n <= d:
        w, u = np.linalg.eigh(X64 @ X64.T)  # X Xᵀ = U Σ² Uᵀ
        top = np.argsort(w)[::-1][:k]
        out = u[:, top] * np.sqrt(np.clip(w[top], 0, None))[None, :]
        v = X64.T @ u[:, top]  # ∝ right singular vectors, for the sign convention
    else:
        w, v = np.linalg.eigh(X64.T @ X64)  # XᵀX = V Σ² Vᵀ
        top = np.argsort(w)[::-1][:k]
        v = v[:, top]
        out = X64 @ v
    # sklearn-style sign: the largest |entry| of each right singular vector is positive.
    signs = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    signs[signs == 0] = 1
    return (out * signs[None, :]).astype(np.float32)
