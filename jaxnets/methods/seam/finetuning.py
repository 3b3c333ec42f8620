"""Supervised SGD training with the best test accuracy kept — the original's
``defect_inherit/finetuner.finetune`` — run by ``jaxnets.train.loop.fit``.

One function, :func:`train_keep_best`, serves every SGD training of indirect reuse (specs/seam.md
§2.10): step 1 of ``seam finetune`` (only the new output layer, ``trainable``), step 3 and the
standard fine-tuning baseline (every layer, the output layer in its own SGD group:
:func:`output_layer_sgd`), and the retrain baseline (one SGD). All run the model in train mode
(BN statistics update, dropout on), test after every epoch, keep the variables of the best test
accuracy (ties go to the later epoch: ``acc >= best``) and stop after ``early_stop`` epochs
without a new best (``-1``: never).

The kept snapshot and the rule's numbers live in the :class:`~jaxnets.train.state.TrainState`'s
``extras`` (updated in fit's ``end_epoch``), so every checkpoint holds the whole run and a resumed
run ends as an uninterrupted one. :class:`FitPlace` says where a fit writes (nothing by default).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnets.models.api import init_variables
from jaxnets.models.registry import ModelSpec
from jaxnets.train import loop  # fit is looked up at call time (tests wrap it)
from jaxnets.train.state import TrainableMask, TrainState, device_copy, host_copy
from jaxnets.train.steps import make_train_step, normalize_images
from jaxnets.transforms import masks as mask_ops

Normalize = tuple[tuple[float, ...], tuple[float, ...]]


def sgd(lr: float, momentum: float = 0.0, weight_decay: float = 1e-4) -> optax.GradientTransformation:
    """PyTorch's ``SGD(lr, momentum, weight_decay)``: the decay is added to the gradient, then the
    momentum buffer (dampening 0, not Nesterov) — optax's trace with the same first step."""
    parts = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
    return optax.chain(*parts, optax.sgd(lr, momentum=momentum or None))


def output_layer_sgd(head: str, lr_hidden: float, lr_output: float, *, momentum: float,
                     weight_decay: float) -> optax.GradientTransformation:
    """Two parameter groups, as the original's fine-tuning optimisers: the top-level output layer
    ``head`` at ``lr_output``, everything else at ``lr_hidden``; shared momentum and decay."""
    def labels(params: Mapping) -> dict:
        # A label per top-level module (a string prefix of the params tree, as multi_transform allows).
        return {k: "head" if k == head else "body" for k in params}

    return optax.multi_transform({"body": sgd(lr_hidden, momentum, weight_decay),
                                  "head": sgd(lr_output, momentum, weight_decay)}, labels)


def with_new_output_layer(spec: ModelSpec, module: Any, variables: Mapping, seed: int) -> dict:
    """``variables`` with a freshly initialised K-way output layer (``module`` is the K-way net;
    the initialisation is the zoo's default, PyTorch's for a ``Linear``)."""
    fresh = init_variables(spec, module, seed)["params"][spec.head]
    out = {"params": {**variables["params"], spec.head: fresh}}
    if variables.get("batch_stats"):
        out["batch_stats"] = variables["batch_stats"]
    return out


@dataclass(frozen=True)
class FitPlace:
    """Where one ``fit`` writes: nowhere (the default), or a run folder with its own metrics file
    and checkpoints (``run_dir``), or a stage of a longer run (a shared ``metrics`` writer and a
    ``checkpoints`` folder of its own). ``resume``: a checkpoints folder to continue from."""

    run_dir: Path | None = None
    checkpoints: Path | None = None
    metrics: Any = None
    resume: Path | None = None
    model_name: str | None = None
    config: Mapping[str, Any] | None = None


def count_correct(predict: Callable, loader: Any, *args: Any) -> tuple[int, int]:
    """(correct, images) of ``predict(*args, images) -> labels`` over one pass of ``loader``."""
    correct, n = [], 0
    for b in loader.epoch(0):
        correct.append(jnp.sum((predict(*args, b.images) == b.labels) & b.mask))
        n += b.num_valid
    return int(sum(int(c) for c in jax.device_get(correct))), n


def eval_predictor(module: Any, norm: Normalize) -> Callable:
    """A jitted ``predict(variables, images) -> argmax`` in eval mode (BN statistics, no dropout)."""
    return jax.jit(lambda v, x: jnp.argmax(module.apply(v, normalize_images(x, norm), train=False), -1))


