""""Decomposing the Deep" (Badola et al.): class-specific filters of the penultimate layer.

- :mod:`.indices` — index tables (C, k): load / validate / write the shipped JSON format;
- :mod:`.head` — the decomposed head as a mask over the final Dense kernel;
- :mod:`.extract` — influential-channel extraction (per-image top-k frequency histograms);
- :mod:`.essential` — the Gaussian-noise "essential features" experiment;
- :mod:`.mutual_info` — pairwise MI of binary membership vectors;
- :mod:`.csg` — CSG gates and the indices derived from them;
- :mod:`.config` — :class:`IndicesConfig`, :class:`FinetuneConfig`, :class:`EssentialConfig`,
  :class:`MutualInfoConfig`: the one place for the defaults and checks;
- :mod:`.runners` — the workflows ``indices``, ``finetune`` (= ``run``), ``essential`` and
  ``mutual_info`` (Model + Data + Config + ``run_dir=None`` → typed result), and the demo.

Specification: ``specs/decomposing-the-deep.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from jaxnets.methods.decompose.config import EssentialConfig, FinetuneConfig, IndicesConfig, MutualInfoConfig

# The runners import JAX; ``indices``/``essential``/``mutual_info`` stay the submodules' names.
_LAZY = {"run": "finetune", "finetune": "finetune", "FinetuneResult": "FinetuneResult",
         "IndicesResult": "IndicesResult", "EssentialResult": "EssentialResult",
         "MutualInfoResult": "MutualInfoResult"}
__all__ = ["EssentialConfig", "FinetuneConfig", "IndicesConfig", "MutualInfoConfig", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("jaxnets.methods.decompose.runners"), _LAZY[name])
    raise AttributeError(name)
