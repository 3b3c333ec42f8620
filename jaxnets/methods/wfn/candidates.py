"""Candidate centres: zero, signed powers of two and sums of up to k+1 of them (WFN spec §2.3).

Everything is float32 except the geometric grid, which is built in float64 and then cast (as
the original does), so the candidate sets match the original bit for bit (spec §9.1).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from jaxnets.errors import JaxnetsError

ZERO_DISTANCE = 2.0 ** -7  # γ0: |w| < γ0 is pruned to 0
MAX_ORDER_GROWTH = 20  # after this many orders an empty attempt doubles the threshold


def p2(x: np.ndarray, k: int, gamma0: float = ZERO_DISTANCE) -> np.ndarray:
    """Nearest signed power of two (in log space, half-to-even), exponent floored at
    log2(γ0) − k − 1; P2(0) = 0."""
    x = np.asarray(x, np.float32)
    mag = np.abs(x)
    nz = mag > 0
    with np.errstate(divide="ignore"):
        e = np.round(np.log2(np.where(nz, mag, np.float32(1.0))))  # float32, half-to-even
    floor = np.float32(math.log2(gamma0) - k - 1)
    e = np.maximum(floor, e)
    out = np.sign(x) * np.exp2(e).astype(np.float32)
    return np.where(nz, out, np.float32(0.0)).astype(np.float32)


def geometric_grid(bound: float, a: float, gamma0: float = ZERO_DISTANCE) -> np.ndarray:
    """g_0 = γ0, g_{i+1} = g_i·(1+d)/(1−d) with d = min(a, 0.9999), every g_i < B (float64).

    ``a == 0`` (exact matches only, spec §9.6): the powers of two in [γ0, B].
    """
    if a < 0:
        raise JaxnetsError(f"distance threshold must be ≥ 0, got {a}")
    if not gamma0 > 0:
        raise JaxnetsError(f"--zero-distance must be > 0, got {gamma0}")
    bound = float(bound)
    if not gamma0 < bound:
        return np.zeros(0, np.float64)
    if a == 0:
        n = int(math.floor(math.log2(bound / gamma0))) + 1
        g = gamma0 * np.exp2(np.arange(n + 1, dtype=np.float64))
        return g[g <= bound]
    d = min(float(a), 0.9999)
    r = (1.0 + d) / (1.0 - d)
    # Only the needed points (the original filled a 10^6-entry buffer): n ≈ ln(B/γ0)/ln r.
    n = int(math.ceil(math.log(bound / gamma0) / math.log(r))) + 2
    if n > 50_000_000:
        raise JaxnetsError(f"distance threshold {a} is too small: the candidate grid would need "
                           f"{n} points (use a larger --distance-allowed)")
    steps = np.full(n, r, np.float64)
    steps[0] = gamma0
    g = np.cumprod(steps)  # sequential products, as the original's loop g_{i+1} = g_i·r
    return g[g < bound]


def refine(g: np.ndarray, a: float, k: int, gamma0: float = ZERO_DISTANCE) -> np.ndarray:
    """c = P2(g), then k times: where |g − c| ≥ a·|g| and c ≠ 0, c += P2(g − c) (float32)."""
    g = np.asarray(g, np.float32)
    c = p2(g, k, gamma0)
    thresh = np.float32(a) * np.abs(g)
    for _ in range(k):
        e = g - c
        add = (np.abs(e) >= thresh) & (c != 0)
        if not add.any():
            break
        c = np.where(add, c + p2(e, k, gamma0), c).astype(np.float32)
    return c


@functools.lru_cache(maxsize=256)
def _candidates_cached(bound: float, a: float, k: int, gamma0: float) -> np.ndarray:
    c = refine(geometric_grid(bound, a, gamma0), a, k, gamma0)
    out = np.unique(np.concatenate([np.zeros(1, np.float32), c, -c]))
    out = np.where(out == 0, np.float32(0.0), out).astype(np.float32)  # -0.0 → +0.0 (P21)
    out.setflags(write=False)
    return out


def candidates(bound: float, a: float, k: int, gamma0: float = ZERO_DISTANCE) -> np.ndarray:
    """The sorted candidate set C(B, a, k) ∪ {0} with both signs (float32, read-only)."""
    return _candidates_cached(float(np.float32(bound)), float(a), int(k), float(gamma0))
