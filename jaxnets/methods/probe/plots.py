"""PNG plots of probe results (matplotlib, Agg backend, imported lazily).

- ``result.png``: mean alpha per layer with the band between α at the first and last ε (§4.3);
- ``clustering.png``: the five KMeans metrics per layer;
- ``umap.png``: a grid of UMAP panels, one per layer, coloured by label;
- ``plot_overlay``: several result.json files on one alpha (and clustering) figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _alpha_rows(result: Mapping) -> tuple[list[int], list[float], list[float], list[float]]:
    xs, mean, lo, hi = [], [], [], []
    for index, alphas in zip(result["sizes"], result["alphas"], strict=True):
        xs.append(int(index))
        mean.append(float(np.mean(alphas)))
        lo.append(float(alphas[-1]))
        hi.append(float(alphas[0]))
    return xs, mean, lo, hi


def _layer_ticks(ax: Any, result: Mapping) -> None:
    layers = result.get("layers")
    if layers:
        ax.set_xticks([lay["index"] for lay in layers])
        ax.set_xticklabels([f"{lay['index']}\n{lay['name']}" for lay in layers], fontsize=6,
                           rotation=45, ha="right")


def plot_alphas(result: Mapping, path: Path, title: str | None = None) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    xs, mean, lo, hi = _alpha_rows(result)
    ax.fill_between(xs, lo, hi, alpha=0.3, label="α over the ε range")
    ax.plot(xs, mean, marker="o", label="mean α")
    ax.set_ylabel("alpha")
    ax.set_xlabel("layer")
    _layer_ticks(ax, result)
    ax.set_title(title or f"{result.get('model', '')} Angle Smoothness".strip())
    test = result.get("test_stats")
    if test and test.get("top_1_accuracy") is not None:
        ax.set_xlabel(f"layer\ntest top-1 {test['top_1_accuracy']:.4f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_clustering(result: Mapping, path: Path) -> Path | None:
    stats = result.get("clustering_stats") or {}
    if not stats:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    keys = sorted(stats, key=int)
    for metric in next(iter(stats.values())):
        ax.plot([int(k) for k in keys], [stats[k][metric] for k in keys], marker="o", label=metric)
    ax.set_xlabel("layer")
    ax.set_ylabel("score")
    _layer_ticks(ax, result)
    ax.set_title("KMeans agreement with the labels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_umap_grid(panels: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path) -> Path:
    """One panel per (title, embedding (n, 2), labels (n,)); the original's grid of L//2 rows."""
    plt = _plt()
    n = len(panels)
    rows = max(1, n // 2)
    cols = 2 + n % 2 if n > 1 else 1
    while rows * cols < n:
        rows += 1
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (title, emb, labels) in zip(axes.ravel(), panels, strict=False):
        sc = ax.scatter(emb[:, 0], emb[:, 1], s=0.5, c=labels, cmap="Spectral")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(title)
    if panels:
        handles, names = sc.legend_elements(num=len(np.unique(panels[-1][2])))
        fig.legend(handles, names, loc="upper right", title="class")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_overlay(results: Sequence[Mapping], labels: Sequence[str], path: Path,
                 fill: bool = False) -> Path:
    """Mean alpha per layer of several runs (and their clustering metrics when present)."""
    plt = _plt()
    with_clusters = any(r.get("clustering_stats") for r in results)
    fig, axes = plt.subplots(1, 2 if with_clusters else 1, figsize=(14 if with_clusters else 8, 5),
                             squeeze=False)
    ax = axes[0, 0]
    for result, label in zip(results, labels, strict=True):
        xs, mean, lo, hi = _alpha_rows(result)
        line = ax.plot(xs, mean, marker="o", label=label)[0]
        if fill:
            ax.fill_between(xs, lo, hi, alpha=0.2, color=line.get_color())
    ax.set_xlabel("layer")
    ax.set_ylabel("mean alpha")
    ax.legend(fontsize=7)
    if with_clusters:
        cax = axes[0, 1]
        styles = ["-", "--", ":", "-.", (0, (1, 3))]
        for result, label in zip(results, labels, strict=True):
            stats = result.get("clustering_stats") or {}
            keys = sorted(stats, key=int)
            for style, metric in zip(styles, stats[keys[0]] if keys else (), strict=False):
                cax.plot([int(k) for k in keys], [stats[k][metric] for k in keys], linestyle=style,
                         label=f"{label}: {metric}")
        cax.set_xlabel("layer")
        cax.set_ylabel("score")
        cax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
