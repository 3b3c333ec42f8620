"""Shared set-up for the training-engine tests: the digits CNN (with BatchNorm) and batches."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
import optax

from jaxnets.models.api import init_variables
from jaxnets.models.registry import NORMALIZATIONS, get_spec
from jaxnets.train import TrainState

NORM = NORMALIZATIONS["digits"]


def digits_model(seed: int = 0) -> tuple[Any, Any, dict]:
    spec = get_spec("digits_cnn")
    model = spec.create()
    return spec, model, init_variables(spec, model, seed=seed)


def make_state(tx: optax.GradientTransformation | None = None, seed: int = 0,
               **kwargs: Any) -> tuple[Any, TrainState]:
    _, model, variables = digits_model(seed)
    return model, TrainState.create(model, variables, tx or optax.adam(1e-3), seed=seed,
                                    **kwargs)


def random_batch(n: int = 16, seed: int = 0, size: int = 8, channels: int = 1,
                 classes: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    labels = rng.integers(0, classes, n).astype(np.int32)
    return images, labels, np.ones(n, bool)


def digits_loader(batch_size: int = 64, seed: int = 0, split: str = "train", **kw: Any):
    from jaxnets.data import DigitsSource, Loader

    return Loader(DigitsSource(split), batch_size, shuffle=split == "train", seed=seed,
                  prefetch=0, **kw)


def host(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def bits(x: Any) -> np.ndarray:
    """The raw bits of a float32 array (so -0.0 and +0.0 differ)."""
    return np.asarray(x, np.float32).view(np.uint32)
