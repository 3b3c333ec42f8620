"""SeaM (Qi et al., ICSE 2023): re-engineer a trained model into a module with learned weight masks.

``run(model, data, ReengineerConfig(...), run_dir=None, *, test_data) -> ReengineerResult``
(``run`` is :func:`reengineer`; direct reuse), ``finetune(model, data, FinetuneConfig(...), ...)
-> FinetuneResult`` (indirect reuse + the defect inheritance rate), the two baselines
``standard_finetune(model, data, StandardFinetuneConfig(...), ...)`` and ``retrain(...)`` (->
BaselineResult), and ``eval_robustness(public, finetuned, test_data, RobustnessConfig(...), ...)
-> RobustnessResult`` (the DIR of any fine-tuned model). ``open_module`` opens a run folder or a
released mask dict for ``module_flops`` / ``module_time`` / ``module_eval``. The pure parts stay
public: :mod:`.core` (scores, STE, retention, head), :mod:`.selection` (§2.7), :mod:`.targets`,
:mod:`.flops`, :mod:`.maskdict`, :mod:`.training` (the re-engineering loop), :mod:`.finetuning`
(SGD with the best test accuracy kept), :mod:`.indirect` (steps 1–3), :mod:`.dropout`. See
docs/seam.md and ../shared/specs/seam.md. Names load on first use (the CLI imports the configs
without JAX).
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxnets.methods.seam.config import (
    FinetuneConfig,
    ReengineerConfig,
    RetrainConfig,
    RobustnessConfig,
    StandardFinetuneConfig,
)

_EXPORTS = {
    "run": ("runner", "reengineer"), "reengineer": ("runner", "reengineer"),
    "ReengineerResult": ("runner", "ReengineerResult"), "run_digits": ("runner", "run_digits"),
    "open_module": ("runner", "open_module"), "SavedModule": ("runner", "SavedModule"),
    "module_flops": ("runner", "module_flops"), "module_time": ("runner", "module_time"),
    "module_eval": ("runner", "module_eval"),
    "finetune": ("indirect", "finetune"), "FinetuneResult": ("indirect", "FinetuneResult"),
    "standard_finetune": ("baselines", "standard_finetune"), "retrain": ("baselines", "retrain"),
    "BaselineResult": ("baselines", "BaselineResult"),
    "eval_robustness": ("robustness", "eval_robustness"), "RobustnessResult": ("robustness", "RobustnessResult"),
}
__all__ = ["BaselineResult", "FinetuneConfig", "FinetuneResult", "ReengineerConfig", "ReengineerResult",
           "RetrainConfig", "RobustnessConfig", "RobustnessResult", "SavedModule", "StandardFinetuneConfig",
           "eval_robustness", "finetune", "module_eval", "module_flops", "module_time", "open_module", "reengineer",
           "retrain", "run", "run_digits", "standard_finetune"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(f"jaxnets.methods.seam.{module}"), attr)
    raise AttributeError(f"module 'jaxnets.methods.seam' has no attribute {name!r}")
