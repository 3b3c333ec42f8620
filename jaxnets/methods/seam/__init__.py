"""SeaM (Qi et al., ICSE 2023): re-engineer a trained model into a module with learned weight masks.

``run(model, data, ReengineerConfig(...), run_dir=None, *, test_data) -> ReengineerResult``
(``run`` is :func:`reengineer`) and ``finetune(model, data, FinetuneConfig(...), ...) ->
FinetuneResult`` (indirect reuse + the defect inheritance rate). The pure parts stay public:
:mod:`.core` (scores, STE, retention, head), :mod:`.selection` (§2.7), :mod:`.targets`,
:mod:`.flops`, :mod:`.maskdict`, :mod:`.training` (the loop on ready loaders), :mod:`.indirect`
(steps 1–3). See docs/seam.md and ../shared/specs/seam.md. Names load on first use (the CLI
imports the configs without JAX).
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxnets.methods.seam.config import FinetuneConfig, ReengineerConfig

_EXPORTS = {
    "run": ("runner", "reengineer"), "reengineer": ("runner", "reengineer"),
    "ReengineerResult": ("runner", "ReengineerResult"), "run_digits": ("runner", "run_digits"),
    "finetune": ("indirect", "finetune"), "FinetuneResult": ("indirect", "FinetuneResult"),
}
__all__ = ["FinetuneConfig", "FinetuneResult", "ReengineerConfig", "ReengineerResult", "finetune", "reengineer",
           "run", "run_digits"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f"jaxnets.methods.seam.{module}"), attr)
    raise AttributeError(f"module 'jaxnets.methods.seam' has no attribute {name!r}")
