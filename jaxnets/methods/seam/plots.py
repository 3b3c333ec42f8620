"""PNG plots of a re-engineering run (matplotlib, Agg, imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence[dict], path: str | Path, acc_pre: float | None = None) -> Path:
    """Test accuracy and weight retention per epoch."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [r["test_acc"] for r in history], marker="o", ms=3, label="target test accuracy")
    ax.plot(epochs, [r["retention"] for r in history], marker="s", ms=3, label="weight retention")
    if acc_pre is not None:
        ax.axhline(acc_pre, color="grey", ls="--", lw=1, label="original model accuracy")
    ax.set_xlabel("epoch")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("SeaM re-engineering")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_layer_retention(rows: Sequence[dict], path: str | Path) -> Path:
    """Per-layer retention bars (weights and biases of each masked module together)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(rows)), 4))
    ax.bar(range(len(rows)), [r["retention"] for r in rows])
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["layer"] for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("retention")
    ax.set_ylim(0, 1)
    ax.set_title("retained weights per layer")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
