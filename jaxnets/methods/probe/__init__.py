"""Sparsity Probe (Ben-Shaul & Dekel): alpha-scores per layer from random-forest wavelets.

``run(model, data, ProbeConfig(...), run_dir=None) -> ProbeResult``; ``probe_matrix`` scores one
(N, D) matrix. See docs/probe.md, docs/python.md and ../shared/specs/sparsity-probe.md. Names
load on first use (the CLI imports the config without JAX).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ProbeConfig": "config", "PRESETS": "config",
    "run": "runner", "ProbeResult": "runner", "LayerResult": "runner", "probe": "runner",
    "probe_matrix": "runner",
    "NoTauQualifiesError": "alpha", "alpha_from_norms": "alpha", "epsilon_grid": "alpha", "tau_grid": "alpha",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"jaxnets.methods.probe.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'jaxnets.methods.probe' has no attribute {name!r}")
