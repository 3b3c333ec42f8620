"""Unique-value counts and entropies in both variants of the WFN spec §3, plus plots.

- The code's variant (§3.1): over the quantisable vector, zeros included: ``unique_all``,
  ``entropy_all`` (bits). We also give the *correct* non-zero variant ``unique_nonzero`` /
  ``entropy_nonzero`` (the original's non-zero entropy silently equalled the full one, P11).
- The paper table's variant (§3.2): state-dict entries whose key contains ``conv``, ``fc``,
  ``linear`` or ``bn`` (not running statistics), value 0 removed: ``unique_nonzero_paper``,
  ``entropy_nonzero_paper``. For torchvision ResNets this leaves out the shortcut convs/BNs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PAPER_KEYS = ("conv", "fc", "linear", "bn")
PAPER_EXCLUDE = ("running_mean", "running_var", "num_batches_tracked")


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (base 2) of a histogram."""
    counts = np.asarray(counts, np.float64)
    n = counts.sum()
    if n <= 0:
        return 0.0
    p = counts[counts > 0] / n
    return float(-(p * np.log2(p)).sum())


def value_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct float32 values and their counts (−0.0 and +0.0 are one value)."""
    v = np.asarray(values, np.float32).reshape(-1) + np.float32(0.0)  # -0.0 + 0.0 = +0.0
    return np.unique(v, return_counts=True)


def value_stats(values: np.ndarray) -> dict[str, float | int]:
    """``unique_all``/``entropy_all`` and ``unique_nonzero``/``entropy_nonzero`` of a vector."""
    v, c = value_counts(values)
    nz = v != 0
    return {"unique_all": int(v.size), "entropy_all": entropy_bits(c),
            "unique_nonzero": int(nz.sum()), "entropy_nonzero": entropy_bits(c[nz]),
            "zeros": int(c[~nz].sum()), "count": int(c.sum())}


def paper_keys(state_dict: Mapping[str, Any]) -> list[str]:
    """The keys the README/notebook metric uses (§3.2 (a))."""
    return [k for k in state_dict
            if any(s in k for s in PAPER_KEYS) and not any(s in k for s in PAPER_EXCLUDE)]


def paper_stats(state_dict: Mapping[str, Any]) -> dict[str, float | int]:
    """``unique_nonzero_paper`` / ``entropy_nonzero_paper`` (§3.2) and how many values."""
    keys = paper_keys(state_dict)
    vec = np.concatenate([np.asarray(state_dict[k], np.float32).reshape(-1) for k in keys]) \
        if keys else np.zeros(0, np.float32)
    v, c = value_counts(vec)
    nz = v != 0
    return {"unique_nonzero_paper": int(nz.sum()), "entropy_nonzero_paper": entropy_bits(c[nz]),
            "paper_values": int(vec.size), "paper_tensors": len(keys)}


def quantisable_keys(state_dict: Mapping[str, Any], bn_inc: bool = True) -> list[str]:
    """State-dict keys WFN quantises (§2.1), found from the keys alone: conv/linear weights
    (rank ≥ 2) and their biases; BN weight/bias (modules with running stats) when ``bn_inc``."""
    modules: dict[str, str] = {}
    for k, v in state_dict.items():
        mod, _, leaf = k.rpartition(".")
        if leaf == "weight" and np.ndim(v) >= 2:
            modules[mod] = "layer"
        elif leaf == "running_mean":
            modules.setdefault(mod, "bn")
    out = []
    for k in state_dict:
        mod, _, leaf = k.rpartition(".")
        kind = modules.get(mod)
        if leaf in ("weight", "bias") and (kind == "layer" or (kind == "bn" and bn_inc)):
            out.append(k)
    return out


def state_dict_stats(state_dict: Mapping[str, Any], bn_inc: bool = True) -> dict[str, Any]:
    """Both metric variants and per-tensor unique counts of any PyTorch-style state dict."""
    keys = quantisable_keys(state_dict, bn_inc)
    vec = np.concatenate([np.asarray(state_dict[k], np.float32).reshape(-1) for k in keys]) \
        if keys else np.zeros(0, np.float32)
    per_tensor = {k: int(value_counts(state_dict[k])[0].size) for k in keys}
    return {**value_stats(vec), **paper_stats(state_dict), "tensors": len(keys),
            "per_tensor_unique": per_tensor}


def per_tensor_unique(layout: Any, vec: np.ndarray) -> dict[str, int]:
    """Unique values (zeros included) per quantised tensor, keyed by PyTorch name."""
    return {e.torch_name: int(value_counts(x)[0].size) for e, x in layout.per_tensor(vec)}


# --------------------------------------------------------------------------- plots


def plot_histogram(values: np.ndarray, path: str | Path, title: str = "WFN codebook") -> Path:
    """Value vs count (log scale) of the quantised weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    v, c = value_counts(values)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.vlines(v, 1, c, lw=1.2)
    ax.plot(v, c, "o", ms=2.5)
    ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.set_title(f"{title}: {v.size} distinct values")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_rounds(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Accuracy, unique count and entropy per round (x: fraction fixed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["percentage"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    series = [("accuracy", "test top-1"), ("unique_all", "unique values"),
              ("entropy_all", "entropy (bits)")]
    for ax, (key, label) in zip(axes, series, strict=True):
        ax.plot(x, [r.get(key) for r in rows], "o-")
        if key == "unique_all":
            ax.plot(x, [r.get("unique_nonzero_paper") for r in rows], "s--", label="paper (non-zero)")
            ax.legend(fontsize=7)
        if key == "entropy_all":
            ax.plot(x, [r.get("entropy_nonzero_paper") for r in rows], "s--", label="paper (non-zero)")
            ax.legend(fontsize=7)
        ax.set_xlabel("fraction fixed")
        ax.set_ylabel(label)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
