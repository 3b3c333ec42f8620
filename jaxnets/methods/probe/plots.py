"""PNG plots of probe results (matplotlib, Agg backend, imported lazily).

- ``result.png``: mean alpha per layer with the band between α at the first and last ε (§4.3);
- ``clustering.png``: the five KMeans metrics per layer;
- ``umap.png``: a grid of UMAP panels, one per layer, coloured by label (and ``<layer>.png``, one
  panel each, from the same function);
- ``plot_overlay``: several result.json files on one alpha figure, with the test-accuracy and
  clustering panels of the original ``plot_layers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.methods.probe.config import PlotConfig


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


@dataclass(frozen=True)
class OverlaySeries:
    """One result as ``probe plot`` draws it, after ``remove_layers`` / ``remove_begin``."""

    label: str
    layers: list[int]
    alpha_mean: list[float]
    alpha_low: list[float]  # α at the last ε
    alpha_high: list[float]  # α at the first ε
    test_top1: float | None
    clustering: dict[str, dict[str, float]]  # kept layers only, keyed "<index>"


def overlay_series(results: Sequence[Mapping], labels: Sequence[str],
                   config: PlotConfig = PlotConfig()) -> list[OverlaySeries]:
    """The per-result numbers of the overlay; a result left without layers is an error."""
    series = []
    for result, label in zip(results, labels, strict=True):
        rows = list(zip(*_alpha_rows(result), strict=True))  # (layer, mean, low, high) per layer
        # The original's order: drop the last remove_layers, then the first remove_begin.
        if config.remove_layers:
            rows = rows[:-config.remove_layers]
        rows = rows[config.remove_begin:]
        if not rows:
            raise JaxnetsError(f"--remove-layers {config.remove_layers} and --remove-begin "
                               f"{config.remove_begin} leave no layer of {label}")
        layers, mean, low, high = (list(column) for column in zip(*rows, strict=True))
        test = result.get("test_stats") or {}
        kept = {str(index) for index in layers}
        clustering = {k: v for k, v in (result.get("clustering_stats") or {}).items() if k in kept}
        series.append(OverlaySeries(label, layers, mean, low, high, test.get("top_1_accuracy"), clustering))
    return series


def plot_overlay(results: Sequence[Mapping], labels: Sequence[str], path: Path,
                 config: PlotConfig = PlotConfig()) -> list[OverlaySeries]:
    """Mean alpha per layer of several runs, a test-accuracy bar per run (``plot_test``, for the
    runs that have one) and their clustering metrics when present: the original ``plot_layers``'s
    panels, width ratios 10 : 1 : 10. Returns what was drawn."""
    series = overlay_series(results, labels, config)
    with_test = config.plot_test and any(s.test_top1 is not None for s in series)
    with_clusters = any(s.clustering for s in series)
    ratios = [10] + [1] * with_test + [10] * with_clusters
    plt = _plt()
    fig, axes = plt.subplots(1, len(ratios), figsize=(8 + 6 * with_clusters + 1.5 * with_test, 5), squeeze=False,
                             gridspec_kw={"width_ratios": ratios})
    ax = axes[0, 0]
    colors = {}
    for s in series:
        line = ax.plot(s.layers, s.alpha_mean, marker="o", label=s.label)[0]
        colors[s.label] = line.get_color()
        if config.fill:
            ax.fill_between(s.layers, s.alpha_low, s.alpha_high, alpha=0.2, color=line.get_color())
    ax.set_xlabel("layer")
    ax.set_ylabel("mean alpha")
    ax.legend(fontsize=7)
    if with_test:
        tax = axes[0, 1]
        for i, s in enumerate(series):
            if s.test_top1 is not None:
                tax.bar(i, s.test_top1, color=colors[s.label])
                tax.annotate(f"{s.test_top1:.3f}", (i, s.test_top1), ha="center", va="bottom", fontsize=6)
        tax.set_xticks([])
        tax.set_ylabel("test top-1 accuracy")
        tax.set_title("test accuracy", fontsize=8)
    if with_clusters:
        cax = axes[0, -1]
        styles = ["-", "--", ":", "-.", (0, (1, 3))]
        for s in series:
            keys = sorted(s.clustering, key=int)
            for style, metric in zip(styles, s.clustering[keys[0]] if keys else (), strict=False):
                cax.plot([int(k) for k in keys], [s.clustering[k][metric] for k in keys], linestyle=style,
                         color=colors[s.label], label=f"{s.label}: {metric}")
        cax.set_xlabel("layer")
        cax.set_ylabel("score")
        cax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return series
