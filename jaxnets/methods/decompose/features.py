"""Pooled penultimate features (the ``features`` sow) of a model in eval mode, jitted."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data.transforms import normalize
from jaxnets.models.api import apply_with_intermediates


@functools.lru_cache(maxsize=8)
def feature_step(module: Any, mean: tuple[float, ...], std: tuple[float, ...],
                 name: str = "features") -> Callable:
    """``step(variables, images_uint8) -> (features (B, D), logits (B, C))``, BN in eval mode."""
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)

    def step(variables: Mapping, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = normalize(images, m, s)
        logits, inter = apply_with_intermediates(module, variables, x, (name,), train=False)
        return inter[name].astype(jnp.float32), logits.astype(jnp.float32)

    return jax.jit(step)


def iter_features(module: Any, variables: Mapping, loader: Any, mean: Any, std: Any,
                  description: str = "features") -> Iterator[tuple[jax.Array, Any]]:
    """``(features, batch)`` per batch of ``loader.epoch(0)`` (features stay on the device)."""
    from jaxnets.ui import progress

    step = feature_step(module, tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()))
    with progress(description, loader.steps_per_epoch) as advance:
        for batch in loader.epoch(0):
            feats, _ = step(variables, jnp.asarray(batch.images))
            yield feats, batch
            advance()


def all_features(module: Any, variables: Mapping, loader: Any, mean: Any, std: Any,
                 description: str = "features") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every valid example's features (N, D), labels (N,) and source positions (N,)."""
    fs, ls, idx = [], [], []
    for feats, batch in iter_features(module, variables, loader, mean, std, description):
        m = np.asarray(batch.mask, bool)
        fs.append(np.asarray(feats)[m])
        ls.append(np.asarray(batch.labels)[m])
        idx.append(np.asarray(batch.indices)[m])
    return np.concatenate(fs), np.concatenate(ls), np.concatenate(idx)
