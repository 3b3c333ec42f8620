"""Projection statistics as pure functions over the param tree (spec §2, §8.2).

Per output unit ``o`` of a conv (HWIO kernel) or linear ((in, out) kernel) — the unit is always
the last axis — the raw projection is ``s_o = <w_o, 1>`` (the sum of its weights); normalised it
is ``s_o / (||w_o|| sqrt(n))`` = cos of the angle between the filter and the all-ones vector.
Per layer: ``mean`` and ``mass = #{p <= 0} / O`` (the ECDF at 0, ties included). Biases are never
used. Everything is float32 numpy on the host: it takes milliseconds, jit would only add
compile time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binom

from jaxnets.errors import JaxnetsError
from jaxnets.methods.hyperplanes.registry import LayerInfo


def unit_projection(kernel: Any, normalize: bool = False) -> np.ndarray:
    """One projection per output unit (last axis), float32.

    With ``normalize`` an all-zero filter gives 0 (the original's 0/0 = NaN, spec §7 #1), which
    counts toward the mass.
    """
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim < 2:
        raise JaxnetsError(f"a kernel needs ≥ 2 axes (units last), got shape {k.shape}")
    flat = k.reshape(-1, k.shape[-1])
    s = flat.sum(axis=0, dtype=np.float32)
    if not normalize:
        return s
    n = flat.shape[0]
    norm = np.sqrt((flat * flat).sum(axis=0, dtype=np.float32))
    denom = norm * np.float32(math.sqrt(n))
    safe = np.where(norm > 0, denom, np.float32(1.0))
    return np.where(norm > 0, s / safe, np.float32(0.0)).astype(np.float32)


def torch_unit_projection(weight: Any, normalize: bool = False) -> np.ndarray:
    """The same on a PyTorch-layout weight (OIHW or (out, in)): units on axis 0."""
    w = np.asarray(weight, dtype=np.float32)
    return unit_projection(np.moveaxis(w.reshape(w.shape[0], -1), 0, -1), normalize)


def mass(p: Sequence[float] | np.ndarray) -> float:
    """P(X <= 0): the empirical CDF at 0, ties included."""
    arr = np.asarray(p)
    if arr.size == 0:
        raise JaxnetsError("no projections to summarise (no layer selected; use --with-linear)")
    return float(np.count_nonzero(arr <= 0) / arr.size)


def summarize(p: Sequence[float] | np.ndarray) -> dict:
    """``{"projections", "mass", "mean"}`` of one layer (always a list, even for one unit)."""
    arr = np.asarray(p, dtype=np.float32).reshape(-1)
    return {"projections": [float(v) for v in arr], "mass": mass(arr),
            "mean": float(np.mean(arr.astype(np.float64)))}


def rel_distances(kernel: Any, kernel0: Any) -> tuple[float, float]:
    """(‖W − W0‖_F / ‖W0‖_F, max|W − W0| / max|W0|) of the weights only."""
    k = np.asarray(kernel, dtype=np.float32)
    k0 = np.asarray(kernel0, dtype=np.float32)
    if k.shape != k0.shape:
        raise JaxnetsError(f"cannot compare kernels of shapes {k.shape} and {k0.shape}")
    d = k - k0
    l2 = float(np.linalg.norm(d.ravel()) / np.linalg.norm(k0.ravel()))
    linf = float(np.max(np.abs(d)) / np.max(np.abs(k0)))
    return l2, linf


def null_band(units: int, sigmas: float = 4.0) -> tuple[float, float]:
    """The random-init band 0.5 ± sigmas·0.5/√O of a layer's mass (Binomial(O, 1/2)/O)."""
    half = sigmas * 0.5 / math.sqrt(units)
    return 0.5 - half, 0.5 + half


# Below this many units the tail is summed exactly in integers (a few ms); 2.0**1024 is past the
# float range, and the exact sum grows quadratically, so wider layers use the incomplete beta.
EXACT_TAIL_MAX_UNITS = 1023


def binomial_p_value(negatives: int, units: int) -> float:
    """Two-sided binomial test of ``#{p <= 0}`` against O/2 (an extension, spec §2.6).

    Exact for up to :data:`EXACT_TAIL_MAX_UNITS` units; beyond, scipy's binomial CDF (relative
    error ~1e-13), so the 4096-unit classifier layers of VGG, AlexNet and the MLPs get a finite
    value (an extreme one underflows to 0.0).
    """
    if units == 0:
        return float("nan")
    k = min(negatives, units - negatives)
    if units <= EXACT_TAIL_MAX_UNITS:
        # int / int is correctly rounded (no float 2**units involved).
        tail = sum(math.comb(units, i) for i in range(k + 1)) / (1 << units)
    else:
        tail = float(binom.cdf(k, units, 0.5))
    return float(min(1.0, 2 * tail))


def _kernel(params: Mapping, path: str) -> Any:
    from jaxnets.transforms import names

    return names.get_subtree(params, f"{path}/kernel")


def projections_report(params: Mapping, layers: Sequence[LayerInfo], *, normalize: bool = False,
                       with_linear: bool = False, params_init: Mapping | None = None) -> dict:
    """The original JSON body (stage → block → stats, plus ``net``); metadata keys are added by
    the caller. ``params`` is the ``params`` collection (or full variables)."""
    params = params.get("params", params)
    if params_init is not None:
        params_init = params_init.get("params", params_init)
    out: dict[str, Any] = {}
    pooled: list[np.ndarray] = []
    for layer in layers:
        if layer.kind == "linear" and not with_linear:
            continue
        p = unit_projection(_kernel(params, layer.path), normalize)
        entry = summarize(p)
        if params_init is not None:
            entry["l2_dist"], entry["l_inf_dist"] = rel_distances(_kernel(params, layer.path),
                                                                  _kernel(params_init, layer.path))
        out.setdefault(layer.stage, {})[layer.block] = entry
        pooled.append(p)
    if not pooled:
        raise JaxnetsError("no layers selected (this model has no conv layer other than 1×1); "
                           "use --with-linear")
    out["net"] = summarize(np.concatenate(pooled))
    return out


def layer_table(report: Mapping, layers: Sequence[LayerInfo]) -> list[dict]:
    """A flat per-layer summary (path, units, fan-in, mass, mean, band, bias, p-value, distances)
    for results.json and the console table — the extensions live here, not in the original JSON."""
    rows = []
    for layer in layers:
        entry = report.get(layer.stage, {}).get(layer.block)
        if entry is None:
            continue
        p = np.asarray(entry["projections"])
        negatives = int(np.count_nonzero(p <= 0))
        lo, hi = null_band(layer.units)
        rows.append({
            "stage": layer.stage, "block": layer.block, "path": layer.path, "kind": layer.kind,
            "units": layer.units, "fan_in": layer.fan_in, "mass": entry["mass"],
            "mean": entry["mean"], "percent_negative": 100.0 * negatives / len(p),
            "bias": 2 * entry["mass"] - 1, "p_value": binomial_p_value(negatives, len(p)),
            "null_band": [lo, hi], "outside_null_band": not lo <= entry["mass"] <= hi,
            **{k: entry[k] for k in ("l2_dist", "l_inf_dist") if k in entry},
        })
    return rows
