"""Hyperplane arrangements of trained ConvNets (specs/hyperplane-arrangements.md).

``run(model, data, ProjectionsConfig(...), run_dir=None) -> ProjectionsResult`` (= ``projections``)
and ``run_reinit(model, test_data, ReinitConfig(...), run_dir=None, *, donors) -> ReinitResult``
(``runner.reinit``; the package attribute ``reinit`` is the module of the grid's pure functions).
Names load on first use (the CLI imports the configs without JAX).

- :mod:`.config` — :class:`ProjectionsConfig`, :class:`ReinitConfig`: the defaults and checks;
  :class:`TrainConfig`: the defaults of ``jaxnets train`` (the paper's train.py);
- :mod:`.original` — the original train.py's ``.tar`` snapshots (weights, epoch, optimiser
  state) for ``jaxnets train --resume-from``, and its regularisation-loss diagnostic;
- :mod:`.registry` — the ordered layer registry (stage/block ids; pool rule and the ResNet rule);
- :mod:`.stats` — projection statistics, mass/mean, distances from init, null band;
- :mod:`.labels` — snapshot epoch labels (fixed and legacy rules);
- :mod:`.reinit` — the layer re-initialisation grid with one jitted evaluation;
- :mod:`.snapshots` — a snapshot's model and test data (``open_snapshot``), donor lists;
- :mod:`.plots` — histograms, mass per layer, heatmap (PNG);
- :mod:`.runner` — ``projections``, ``reinit``, ``run_study`` (the demo's entry point).
"""

from __future__ import annotations

import importlib
from typing import Any

# name → (module, attribute there)
_EXPORTS = {
    "ProjectionsConfig": ("config", "ProjectionsConfig"), "ReinitConfig": ("config", "ReinitConfig"),
    "TrainConfig": ("config", "TrainConfig"),
    "run": ("runner", "projections"), "projections": ("runner", "projections"),
    "run_reinit": ("runner", "reinit"), "ProjectionsResult": ("runner", "ProjectionsResult"),
    "ReinitResult": ("runner", "ReinitResult"), "run_study": ("runner", "run_study"),
    "open_snapshot": ("snapshots", "open_snapshot"), "snapshot_data": ("snapshots", "snapshot_data"),
    "list_donors": ("snapshots", "list_donors"), "find_snapshots": ("snapshots", "find_snapshots"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(f"jaxnets.methods.hyperplanes.{module}"), attribute)
    raise AttributeError(f"module 'jaxnets.methods.hyperplanes' has no attribute {name!r}")
