"""jaxnets: analyse and compress convolutional networks in JAX/Flax.

The library entry points (``load``, ``open_data``, ``evaluate``, ``list_models``, ``methods``)
import JAX on first use, so ``import jaxnets`` and the CLI's start-up stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {"load", "open_data", "evaluate", "list_models", "Model", "Data"}
__all__ = sorted(_API | {"methods", "__version__"})


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("jaxnets.api"), name)
    if name == "methods":
        return importlib.import_module("jaxnets.methods")
    raise AttributeError(f"module 'jaxnets' has no attribute {name!r}")
