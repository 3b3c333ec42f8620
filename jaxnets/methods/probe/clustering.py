"""KMeans agreement metrics and UMAP embeddings of a layer (spec §3), on the host.

Both act on the same matrix as the forest: after the SVD, before min–max scaling.
KMeans: k = number of distinct labels, ``n_init=10`` explicitly (sklearn ≥ 1.4 changed the
default, P20), ``random_state`` explicit. UMAP (umap-learn, optional extra ``umap``, imported
lazily): a seeded subsample, without replacement by default; ``faithful=True`` draws with
replacement from ``RandomState(2)`` as the original's reseeded global RNG did (P19).
"""

from __future__ import annotations

import numpy as np

METRICS = ("adj_rand", "MI_score", "homogeneity_score", "completeness", "FMI")


def kmeans_metrics(X: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    from sklearn import metrics
    from sklearn.cluster import KMeans

    y = np.asarray(y).ravel()
    km = KMeans(n_clusters=len(np.unique(y)), n_init=10, random_state=seed).fit(X)
    pred = km.labels_
    return {
        "adj_rand": float(metrics.adjusted_rand_score(y, pred)),
        "MI_score": float(metrics.adjusted_mutual_info_score(y, pred)),
        "homogeneity_score": float(metrics.homogeneity_score(y, pred)),
        "completeness": float(metrics.completeness_score(y, pred)),
        "FMI": float(metrics.fowlkes_mallows_score(y, pred)),
    }


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def umap_sample(n_rows: int, n_points: int = 2500, seed: int = 2, faithful: bool = False) -> np.ndarray:
    """Row indices of the UMAP subsample (the same for every layer of a run)."""
    if faithful:
        return np.random.RandomState(2).choice(n_rows, n_points)
    rng = np.random.default_rng(seed)
    if n_points >= n_rows:
        return np.arange(n_rows)
    return np.sort(rng.choice(n_rows, n_points, replace=False))


def umap_embed(X: np.ndarray, seed: int = 42, n_neighbors: int = 15) -> np.ndarray | None:
    """(n, 2) UMAP embedding, or None (with a warning) when umap-learn is not installed."""
    try:
        import umap
    except ImportError:
        from jaxnets.ui import warn

        warn("umap-learn is not installed (pip install 'jaxnets[umap]'): UMAP plots skipped")
        return None
    n_neighbors = max(2, min(n_neighbors, len(X) - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, min_dist=0.1, metric="euclidean", n_jobs=1,
                        random_state=seed)
    return np.asarray(reducer.fit_transform(np.asarray(X, dtype=np.float32)))
