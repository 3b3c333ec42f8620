"""The "essential features" experiment (spec §3.5): noise the influential pooled features.

For each class ``c`` and each test image of that class, the pooled features ``F`` (eval BN) are
scored by the **full** head twice: with the columns ``S = I_c`` replaced by N(0, 1) samples
(``noise_at_inf``) and with the other columns replaced (``noise_at_noninf``); the counts of
images still classified as ``c`` are reported. ``mode="add"`` adds the noise instead.

Noise is keyed per (seed, run, class, image position within the class, which of the two
variants), so the result does not depend on batching and the same seed gives the same file.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import JaxnetsError

MODES = ("replace", "add")
RUN_IDS = {"ours": 0, "csg": 1}


def noise_keys(seed: int, run: int, cls: int, n: int, variant: int) -> jax.Array:
    base = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
        jax.random.key(seed), run), cls), variant)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(n))


@functools.partial(jax.jit, static_argnames=("mode",))
def noised(features: jax.Array, selected: jax.Array, keys: jax.Array, mode: str = "replace") -> jax.Array:
    """``features`` (N, D) with the ``selected`` (D,) columns replaced by (or plus) N(0, 1)."""
    noise = jax.vmap(lambda k: jax.random.normal(k, features.shape[1:], features.dtype))(keys)
    if mode == "add":
        return jnp.where(selected, features + noise, features)
    return jnp.where(selected, noise, features)


@jax.jit
def _predict(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    return jnp.argmax(jnp.dot(x, kernel, precision=jax.lax.Precision.HIGHEST) + bias, axis=-1)


def essential_counts(features: np.ndarray, labels: np.ndarray, kernel: Any, bias: Any,
                     table: np.ndarray, *, seed: int, run: str = "ours",
                     mode: str = "replace") -> dict[str, Any]:
    """Per class: ``noise_at_inf``, ``noise_at_noninf``, ``clean`` and ``total`` counts."""
    if mode not in MODES:
        raise JaxnetsError(f"--noise-mode must be one of {', '.join(MODES)}, got {mode!r}")
    kernel, bias = jnp.asarray(kernel), jnp.asarray(bias)
    d, num_classes = kernel.shape
    if table.shape[0] != num_classes:
        raise JaxnetsError(f"index table has {table.shape[0]} classes, the head {num_classes}")
    out: dict[str, dict[str, int]] = {}
    for c in range(num_classes):
        f = jnp.asarray(features[labels == c])
        n = f.shape[0]
        inf = np.zeros(d, bool)
        inf[table[c]] = True
        row = {"noise_at_inf": 0, "noise_at_noninf": 0, "clean": 0, "total": int(n)}
        if n:
            x1 = noised(f, jnp.asarray(inf), noise_keys(seed, RUN_IDS.get(run, 2), c, n, 0), mode)
            x2 = noised(f, jnp.asarray(~inf), noise_keys(seed, RUN_IDS.get(run, 2), c, n, 1), mode)
            row["noise_at_inf"] = int(jnp.sum(_predict(x1, kernel, bias) == c))
            row["noise_at_noninf"] = int(jnp.sum(_predict(x2, kernel, bias) == c))
            row["clean"] = int(jnp.sum(_predict(f, kernel, bias) == c))
        out[str(c)] = row
    return out


def schema_view(runs: dict[str, dict[str, dict[str, int]]]) -> dict:
    """The original file's schema: ``{run: {class: {noise_at_inf, noise_at_noninf}}}``."""
    return {run: {c: {"noise_at_inf": int(v["noise_at_inf"]),
                      "noise_at_noninf": int(v["noise_at_noninf"])} for c, v in rows.items()}
            for run, rows in runs.items()}


def plot_essential(path: Any, runs: dict[str, dict[str, dict[str, int]]]) -> Any:
    """Grouped bars per class: clean / influential noised / others noised, one panel per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 3.2), squeeze=False)
    for ax, (run, rows) in zip(axes[0], runs.items(), strict=True):
        classes = list(rows)
        x = np.arange(len(classes))
        for i, (key, label) in enumerate((("clean", "clean"), ("noise_at_inf", "influential noised"),
                                          ("noise_at_noninf", "others noised"))):
            vals = [100 * rows[c].get(key, 0) / max(rows[c].get("total", 1), 1) for c in classes]
            ax.bar(x + (i - 1) * 0.27, vals, width=0.27, label=label)
        ax.set_xticks(x, classes, fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of the class still correct")
        ax.set_title(run)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
