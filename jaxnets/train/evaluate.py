"""Evaluation over a loader: top-1/top-5 and per-class accuracy, optional logits.

One jitted step per batch (``jaxnets.train.steps.make_eval_step``); the padded tail of the last
batch is excluded through the loader's validity mask; results are fetched once at the end.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

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
    loss: float | None = None  # mean cross-entropy over the examples (a validation loss)

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


def evaluate(
    module: Any, variables: Mapping, loader: Any, mean: Any, std: Any, num_classes: int, *,
    param_transform: ParamTransform | None = None, transform_args: Any = None,
    keep_logits: bool = False, mesh: Any = None, description: str = "eval",
) -> EvalResult:
    """Run the model over every batch of ``loader.epoch(0)``.

    The step is :func:`jaxnets.train.steps.make_eval_step` (one eval step in the project); its
    per-example outputs stay on the device until the end, so no step waits for the host.
    """
    from jaxnets.ui import progress

    step = _cached_step(module, tuple(float(v) for v in np.ravel(mean)),
                        tuple(float(v) for v in np.ravel(std)), param_transform, mesh)
    if mesh is not None:
        from jaxnets.train.parallel import replicate

        variables = replicate(mesh, variables)
    else:
        variables = jax.device_put(variables)  # once, not per batch
    outputs: list[tuple[dict, np.ndarray, np.ndarray | None]] = []
    with progress(description, loader.steps_per_epoch) as advance:
        for batch in loader.epoch(0):
            out = step(variables, batch.images, batch.labels, batch.mask, transform_args)
            if not keep_logits:
                out = {k: out[k] for k in ("correct", "correct_topk", "loss", "mask")}
            outputs.append((out, np.asarray(batch.labels), batch.indices))
            advance()
    fetched = _fetch([o for o, _, _ in outputs])
    labels = np.concatenate([lab for _, lab, _ in outputs]) if outputs else np.zeros(0, np.int64)
    valid = np.concatenate([f["mask"] for f in fetched]) if fetched else np.zeros(0, bool)
    top1 = np.concatenate([f["correct"] for f in fetched]) if fetched else np.zeros(0, bool)
    topk = np.concatenate([f["correct_topk"] for f in fetched]) if fetched else np.zeros(0, bool)
    losses = np.concatenate([f["loss"] for f in fetched]) if fetched else np.zeros(0, np.float32)
    labels_valid = labels[valid].astype(np.int64)
    correct_pc = np.bincount(labels_valid[top1[valid]], minlength=num_classes)[:num_classes]
    total_pc = np.bincount(labels_valid, minlength=num_classes)[:num_classes]
    n = int(valid.sum())
    correct = int(top1.sum())
    result = EvalResult(
        top1=correct / n if n else float("nan"),
        top5=int(topk.sum()) / n if n and num_classes > 5 else None,
        n=n, correct=correct, per_class_correct=correct_pc, per_class_total=total_pc,
        loss=float(np.sum(losses[valid], dtype=np.float64) / n) if n else None,
    )
    if keep_logits and fetched:
        result.logits = np.concatenate([f["logits"] for f in fetched])[valid]
        result.labels = labels[valid]
        result.indices = np.concatenate([ind for _, _, ind in outputs])[valid]
    return result


def _fetch(outputs: list[dict]) -> list[dict]:
    """Per-example outputs to the host. With several processes each holds only its slice of a
    batch-sharded array, so the slices are gathered (every process gets the whole batch)."""
    if jax.process_count() == 1:
        return jax.device_get(outputs)
    return [jax.tree_util.tree_map(np.asarray, multihost_utils.process_allgather(o, tiled=True))
            for o in outputs]


@functools.lru_cache(maxsize=16)
def _cached_step(module: Any, mean: tuple, std: tuple, param_transform: ParamTransform | None,
                 mesh: Any) -> Any:
    # One compiled step per (model, normalisation, transform, mesh): repeated evaluations reuse it.
    from jaxnets.train.steps import make_eval_step

    return make_eval_step(module, normalize=(mean, std), param_transform=param_transform, mesh=mesh)
