"""Geometric wavelets of a fitted forest: node values, wavelet norms, pooled root-dropped norms.

Vectorised over the ``tree_`` arrays (spec §7.3): parents from ``children_left/right``,
node values ``v = (value[:,:,1] − value[:,:,0]) / Σ value`` (= (2p − 1)/C, invariant to sklearn's
counts-vs-fractions storage, P8), ψ = v − v[parent] with the variant's depth-1/root rule, and
routed-row counts from ``apply`` plus bottom-up sums per depth level (no dense decision paths, P16).

``recursive_norms_reference`` is a literal port of the original's recursive traversal (dense
``decision_path``), kept for the parity test and the benchmark only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxnets.methods.probe.alpha import VARIANTS


def parents_of(children_left: np.ndarray, children_right: np.ndarray) -> np.ndarray:
    """Parent id of every node (−1 for the root)."""
    n = len(children_left)
    parent = np.full(n, -1, dtype=np.int64)
    internal = np.flatnonzero(children_left >= 0)
    parent[children_left[internal]] = internal
    parent[children_right[internal]] = internal
    return parent


def depths_of(parent: np.ndarray) -> np.ndarray:
    """Depth of every node; sklearn numbers children after their parent, so one forward pass."""
    depth = np.zeros(len(parent), dtype=np.int64)
    for i in range(1, len(parent)):
        depth[i] = depth[parent[i]] + 1
    return depth


def node_values(value: np.ndarray) -> np.ndarray:
    """v(ν) = (value[ν,:,1] − value[ν,:,0]) / Σ value[ν]  — shape (n_nodes, C)."""
    value = np.asarray(value, dtype=np.float64)
    if value.shape[2] < 2:  # every output saw a single class: no "class c" column
        value = np.concatenate([value, np.zeros_like(value)], axis=2)
    return (value[:, :, 1] - value[:, :, 0]) / value.sum(axis=(1, 2))[:, None]


def wavelet_vectors(v: np.ndarray, parent: np.ndarray, variant: str = "original") -> np.ndarray:
    """ψ(ν) per node. ``original`` (P1): ψ(root) = v(root), ψ(depth-1) = v − 2·v(root)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}")
    psi = np.empty_like(v)
    psi[0] = v[0]
    psi[1:] = v[1:] - v[parent[1:]]
    if variant == "original":
        # The recursion reads the parent's stored difference, which is still zero except at the
        # root, whose stored entry is its mean: the root's mean is subtracted twice.
        first = np.flatnonzero(parent == 0)
        psi[first] -= v[0]
    return psi


def routed_counts_from_leaves(leaves: np.ndarray, parent: np.ndarray,
                              depth: np.ndarray | None = None) -> np.ndarray:
    """Rows routed through each node, from each row's leaf id (``apply``) by bottom-up sums."""
    n = len(parent)
    counts = np.bincount(leaves, minlength=n).astype(np.int64)
    depth = depths_of(parent) if depth is None else depth
    order = np.argsort(-depth, kind="stable")
    levels = np.split(order, np.flatnonzero(np.diff(depth[order])) + 1)
    for level in levels:  # deepest first; every child is done before its parent is read
        level = level[level > 0]
        if level.size:
            np.add.at(counts, parent[level], counts[level])
    return counts


def tree_wavelet_norms(tree: Any, X: np.ndarray, variant: str = "original",
                       leaves: np.ndarray | None = None) -> np.ndarray:
    """n(ν) = ‖ψ(ν)‖₂ · √(rows through ν / N) for every node of one fitted sklearn estimator."""
    t = tree.tree_
    left, right = np.asarray(t.children_left), np.asarray(t.children_right)
    parent = parents_of(left, right)
    v = node_values(t.value)
    psi = wavelet_vectors(v, parent, variant)
    if leaves is None:
        leaves = tree.apply(X)
    counts = routed_counts_from_leaves(np.asarray(leaves), parent)
    n_rows = len(leaves)
    return np.sqrt(np.sum(psi * psi, axis=1)) * np.sqrt(counts / n_rows)


def root_drop_indices(n_nodes: Sequence[int], variant: str = "original") -> np.ndarray:
    """Pool positions removed as "roots" (§2.9). Original: 0, then r_t = r_{t−1} + n_nodes(t)."""
    if variant == "fixed":
        return np.concatenate([[0], np.cumsum(n_nodes)[:-1]]).astype(np.int64)
    out = [0]
    for count in list(n_nodes)[1:]:
        out.append(out[-1] + int(count))
    return np.asarray(out, dtype=np.int64)


def forest_norms(forest: Any, X: np.ndarray, variant: str = "original") -> tuple[np.ndarray, list[int]]:
    """Pooled wavelet norms of all trees (estimator order), root entries dropped; node counts."""
    per_tree = [tree_wavelet_norms(est, X, variant) for est in forest.estimators_]
    n_nodes = [len(p) for p in per_tree]
    pooled = np.concatenate(per_tree)
    keep = np.ones(len(pooled), dtype=bool)
    keep[root_drop_indices(n_nodes, variant)] = False
    return pooled[keep], n_nodes


# ------------------------------------------------------------------ reference (tests, bench)


def _mean_of(t: Any, node: int) -> np.ndarray:
    val = t.value[node]
    return (val[:, 1] - val[:, 0]) / np.sum(val)


def _norm_of(a: np.ndarray, b: Any) -> float:
    return float(np.power(np.sum(np.power(np.abs(a - b), 2)) * 1.0, 0.5))


def _visit(t: Any, node: int, vals: np.ndarray, norms: np.ndarray) -> None:
    if node == 0:
        vals[:, 0] = _mean_of(t, 0)
        norms[0] = _norm_of(vals[:, 0], 0)
    for child in (t.children_left[node], t.children_right[node]):
        if child >= 0:
            _visit(t, child, vals, norms)  # children first: the parent's vals are still unset
            vals[:, child] = _mean_of(t, child) - _mean_of(t, node)
            norms[child] = _norm_of(vals[:, child], vals[:, node])


def recursive_norms_reference(forest: Any, X: np.ndarray) -> np.ndarray:
    """The original's per-tree recursion and dense decision paths (variant "original"),
    pooled with its root bookkeeping. Slow by design: the baseline of scripts/bench_probe.py."""
    all_norms: list[np.ndarray] = []
    roots: list[int] = []
    for est in forest.estimators_:
        t = est.tree_
        n = t.node_count
        norms = np.zeros(n)
        vals = np.zeros((t.value.shape[1], n))
        _visit(t, 0, vals, norms)
        dense = np.asarray(est.decision_path(X).todense())
        fraction = np.sum(dense, 0) / dense.shape[0]
        all_norms.append(norms * np.power(fraction, 0.5))
        roots.append(0 if not roots else roots[-1] + n)
    pooled = np.concatenate(all_norms)
    keep = np.ones(len(pooled), dtype=bool)
    keep[roots] = False
    return pooled[keep]
