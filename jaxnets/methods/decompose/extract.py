"""Influential-channel extraction (spec §3.2): per-class frequency histograms of per-image top-k.

For every training image (true label ``y``, eval-mode BN, no augmentation) the ``k`` largest
pooled features are taken — ``jax.lax.top_k`` puts the lower channel id first among ties — and
``counts[y, channel] += 1`` for each. A class's list is its ``k_keep`` most frequent channels,
ties again to the lower id, in decreasing count. All k are computed in one pass; the counts
accumulate on the device. The per-class mean "mass" (the share of the ℓ1 norm held by an
image's top-k features) is kept as a diagnostic.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import JaxnetsError


@dataclass
class Extraction:
    ks: tuple[int, ...]
    counts: dict[int, np.ndarray]  # k → (C, D) int
    mass: dict[int, np.ndarray]  # k → (C,) mean top-k share of the ℓ1 norm
    images_per_class: np.ndarray  # (C,)
    tables: dict[int, np.ndarray] = field(default_factory=dict)  # k → (C, k) ranked


def rank_channels(counts: Any, k: int) -> np.ndarray:
    """Per class, the ``k`` most frequent channels: count descending, channel id ascending."""
    c = np.asarray(counts)
    if not 1 <= k <= c.shape[1]:
        raise JaxnetsError(f"k = {k} outside 1..{c.shape[1]}")
    # A stable sort of -count keeps the lower channel id first among equal counts.
    return np.argsort(-c, axis=1, kind="stable")[:, :k].astype(np.int32)


@functools.partial(jax.jit, static_argnames=("ks", "num_classes"))
def accumulate(acc: dict, feats: jax.Array, labels: jax.Array, mask: jax.Array, *,
               ks: tuple[int, ...], num_classes: int) -> dict:
    """Add one batch to the per-k histograms, mass sums and image counts."""
    d = feats.shape[1]
    vals, idx = jax.lax.top_k(feats, max(ks))
    valid = mask.astype(jnp.int32)
    total = jnp.sum(feats, axis=1)
    safe = jnp.where(total > 0, total, 1.0)
    out = {"n": acc["n"] + jax.ops.segment_sum(valid, labels, num_classes)}
    for k in ks:
        hits = jnp.sum(jax.nn.one_hot(idx[:, :k], d, dtype=jnp.int32), axis=1) * valid[:, None]
        out[f"counts{k}"] = acc[f"counts{k}"] + jax.ops.segment_sum(hits, labels, num_classes)
        share = jnp.where(total > 0, jnp.sum(vals[:, :k], axis=1) / safe, 0.0) * valid
        out[f"mass{k}"] = acc[f"mass{k}"] + jax.ops.segment_sum(share, labels, num_classes)
    return out


def extract_indices(module: Any, variables: Mapping, loader: Any, mean: Any, std: Any,
                    ks: Sequence[int], num_classes: int, num_features: int,
                    k_keep: Sequence[int] | None = None) -> Extraction:
    """One pass over ``loader`` (an eval loader over the training split) → tables for every k."""
    from jaxnets.methods.decompose.features import iter_features

    ks = tuple(sorted({int(k) for k in ks}))
    if not ks or ks[0] < 1 or ks[-1] > num_features:
        raise JaxnetsError(f"--k values must lie in 1..{num_features}, got {list(ks)}")
    acc: dict = {"n": jnp.zeros(num_classes, jnp.int32)}
    for k in ks:
        acc[f"counts{k}"] = jnp.zeros((num_classes, num_features), jnp.int32)
        acc[f"mass{k}"] = jnp.zeros(num_classes, jnp.float32)
    for feats, batch in iter_features(module, variables, loader, mean, std, "extract"):
        acc = accumulate(acc, feats, jnp.asarray(batch.labels), jnp.asarray(batch.mask),
                         ks=ks, num_classes=num_classes)
    acc = jax.device_get(acc)
    n = np.asarray(acc["n"])
    empty = [c for c in range(num_classes) if n[c] == 0]
    if empty:
        raise JaxnetsError(f"no training images for class(es) {empty[:10]}: every class needs "
                           "images to rank its channels (check --data/--limit/--classes)")
    keep = dict(zip(ks, k_keep if k_keep is not None else ks, strict=True))
    counts = {k: np.asarray(acc[f"counts{k}"]) for k in ks}
    result = Extraction(ks=ks, counts=counts,
                        mass={k: np.asarray(acc[f"mass{k}"]) / n for k in ks},
                        images_per_class=n)
    result.tables = {k: rank_channels(counts[k], keep[k]) for k in ks}
    return result


def plot_histograms(path: Any, counts: np.ndarray, table: np.ndarray, k: int,
                    max_classes: int = 20, class_names: Sequence[str] | None = None) -> Any:
    """Bar chart of every class's channel histogram, the kept channels highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = min(counts.shape[0], max_classes)
    cols = 2 if c > 1 else 1
    rows = -(-c // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 1.6 * rows), squeeze=False,
                             sharex=True)
    x = np.arange(counts.shape[1])
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        if i >= c:
            ax.axis("off")
            continue
        colors = np.where(np.isin(x, table[i]), "tab:red", "tab:gray")
        ax.bar(x, counts[i], color=colors, width=0.9)
        name = class_names[i] if class_names is not None and i < len(class_names) else str(i)
        ax.set_title(f"class {name}: top-{k} = {sorted(map(int, table[i]))}", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"per-image top-{k} frequency per channel (red: kept)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
