"""PNG plots: projection histograms per layer, mass per layer with the null band, reinit heatmap.

matplotlib (Agg) is imported inside each function so that importing the package stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxnets.methods.hyperplanes.registry import LayerInfo
from jaxnets.methods.hyperplanes.stats import null_band


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _entries(report: Mapping, layers: Sequence[LayerInfo]) -> list[tuple[LayerInfo, dict]]:
    return [(layer, report[layer.stage][layer.block]) for layer in layers
            if layer.stage in report and layer.block in report[layer.stage]]


def plot_histograms(report: Mapping, layers: Sequence[LayerInfo], path: Path, *,
                    reference: Mapping | None = None, title: str = "",
                    reference_name: str = "init") -> Path:
    """One histogram of the projections per layer (``reference``, e.g. the init, overlaid)."""
    plt = _plt()
    items = _entries(report, layers)
    cols = min(4, max(1, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(items):]:
        ax.axis("off")
    for ax, (layer, entry) in zip(axes.ravel(), items, strict=False):
        p = np.asarray(entry["projections"])
        bins = max(5, min(40, int(math.sqrt(len(p))) * 2))
        if reference is not None and layer.stage in reference and layer.block in reference[layer.stage]:
            q = np.asarray(reference[layer.stage][layer.block]["projections"])
            ax.hist(q, bins=bins, alpha=0.45, color="grey", label=reference_name)
        ax.hist(p, bins=bins, alpha=0.75, color="C0", label="this")
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_title(f"{layer.stage}/{layer.block} {layer.path}\nmass {entry['mass']:.2f}",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    if reference is not None and items:
        axes.ravel()[0].legend(fontsize=7)
    fig.suptitle(title or "projections per layer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_mass(reports: Mapping[str, Mapping], layers: Sequence[LayerInfo], path: Path, *,
              title: str = "") -> Path:
    """Mass P(p ≤ 0) per layer for one or more reports, with the band 0.5 ± 4·0.5/√O."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(layers) + 2), 3.4))
    xs = np.arange(1, len(layers) + 1)
    lo, hi = zip(*(null_band(layer.units) for layer in layers), strict=True) if layers else ((), ())
    ax.fill_between(xs, lo, hi, color="grey", alpha=0.25, step="mid",
                    label="random-init band 0.5 ± 4·0.5/√O")
    ax.axhline(0.5, color="grey", lw=0.8)
    for i, (name, report) in enumerate(reports.items()):
        masses = [report[layer.stage][layer.block]["mass"] if layer.stage in report
                  and layer.block in report[layer.stage] else np.nan for layer in layers]
        ax.plot(xs, masses, marker="o", color=f"C{i}", label=f"{name} (net {report['net']['mass']:.3f})")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{layer.stage}/{layer.block}" for layer in layers], rotation=60, fontsize=7)
    ax.set_xlabel("layer (stage/block)")
    ax.set_ylabel("mass P(p ≤ 0)")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    ax.set_title(title or "mass per layer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(matrix: np.ndarray, row_labels: Sequence[str], path: Path, *,
                 title: str = "", vmin: float | None = None, vmax: float | None = None,
                 annotate: bool = True) -> Path:
    """Relative drops: rows = donor epochs (``rand`` last), columns = layers 1..L. Automatic
    colour range by default (as the original), fixed with ``vmin``/``vmax``."""
    plt = _plt()
    rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(max(4.0, 0.55 * cols + 2.0), max(2.0, 0.45 * rows + 1.4)))
    # magma ≈ seaborn's default "rocket" of the original (dark = small drop)
    im = ax.imshow(matrix, aspect="auto", vmin=vmin, vmax=vmax, cmap="magma")
    ax.set_xticks(range(cols))
    ax.set_xticklabels([str(i) for i in range(1, cols + 1)], fontsize=8)
    ax.set_yticks(range(rows))
    ax.set_yticklabels(list(row_labels), fontsize=8)
    ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    if annotate and rows * cols <= 400:
        for r in range(rows):
            for c in range(cols):
                ax.text(c, r, f"{matrix[r, c]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if matrix[r, c] > np.nanmean(matrix) else "white")
    ax.set_xlabel("layer")
    ax.set_ylabel("re-initialised from epoch")
    fig.colorbar(im, ax=ax, label="relative top-1 drop")
    ax.set_title(title or "re-initialisation robustness", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