def train_keep_best(model: Any, eval_module: Any, variables: Mapping, tx: optax.GradientTransformation,
                    train_loader: Any, test_loader: Any, norm: Normalize, *, epochs: int, early_stop: int,
                    seed: int, name: str, trainable: TrainableMask = None, keep: Any = None, start_step: int = 0,
                    place: FitPlace = FitPlace(), log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train ``variables`` (``model``: the module or a :class:`~.dropout.StageDropout` over it)
    epoch by epoch with ``tx``; returns (the best variables on the host, a summary).

    ``trainable`` freezes what it marks False (step 1: all but the output layer); ``keep``
    (binary masks, non-original ``--enforce-masks``) multiplies the params before every forward,
    so pruned weights stay 0. ``start_step``: the global step this training starts at (a stage
    of a longer run: the dropout keys and the metrics rows continue). ``name`` tags the rows
    (``stage``) and the log lines.
    """
    transform = (lambda p, k: mask_ops.apply_mask(p, k)) if keep is not None else None
    keep = jax.device_put(keep) if keep is not None else None  # once, not at every step

    def final(params: Any, batch_stats: Any) -> dict:
        out = {"params": params if keep is None else mask_ops.apply_mask(params, keep)}
        if batch_stats:
            out["batch_stats"] = batch_stats
        return out

    # The state donates its buffers: work on a copy so the caller's variables survive.
    start = jax.tree_util.tree_map(jnp.array, dict(variables))
    extras = {"best": device_copy(final(start["params"], start.get("batch_stats"))),
              "best_correct": jnp.asarray(-1, jnp.int32), "best_epoch": jnp.asarray(-1, jnp.int32),
              "since": jnp.asarray(0, jnp.int32), "epochs_done": jnp.asarray(0, jnp.int32),
              "test_images": jnp.asarray(0, jnp.int32)}
    state = TrainState.create(model, start, tx, seed=seed, extras=extras)
    state = state.replace(step=jnp.asarray(start_step, jnp.int32))
    step = make_train_step(model, normalize=norm, trainable_mask=trainable, param_transform=transform)
    predict = eval_predictor(eval_module, norm)

    def evaluate(st: TrainState) -> dict:
        correct, n = count_correct(predict, test_loader, final(st.params, st.batch_stats))
        return {"test_correct": correct, "test_images": n, "test_acc": correct / max(n, 1)}

    def end_epoch(st: TrainState, row: dict) -> tuple[TrainState, bool]:
        ex = dict(st.extras)
        epoch, correct = int(row["epoch"]), int(row["test_correct"])
        if correct >= int(ex["best_correct"]):
            ex.update(best=device_copy(final(st.params, st.batch_stats)), best_correct=jnp.asarray(correct, jnp.int32),
                      best_epoch=jnp.asarray(epoch, jnp.int32), since=jnp.asarray(0, jnp.int32))
        else:
            ex["since"] = jnp.asarray(int(ex["since"]) + 1, jnp.int32)
        ex["epochs_done"] = jnp.asarray(epoch + 1, jnp.int32)
        ex["test_images"] = jnp.asarray(int(row["test_images"]), jnp.int32)
        best_acc = int(ex["best_correct"]) / max(int(row["test_images"]), 1)
        row.update({"best_acc": best_acc, "best_epoch": int(ex["best_epoch"])})
        log(f"{name} epoch {epoch}: test acc {row['test_acc']:.4f} (best {best_acc:.4f} at epoch {row['best_epoch']})")
        return st.replace(extras=ex), 0 < early_stop <= int(ex["since"])

    fitted = loop.fit(state, step, train_loader, epochs=epochs, run_dir=place.run_dir, eval_fn=evaluate,
                      checkpoints=place.checkpoints, metrics=place.metrics, resume=place.resume,
                      model_name=place.model_name, config=place.config, row_fields={"stage": name},
                      transform_args=keep, progress=False, end_epoch=end_epoch)
    ex = fitted.state.extras
    n = int(ex["test_images"])
    summary = {"acc": int(ex["best_correct"]) / max(n, 1), "correct": int(ex["best_correct"]), "n": n,
               "epoch": int(ex["best_epoch"]), "epochs_run": int(ex["epochs_done"]),
               "end_step": int(fitted.state.step), "resumed_from": fitted.resumed_from}
    return host_copy(ex["best"]), summary
