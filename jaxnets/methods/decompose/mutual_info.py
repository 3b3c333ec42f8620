"""Pairwise mutual information of binary class-membership vectors (spec §3.6).

Class ``c``'s index row becomes an indicator ``a_c ∈ {0,1}^D``. Two indicators are treated as
D paired samples; their MI (natural log, no smoothing) follows in closed form from the overlap
``m = |I_a ∩ I_b|``. The published score is the mean over **all** C × C ordered pairs,
diagonal included (where MI = H(k/D) dominates); the off-diagonal mean is reported alongside.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _plogp_ratio(n: np.ndarray, d: int, nu: np.ndarray, nv: np.ndarray) -> np.ndarray:
    # (n/D)·ln(D·n/(n_u·n_v)) with 0·ln 0 = 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (n / d) * np.log(d * n / (nu * nv))
    return np.where(n > 0, out, 0.0)


def mi_from_overlap(m: Any, ka: Any, kb: Any, d: int) -> np.ndarray:
    """MI of two indicator vectors of lengths ``d`` with ``ka`` and ``kb`` ones sharing ``m``."""
    m, ka, kb = (np.asarray(x, dtype=np.float64) for x in (m, ka, kb))
    n11, n10, n01 = m, ka - m, kb - m
    n00 = d - ka - kb + m
    a1, a0, b1, b0 = ka, d - ka, kb, d - kb
    return (_plogp_ratio(n11, d, a1, b1) + _plogp_ratio(n10, d, a1, b0)
            + _plogp_ratio(n01, d, a0, b1) + _plogp_ratio(n00, d, a0, b0))


def mi_contingency(a: Any, b: Any) -> float:
    """The definition from the 2×2 contingency table of two 0/1 vectors (reference for tests)."""
    a, b = np.asarray(a, dtype=int), np.asarray(b, dtype=int)
    d = len(a)
    total = 0.0
    for u in (0, 1):
        for v in (0, 1):
            n = np.sum((a == u) & (b == v))
            if n:
                total += n / d * np.log(d * n / (np.sum(a == u) * np.sum(b == v)))
    return float(total)


def indicators(table: Any, num_features: int) -> np.ndarray:
    """(C, D) 0/1 membership matrix of an index table."""
    t = np.asarray(table)
    out = np.zeros((t.shape[0], num_features), dtype=np.int64)
    out[np.arange(t.shape[0])[:, None], t] = 1
    return out


def pairwise_mi(table: Any, num_features: int) -> np.ndarray:
    """(C, C) matrix of MI between every ordered pair of classes."""
    a = indicators(table, num_features)
    overlaps = a @ a.T
    k = a.sum(axis=1)
    return mi_from_overlap(overlaps, k[:, None], k[None, :], num_features)


def mi_score(table: Any, num_features: int) -> dict[str, float]:
    """``score`` = mean over all ordered pairs incl. the diagonal (the published number),
    ``off_diagonal`` = mean over a ≠ b, ``self`` = mean of the diagonal."""
    mat = pairwise_mi(table, num_features)
    c = mat.shape[0]
    off = mat[~np.eye(c, dtype=bool)]
    return {"score": float(mat.mean()), "off_diagonal": float(off.mean()) if off.size else 0.0,
            "self": float(np.diag(mat).mean())}
