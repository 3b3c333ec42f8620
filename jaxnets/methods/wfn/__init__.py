"""Weight Fixing Networks (Subia-Waud & Dasmahapatra, ECCV 2022): see specs/weight-fixing-networks.md.

- :mod:`.candidates` — candidate centres (powers of two and their short sums);
- :mod:`.clustering` — the exact greedy clustering step, vectorised;
- :mod:`.regulariser` — L_reg, the λ-scaled loss and the clip → mask → Adam chain;
- :mod:`.layout` — quantisable leaves and the canonical (PyTorch-order) flat vector;
- :mod:`.metrics` — unique counts and entropies (code and paper variants), plots;
- :mod:`.export` — PyTorch state_dict and compact codebook + indices file;
- :mod:`.config` — :class:`WFNConfig`, the one place for the defaults and checks;
- :mod:`.runner` — ``run(model, data, config, run_dir=None, *, test_data) -> WFNResult``: the
  round schedule, resume, results; ``run_deltas(model, data, config, deltas, run_dir=None, *,
  test_data) -> [WFNResult]``: one run per δ of a list.
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxnets.methods.wfn.candidates import ZERO_DISTANCE, candidates
from jaxnets.methods.wfn.clustering import ClusteringError, ClusterResult, cluster, run_schedule
from jaxnets.methods.wfn.config import WFNConfig

_LAZY = {"run": "runner", "run_deltas": "runner", "WFNResult": "runner"}  # the runner imports JAX
__all__ = ["ZERO_DISTANCE", "ClusterResult", "ClusteringError", "WFNConfig", "WFNResult", "candidates", "cluster",
           "run", "run_deltas", "run_schedule"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"jaxnets.methods.wfn.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxnets.methods.wfn' has no attribute {name!r}")
