"""Jitted train and eval steps.

``make_train_step`` returns ``step(state, images, labels, mask=None, transform_args=None)``:

- ``images`` uint8 NHWC, pixel values 0..255, normalised inside the jit with
  ``normalize=(mean, std)`` (see :func:`normalize_images`);
- ``mask`` marks the valid examples of a padded batch (the loss is a mean over them);
- ``transform_args`` is any pytree (a mask, scores, a :class:`~jaxnets.transforms.Codebook`)
  handed to ``param_transform(params, transform_args)`` and to the loss. It is a traced
  argument: new *values* never recompile, only a new structure/shape does.

The state is donated; BN in train mode updates ``batch_stats``; the loss is computed in
float32 whatever the compute dtype; metrics come back as device arrays (``loss``, ``correct``,
``count`` plus whatever the loss returns) — nothing is pulled to the host inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets.errors import JaxnetsError
from jaxnets.precision import PRECISIONS
from jaxnets.train.state import TrainableMask, TrainState

LossFn = Callable[..., Any]  # (logits, labels, mask, params, transform_args) -> loss | (loss, aux)
ParamTransform = Callable[[Any, Any], Any]  # (params, transform_args) -> params for the model


def resolve_precision(precision: str) -> str:
    """``auto`` is bf16 on GPU/TPU and fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise JaxnetsError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "auto":
        return "bf16" if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else "fp32"
    return precision


def compute_dtype(precision: str) -> Any:
    return jnp.bfloat16 if resolve_precision(precision) == "bf16" else jnp.float32


def normalize_images(images: jax.Array, normalize: tuple[Sequence[float], Sequence[float]] | None,
                     dtype: Any = jnp.float32) -> jax.Array:
    """Pixel values 0..255 (uint8 NHWC) → ``(x/255 - mean) / std`` in float32, then ``dtype``.

    The arithmetic is ``jaxnets.data.transforms.normalize`` (torchvision's order, so float32
    agrees bit for bit with the PyTorch pipelines); ``normalize=None`` only scales to [0, 1].
    """
    from jaxnets.data.transforms import normalize as _normalize

    mean, std = normalize if normalize is not None else ((0.0,), (1.0,))
    return _normalize(jnp.asarray(images), mean, std).astype(dtype)


def cross_entropy(logits: jax.Array, labels: jax.Array, mask: jax.Array,
                  params: Any = None, transform_args: Any = None) -> jax.Array:
    """Mean cross-entropy over the valid examples (float32)."""
    del params, transform_args
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
    m = mask.astype(jnp.float32)
    return jnp.sum(losses * m) / jnp.maximum(jnp.sum(m), 1.0)


def with_compute_dtype(model: Any, dtype: Any) -> Any:
    # Flax modules in jaxnets carry their compute dtype; params stay float32.
    if dtype != jnp.float32 and hasattr(model, "clone") and hasattr(model, "dtype"):
        return model.clone(dtype=dtype)
    return model


def _apply_fn(model: Any, dtype: Any) -> Callable[..., Any]:
    model = with_compute_dtype(model, dtype)
    return model.apply if hasattr(model, "apply") else model


class Step:
    """A jitted step plus the host-side checks around it (``.jitted`` is the jax function)."""

    def __init__(self, jitted: Callable[..., Any], mesh: Any, kind: str):
        self.jitted = jitted
        self.mesh = mesh
        self.kind = kind

    def _place(self, images: Any, labels: Any, mask: Any) -> tuple[Any, Any, Any]:
        if mask is None:
            mask = np.ones(np.shape(labels)[0], bool)
        if self.mesh is not None:
            from jaxnets.train.parallel import shard_batch

            images, labels, mask = shard_batch(self.mesh, images, labels, mask)
        return images, labels, mask

    def _place_state(self, state: Any) -> Any:
        if self.mesh is None:
            return state
        from jaxnets.train.parallel import replicate, replicated

        probe = jax.tree_util.tree_leaves(state)
        sharding = getattr(probe[0], "sharding", None) if probe else None
        if sharding is None or not sharding.is_equivalent_to(replicated(self.mesh), 0):
            state = replicate(self.mesh, state)
        return state

    def __call__(self, state: Any, images: Any, labels: Any, mask: Any = None,
                 transform_args: Any = None) -> Any:
        images, labels, mask = self._place(images, labels, mask)
        return self.jitted(self._place_state(state), images, labels, mask, transform_args)


