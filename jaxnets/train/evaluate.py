"""Evaluation over a loader: top-1/top-5 and per-class accuracy, optional logits.

One jitted step per batch; the padded tail of the last batch is excluded through the loader's
validity mask; counts accumulate on the device and are fetched once at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data.transforms import normalize

ParamTransform = Callable[[Mapping, Any], Mapping]


@dataclass
class EvalResult:
    top1: float
    top5: float | None
    n: int
    correct: int
    per_class_correct: np.ndarray
    per_class_total: np.ndarray
    logits: np.ndarray | None = None
    labels: np.ndarray | None = None
    indices: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def per_class_accuracy(self) -> list[float | None]:
        return [float(c / t) if t else None
                for c, t in zip(self.per_class_correct, self.per_class_total, strict=True)]

    def to_json(self) -> dict:
        return {
            "top1": self.top1, "top5": self.top5, "n": self.n, "correct": self.correct,
            "per_class": [{"class": i, "correct": int(c), "total": int(t),
                           "accuracy": a}
                          for i, (c, t, a) in enumerate(zip(self.per_class_correct,
                                                            self.per_class_total,
                                                            self.per_class_accuracy(),
                                                            strict=True))],
            **self.extra,
        }


def make_eval_step(module: Any, mean: Any, std: Any, num_classes: int,
                   param_transform: ParamTransform | None = None) -> Callable:
    """A jitted ``step(variables, transform_args, counts, images, labels, mask)``.

    ``counts`` is a dict of device arrays accumulated across steps (donated).
    """

    def step(variables, transform_args, counts, images, labels, mask):
        if param_transform is not None:
            variables = {**variables, "params": param_transform(variables["params"], transform_args)}
        x = normalize(images, mean, std)
        logits = module.apply(variables, x, train=False).astype(jnp.float32)
        top1 = jnp.argmax(logits, axis=-1) == labels
        k = min(5, logits.shape[-1])
        topk = jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)
        valid = mask.astype(jnp.int32)
        new = {
            "correct": counts["correct"] + jax.ops.segment_sum(top1 * valid, labels, num_classes),
            "total": counts["total"] + jax.ops.segment_sum(valid, labels, num_classes),
            "top5": counts["top5"] + jnp.sum(topk * valid),
        }
        return new, logits

    return jax.jit(step, donate_argnums=(2,))


def evaluate(
    module: Any, variables: Mapping, loader: Any, mean: Any, std: Any, num_classes: int, *,
    param_transform: ParamTransform | None = None, transform_args: Any = None,
    keep_logits: bool = False, mesh: Any = None, description: str = "eval",
) -> EvalResult:
    """Run the model over every batch of ``loader.epoch(0)``."""
    from jaxnets.ui import progress

    step = _cached_step(module, tuple(np.ravel(mean)), tuple(np.ravel(std)), num_classes,
                        param_transform)
    put = _placer(mesh)
    if mesh is not None:
        variables = jax.device_put(variables, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    counts = {"correct": jnp.zeros(num_classes, jnp.int32), "total": jnp.zeros(num_classes, jnp.int32),
              "top5": jnp.zeros((), jnp.int32)}
    kept: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray]] = []
    with progress(description, loader.steps_per_epoch) as advance:
        for batch in loader.epoch(0):
            images, labels, mask = put(batch.images), put(batch.labels), put(batch.mask)
            counts, logits = step(variables, transform_args, counts, images, labels, mask)
            if keep_logits:
                kept.append((logits, batch.labels, batch.mask, batch.indices))
            advance()
    counts = jax.device_get(counts)
    correct_pc, total_pc = np.asarray(counts["correct"]), np.asarray(counts["total"])
    n = int(total_pc.sum())
    correct = int(correct_pc.sum())
    result = EvalResult(
        top1=correct / n if n else float("nan"),
        top5=int(counts["top5"]) / n if n and num_classes > 5 else None,
        n=n, correct=correct, per_class_correct=correct_pc, per_class_total=total_pc,
    )
    if keep_logits and kept:
        m = np.concatenate([k[2] for k in kept])
        result.logits = np.concatenate([np.asarray(k[0]) for k in kept])[m]
        result.labels = np.concatenate([k[1] for k in kept])[m]
        result.indices = np.concatenate([k[3] for k in kept])[m]
    return result


@functools.lru_cache(maxsize=16)
def _cached_step(module, mean, std, num_classes, param_transform):
    return make_eval_step(module, np.asarray(mean, np.float32), np.asarray(std, np.float32),
                          num_classes, param_transform)


def _placer(mesh: Any) -> Callable:
    if mesh is None:
        return jnp.asarray
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    return lambda x: jax.device_put(x, sharding)
