"""The probe's forest: per-column min–max scaling and a multi-output one-hot random forest.

Settings of spec §2.6: ``RandomForestClassifier`` on one-hot targets (C binary outputs, P3),
gini, ``max_features='sqrt'`` (the old 'auto', P7), bootstrap, ``max_depth`` (0 or −1 =
unlimited, P12), explicit ``random_state``; never the global numpy RNG (P29).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError


def minmax_scale(X: np.ndarray) -> tuple[np.ndarray, int]:
    """Every column to [0, 1]; constant columns (0/0 in the original, P4) become 0.

    Returns the scaled float32 matrix and the number of constant columns.
    """
    X = np.asarray(X, dtype=np.float32)
    lo = X.min(axis=0)
    span = X.max(axis=0) - lo
    constant = span == 0
    safe = np.where(constant, np.float32(1), span)
    out = (X - lo) / safe
    out[:, constant] = 0
    return out, int(constant.sum())


def one_hot(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.int64).ravel()
    out = np.zeros((len(y), int(y.max()) + 1), dtype=np.int64)
    out[np.arange(len(y)), y] = 1
    return out


def max_depth_of(depth: int | None) -> int | None:
    if depth is None or depth in (0, -1):
        return None
    if depth < -1:
        raise JaxnetsError(f"--depth must be positive, or 0 / −1 for unlimited (got {depth})")
    return int(depth)


def fit_forest(X: np.ndarray, y: np.ndarray, *, trees: int, depth: int | None, seed: int,
               n_jobs: int = -1) -> Any:
    """Fit the multi-output forest on (already scaled) X and one-hot labels."""
    from sklearn.ensemble import RandomForestClassifier

    if trees < 1:
        raise JaxnetsError(f"--trees must be at least 1 (got {trees})")
    forest = RandomForestClassifier(
        n_estimators=trees, criterion="gini", max_depth=max_depth_of(depth), max_features="sqrt",
        bootstrap=True, n_jobs=n_jobs, random_state=seed,
    )
    return forest.fit(np.asarray(X, dtype=np.float32), one_hot(y))
