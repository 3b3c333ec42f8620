"""The compute precisions a training command accepts (no JAX import: Configs check them at
start-up; ``jaxnets.train.steps.resolve_precision`` turns ``auto`` into one of the others)."""

from __future__ import annotations

from jaxnets.errors import ConfigError

PRECISIONS = ("fp32", "bf16", "auto")  # bf16: bf16 compute, fp32 master weights; auto: bf16 on GPU/TPU


def check_precision(value: str, field: str = "precision") -> None:
    if value not in PRECISIONS:
        raise ConfigError(field, f"must be one of {', '.join(PRECISIONS)}, got {value!r}")