def make_train_step(
    model: Any,
    loss_fn: LossFn | None = None,
    *,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    param_transform: ParamTransform | None = None,
    trainable_mask: TrainableMask | Callable[[TrainState, Any], TrainableMask] = None,
    precision: str = "fp32",
    mesh: Any = None,
    train_mode: bool = True,
    mask_gradients: bool = True,
    rng_names: Sequence[str] = ("dropout",),
    donate: bool = True,
) -> Step:
    """A pure, jitted ``step(state, images, labels, mask, transform_args) -> (state, metrics)``.

    ``model``: the Flax module (or an ``apply(variables, x, train=…, rngs=…, mutable=…)``).
    ``loss_fn(logits, labels, mask, params, transform_args)`` returns the loss or
    ``(loss, aux_metrics)``; ``params`` are the state's raw params (before the transform), so a
    regulariser over scores or free weights can read them. Default: :func:`cross_entropy`.
    ``trainable_mask``: a static tree (Python-bool leaves: closed over) or a function
    ``(state, transform_args) -> tree`` evaluated inside the jit (elementwise masks that change
    between rounds, e.g. ``lambda s, cb: cb.trainable_mask()``).
    ``train_mode=False`` runs the model with ``train=False`` (BN frozen on running stats).
    ``mesh``: a 1-D ``("data",)`` mesh (see ``jaxnets.train.parallel``); the batch is sharded
    and the state kept replicated. The same step serves 1 and N devices.
    """
    loss_fn = loss_fn or cross_entropy
    dtype = compute_dtype(precision)
    apply = _apply_fn(model, dtype)

    def train_step(state: TrainState, images: jax.Array, labels: jax.Array, mask: jax.Array,
                   transform_args: Any) -> tuple[TrainState, dict]:
        x = normalize_images(images, normalize, dtype)
        key = jax.random.fold_in(state.key, state.step)
        rngs = {name: jax.random.fold_in(key, i) for i, name in enumerate(rng_names)}
        has_bn = bool(jax.tree_util.tree_leaves(state.batch_stats))

        def loss_of(params: Any) -> tuple[jax.Array, tuple]:
            p = param_transform(params, transform_args) if param_transform else params
            variables = {"params": p}
            if has_bn:
                variables["batch_stats"] = state.batch_stats
            if train_mode and has_bn:
                logits, new_vars = apply(variables, x, train=True, rngs=rngs,
                                         mutable=["batch_stats"])
                new_bs = new_vars["batch_stats"]
            else:
                logits = apply(variables, x, train=train_mode, rngs=rngs)
                new_bs = state.batch_stats
            logits = logits.astype(jnp.float32)
            out = loss_fn(logits, labels, mask, params, transform_args)
            loss, aux = out if isinstance(out, tuple) else (out, {})
            return loss.astype(jnp.float32), (logits, new_bs, aux)

        (loss, (logits, new_bs, aux)), grads = jax.value_and_grad(loss_of, has_aux=True)(
            state.params)
        trainable = (trainable_mask(state, transform_args) if callable(trainable_mask)
                     else trainable_mask)
        new_state = state.apply_gradients(grads, trainable=trainable,
                                          mask_gradients=mask_gradients, batch_stats=new_bs)
        valid = mask.astype(bool)
        correct = jnp.sum((jnp.argmax(logits, -1) == labels) & valid)
        metrics = {"loss": loss, "correct": correct.astype(jnp.int32),
                   "count": jnp.sum(valid).astype(jnp.int32), **dict(aux)}
        return new_state, metrics

    kwargs: dict[str, Any] = {"donate_argnums": (0,) if donate else ()}
    if mesh is not None:
        from jaxnets.train.parallel import replicated

        kwargs["out_shardings"] = (replicated(mesh), replicated(mesh))
    return Step(jax.jit(train_step, **kwargs), mesh, "train")


def make_eval_step(
    model: Any,
    *,
    normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    param_transform: ParamTransform | None = None,
    precision: str = "fp32",
    mesh: Any = None,
    top_k: int = 5,
) -> Step:
    """A jitted ``eval(variables_or_state, images, labels, mask, transform_args) -> dict``.

    Returns per-example device arrays: ``logits`` (float32), ``correct`` (top-1, False where
    the example is padding), ``correct_topk`` (top-``top_k``), ``loss`` (cross-entropy, 0 on
    padding) and ``mask``. BN uses running statistics, dropout is off.
    """
    dtype = compute_dtype(precision)
    apply = _apply_fn(model, dtype)

    def eval_step(variables: Mapping, images: jax.Array, labels: jax.Array, mask: jax.Array,
                  transform_args: Any) -> dict:
        x = normalize_images(images, normalize, dtype)
        variables = dict(variables)
        if param_transform:
            variables["params"] = param_transform(variables["params"], transform_args)
        logits = apply(variables, x, train=False).astype(jnp.float32)
        valid = mask.astype(bool)
        correct = (jnp.argmax(logits, -1) == labels) & valid
        k = min(top_k, logits.shape[-1])
        top = jax.lax.top_k(logits, k)[1]
        correct_topk = jnp.any(top == labels[:, None], axis=-1) & valid
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {"logits": logits, "correct": correct, "correct_topk": correct_topk,
                "loss": jnp.where(valid, losses, 0.0), "mask": valid}

    kwargs: dict[str, Any] = {}
    if mesh is not None:
        from jaxnets.train.parallel import data_sharding

        kwargs["out_shardings"] = data_sharding(mesh)
    jitted = jax.jit(eval_step, **kwargs)

    class EvalStep(Step):
        def __call__(self, variables: Any, images: Any, labels: Any, mask: Any = None,
                     transform_args: Any = None) -> dict:
            if isinstance(variables, TrainState):
                variables = variables.variables
            images, labels, mask = self._place(images, labels, mask)
            variables = self._place_state(variables)
            return self.jitted(variables, images, labels, mask, transform_args)

    return EvalStep(jitted, mesh, "eval")
