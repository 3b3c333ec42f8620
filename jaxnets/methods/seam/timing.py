"""Dense XLA inference latency of the original and the pruned model (specs/seam.md §3.4, §8.7).

As in the original time script the head is *not* attached (backbone only), the input is one
fixed random batch (``RandomState(0)``, uniform [0, 1), batch 16). Dense kernels do not exploit
zeros, so the two latencies are expected to be about equal; DeepSparse is not used. Timings
depend on the machine: the result carries a description of it and must not be compared across
machines.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxnets.methods.seam import core


def machine() -> dict:
    dev = jax.devices()[0]
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "jax_backend": jax.default_backend(),
            "device": getattr(dev, "device_kind", str(dev)), "load_average": load}


def time_apply(fn: Any, x: Any, *, warmup: int = 3, repeats: int = 10) -> dict:
    """Median and spread of ``fn(x)`` wall time (ms per batch) after ``warmup`` calls."""
    for _ in range(max(1, warmup)):
        jax.block_until_ready(fn(x))
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(x))
        times.append(1000 * (time.perf_counter() - t0))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "repeats": len(times)}


def latency(module: Any, variables: Mapping, scores: Any, input_shape: tuple[int, ...], *,
            batch: int = 16, warmup: int = 3, repeats: int = 10) -> dict:
    """Original vs pruned (W ⊙ 1[s > 0]) backbone latency, dense XLA, batch ``batch``."""
    shape = (batch, *input_shape[1:])
    # The original draws NCHW; only the values' distribution matters for a dense timing.
    x = np.random.RandomState(0).random_sample(shape).astype(np.float32)
    bs = variables.get("batch_stats") or {}
    pruned = core.pruned_params(variables["params"], scores)
    fn = jax.jit(lambda p, x: core.apply_backbone(module, p, bs, x))
    orig = time_apply(lambda x: fn(variables["params"], x), x, warmup=warmup, repeats=repeats)
    re = time_apply(lambda x: fn(pruned, x), x, warmup=warmup, repeats=repeats)
    reduction = (orig["median_ms"] - re["median_ms"]) / orig["median_ms"] if orig["median_ms"] else 0.0
    return {"batch": batch, "original": orig, "reengineered": re, "reduction": reduction,
            "engine": "xla-dense", "machine": machine()}
