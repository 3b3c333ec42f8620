"""``Dropout2d`` after each ResNet stage, as the defect-inheritance ResNets of the original have it
(specs/seam.md §2.10: ``--dropout``, default 0; step 3, standard fine-tuning and retraining).

The zoo's ResNets have no such layer, and models get no SeaM special cases, so
:class:`StageDropout` wraps a module: its ``apply`` runs the unchanged model under an
``nn.intercept_methods`` interceptor that drops whole channels of the output of each stage's last
block (``layer{S}_{B}`` with the largest ``B`` of stage ``S``) — PyTorch's ``Dropout2d`` on NCHW,
here one Bernoulli draw per (image, channel) of the NHWC map, kept values scaled by 1/(1 − p).
Only in train mode (the blocks' ``train`` argument) and only with a ``dropout`` rng; evaluation,
PGD and the saved variables are those of the plain model (dropout has no parameters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.errors import JaxnetsError

_BLOCK = re.compile(r"^layer(\d+)_(\d+)$")


def stage_ends(params: Mapping) -> tuple[str, ...]:
    """The top-level block of each stage whose output ends that stage (``layer1_1``, ``layer2_1``, …
    for ResNet-18), in stage order; empty for a model without ``layer{S}_{B}`` blocks."""
    last: dict[int, int] = {}
    for name in params:
        m = _BLOCK.match(name)
        if m:
            stage, block = int(m.group(1)), int(m.group(2))
            last[stage] = max(block, last.get(stage, -1))
    return tuple(f"layer{s}_{b}" for s, b in sorted(last.items()))


def channel_dropout(x: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """``Dropout2d`` in NHWC: each (image, channel) kept with probability 1 − rate, scaled up."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, x.shape[-1]))
    return jnp.where(mask, x / keep, jnp.zeros((), x.dtype)).astype(x.dtype)


@dataclass(frozen=True)
class StageDropout:
    """``module`` with ``Dropout2d(rate)`` after the blocks ``stages`` (see the module docstring).

    Quacks like the Flax module where the training steps use it (``apply``); ``rate == 0`` is the
    module itself.
    """

    module: Any
    rate: float
    stages: tuple[str, ...]

    def _interceptor(self, next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
        out = next_fun(*args, **kwargs)
        mod = context.module
        if context.method_name != "__call__" or mod.name not in self.stages or mod.scope is None \
                or len(mod.scope.path) != 1:  # a top-level block, not a same-named submodule
            return out
        train = args[1] if len(args) > 1 else kwargs.get("train", False)
        if not train or not mod.has_rng("dropout"):
            return out
        return channel_dropout(out, self.rate, mod.make_rng("dropout"))

    def apply(self, variables: Mapping, *args: Any, **kwargs: Any) -> Any:
        with nn.intercept_methods(self._interceptor):
            return self.module.apply(variables, *args, **kwargs)


def with_stage_dropout(module: Any, params: Mapping, rate: float, model_name: str) -> Any:
    """``module`` itself for ``rate == 0``, else a :class:`StageDropout` over its ResNet stages
    (one-line error for a model without them)."""
    if rate <= 0:
        return module
    stages = stage_ends(params)
    if not stages:
        raise JaxnetsError(f"--dropout needs a ResNet (blocks named layer<S>_<B>); {model_name} has none")
    return StageDropout(module, float(rate), stages)
