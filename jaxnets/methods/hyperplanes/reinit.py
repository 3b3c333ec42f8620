"""Layer re-initialisation robustness (Zhang et al.; spec §3, §8.3).

For every conv layer of the registry and every donor (an earlier snapshot, or a fresh random
init for the ``rand`` row), the trained model's layer is replaced by the donor's (kernel + bias;
optionally its BatchNorm, or linears too), the model is evaluated, and the top-1 accuracy is
recorded. Nothing is mutated: a swap is a new tree sharing every untouched leaf
(:func:`jaxnets.transforms.surgery.swap_layer`), so "restore" is keeping the old tree.

Speed: the test set is normalised once and kept on the device as fixed-shape batches
``(steps, B, H, W, C)`` (the tail padded and masked), and one jitted function counts the correct
predictions of a whole pass (``lax.scan`` over the batches). The variables are a traced
*argument* with unchanged shapes, so a single compilation serves the baseline and every swap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.methods.hyperplanes.registry import LayerInfo


@dataclass
class EvalData:
    """A preprocessed test set: normalised float32 batches, labels, validity mask."""

    images: Any  # (steps, B, H, W, C) float32, on the device
    labels: Any  # (steps, B) int32
    mask: Any  # (steps, B) bool
    n: int


def prepare_data(images: np.ndarray, labels: np.ndarray, mean: Sequence[float],
                 std: Sequence[float], batch_size: int) -> EvalData:
    """Normalise (pixels 0..255 → (x/255 − mean)/std) once and pad to whole batches."""
    import jax.numpy as jnp

    from jaxnets.data.transforms import normalize

    n = len(labels)
    if n == 0:
        raise JaxnetsError("the test set is empty")
    b = max(1, min(batch_size, n))
    steps = -(-n // b)
    pad = steps * b - n
    x = normalize(np.asarray(images), mean, std)
    y = np.asarray(labels, np.int32)
    m = np.ones(n, bool)
    if pad:
        x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
        y = np.concatenate([y, np.zeros(pad, np.int32)])
        m = np.concatenate([m, np.zeros(pad, bool)])
    return EvalData(jnp.asarray(x.reshape(steps, b, *x.shape[1:])),
                    jnp.asarray(y.reshape(steps, b)), jnp.asarray(m.reshape(steps, b)), n)


def load_eval_data(spec: Any, source: Any, mean: Sequence[float], std: Sequence[float],
                   batch_size: int) -> EvalData:
    """The whole source through the eval loader's per-image transforms (resize for 224-px
    models), once."""
    from jaxnets.data.pipeline import eval_loader

    xs, ys, ms = [], [], []
    for batch in eval_loader(spec, source, batch_size).epoch(0):
        xs.append(np.asarray(batch.images))
        ys.append(np.asarray(batch.labels))
        ms.append(np.asarray(batch.mask, bool))
    m = np.concatenate(ms)
    return prepare_data(np.concatenate(xs)[m], np.concatenate(ys)[m], mean, std, batch_size)


def make_counter(module: Any, num_classes: int) -> Callable:
    """A jitted ``count(variables, images, labels, mask) -> (top1_correct, topk_correct)`` over
    all batches; ``k = min(5, num_classes)``."""
    import jax
    import jax.numpy as jnp

    k = min(5, num_classes)

    def count(variables, images, labels, mask):
        def body(carry, batch):
            x, y, m = batch
            logits = module.apply(variables, x, train=False).astype(jnp.float32)
            top1 = (jnp.argmax(logits, -1) == y) & m
            topk = jnp.any(jax.lax.top_k(logits, k)[1] == y[:, None], -1) & m
            return (carry[0] + top1.sum(dtype=jnp.int32), carry[1] + topk.sum(dtype=jnp.int32)), None

        zero = jnp.zeros((), jnp.int32)
        (c1, ck), _ = jax.lax.scan(body, (zero, zero), (images, labels, mask))
        return c1, ck

    return jax.jit(count)


@dataclass
class Evaluator:
    """Accuracy (percent) of any variables tree of one model on one prepared test set."""

    module: Any
    data: EvalData
    num_classes: int
    calls: int = 0
    _count: Callable | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._count = make_counter(self.module, self.num_classes)

    def counts(self, variables: Mapping) -> tuple[int, int]:
        import jax

        self.calls += 1
        c1, ck = jax.device_get(self._count(dict(variables), self.data.images, self.data.labels,
                                            self.data.mask))
        return int(c1), int(ck)

    def top1_top5(self, variables: Mapping) -> tuple[float, float]:
        c1, ck = self.counts(variables)
        return 100.0 * c1 / self.data.n, 100.0 * ck / self.data.n

    def compiled_versions(self) -> int:
        """How many times the count function was compiled (1 after any number of swaps)."""
        size = getattr(self._count, "_cache_size", None)
        return int(size()) if callable(size) else -1


def swap(variables: Mapping, layer: LayerInfo, donor: Mapping, *, include_bn: bool = False
         ) -> dict:
    """``variables`` with ``layer``'s kernel and bias taken from ``donor`` (and, with
    ``include_bn``, the BatchNorm right after it: scale, bias and running statistics)."""
    from jaxnets.transforms.surgery import swap_layer

    out = dict(variables)
    out["params"] = swap_layer(variables["params"], layer.path, donor["params"])
    if include_bn and layer.bn:
        out["params"] = swap_layer(out["params"], layer.bn, donor["params"], keys=None)
        if variables.get("batch_stats"):
            out["batch_stats"] = swap_layer(variables["batch_stats"], layer.bn,
                                            donor["batch_stats"], keys=None)
    return out


def reinit_grid(evaluator: Evaluator, variables: Mapping, layers: Sequence[LayerInfo],
                donors: Sequence[tuple[str, Mapping]], *, include_bn: bool = False,
                progress: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """``{label: [top-1 % per layer]}`` in donor order; a repeated label overwrites its row and
    keeps its first position (as the original's dict)."""
    rows: dict[str, list[float]] = {}
    for label, donor in donors:
        row = []
        for layer in layers:
            row.append(evaluator.top1_top5(swap(variables, layer, donor, include_bn=include_bn))[0])
            if progress is not None:
                progress()
        rows[label] = row
    return rows


def drop_matrix(top1: float, rows: Mapping[str, Sequence[float]]) -> np.ndarray:
    """``D[r, l] = (top1 − acc[r][l]) / top1`` (relative drop; negative = the reset helped)."""
    if not rows:
        return np.zeros((0, 0))
    acc = np.asarray([list(r) for r in rows.values()], dtype=np.float64)
    return (top1 - acc) / top1


def rand_seed(seed: int) -> int:
    """The seed of the ``rand`` row's fresh init, derived from ``--seed`` so it never equals the
    training init (which used ``--seed`` itself)."""
    return (int(seed) * 1_000_003 + 7919) % (2**31 - 1)
