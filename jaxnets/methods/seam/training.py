"""The re-engineering loop (specs/seam.md §2.5–§2.7, §8.4) on ready loaders: :func:`train_masks`.

``jaxnets.methods.seam.reengineer`` (the library entry point, in :mod:`.runner`) opens the target
problem's data and calls it; its settings are a :class:`ReengineerConfig` (lr_head, lr_mask,
alpha, epochs, early_stop and seed are used here).

Trainable: ``{"scores", "head"}``; frozen: the pretrained ``params`` and ``batch_stats`` (they are
arguments of the jitted steps and never outputs, so they stay bitwise the input).
Two Adam optimisers with separate states: ``opt_head`` (head only, epochs 0, 5, 10, …) and
``opt_joint`` (scores at ``lr_mask``, head at ``lr_head``, every other epoch); each state's step
counter advances only in its own epochs. PyTorch's Adam defaults (ε = 1e-8 matters here).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets.methods.seam import core
from jaxnets.methods.seam.config import ReengineerConfig
from jaxnets.methods.seam.selection import Selector
from jaxnets.train.steps import normalize_images

HEAD_EVERY = 5  # epoch e is head-only iff e % 5 == 0


def is_head_epoch(epoch: int) -> bool:
    return epoch % HEAD_EVERY == 0


@dataclass
class Result:
    scores: Any  # chosen snapshot (host arrays)
    head: Any
    epoch: int | None
    used_fallback: bool
    acc: float
    retention: float
    acc_pre: float
    n_entries: int
    history: list[dict] = field(default_factory=list)
    selector: Selector | None = None
    final_scores: Any = None  # the last epoch's (for tests and diagnostics)
    final_head: Any = None
    opt_states: dict = field(default_factory=dict)


def make_optimizers(cfg: ReengineerConfig) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """``opt_head`` over the head; ``opt_joint`` over ``{"scores", "head"}`` (two groups)."""
    opt_head = optax.adam(cfg.lr_head, b1=0.9, b2=0.999, eps=1e-8)

    def labels(tree: Mapping) -> dict:
        return {"scores": jax.tree_util.tree_map(lambda _: "mask", tree["scores"]),
                "head": jax.tree_util.tree_map(lambda _: "head", tree["head"])}

    opt_joint = optax.multi_transform(
        {"mask": optax.adam(cfg.lr_mask, b1=0.9, b2=0.999, eps=1e-8),
         "head": optax.adam(cfg.lr_head, b1=0.9, b2=0.999, eps=1e-8)}, labels)
    return opt_head, opt_joint


class Engine:
    """Jitted steps for one (model, head, normalisation, α) — reused across epochs."""

    def __init__(self, module: Any, head_module: Any, normalize: tuple[Sequence[float], Sequence[float]],
                 cfg: ReengineerConfig, n_entries: int, *, mesh: Any = None):
        self.module, self.head_module = module, head_module
        self.normalize = (tuple(normalize[0]), tuple(normalize[1]))
        self.cfg, self.n, self.mesh = cfg, n_entries, mesh
        self.opt_head, self.opt_joint = make_optimizers(cfg)
        alpha = float(cfg.alpha)

        def loss_fn(scores: Any, head: Any, params: Any, bs: Any, x: jax.Array, labels: jax.Array,
                    valid: jax.Array, key: jax.Array) -> tuple[jax.Array, dict]:
            logits = core.masked_logits(module, params, bs, scores, x, dropout_rng=key)
            out = head_module.apply({"params": head}, logits)
            return core.seam_loss(out, labels, valid, scores, alpha, n_entries)

        def prep(images: jax.Array) -> jax.Array:
            return normalize_images(images, self.normalize)

        def step_head(head: Any, opt_state: Any, scores: Any, params: Any, bs: Any, images: jax.Array,
                      labels: jax.Array, valid: jax.Array, key: jax.Array) -> tuple:
            # Scores get no update in head-only epochs (their gradient is discarded, §2.6).
            (loss, aux), g = jax.value_and_grad(
                lambda h: loss_fn(jax.lax.stop_gradient(scores), h, params, bs, prep(images),
                                  labels, valid, key), has_aux=True)(head)
            updates, opt_state = self.opt_head.update(g, opt_state, head)
            return optax.apply_updates(head, updates), opt_state, {"loss": loss, **aux}

        def step_joint(trainable: Any, opt_state: Any, params: Any, bs: Any, images: jax.Array,
                       labels: jax.Array, valid: jax.Array, key: jax.Array) -> tuple:
            (loss, aux), g = jax.value_and_grad(
                lambda t: loss_fn(t["scores"], t["head"], params, bs, prep(images), labels, valid, key),
                has_aux=True)(trainable)
            updates, opt_state = self.opt_joint.update(g, opt_state, trainable)
            return optax.apply_updates(trainable, updates), opt_state, {"loss": loss, **aux}

        def correct(scores: Any, head: Any, params: Any, bs: Any, images: jax.Array,
                    labels: jax.Array, valid: jax.Array) -> jax.Array:
            logits = core.masked_logits(module, params, bs, scores, prep(images))
            pred = jnp.argmax(head_module.apply({"params": head}, logits), -1)
            return jnp.sum((pred == labels) & valid.astype(bool))

        def predict_original(params: Any, bs: Any, images: jax.Array) -> jax.Array:
            return jnp.argmax(core.apply_backbone(module, params, bs, prep(images)), -1)

        self.step_head = jax.jit(step_head, donate_argnums=(0, 1))
        self.step_joint = jax.jit(step_joint, donate_argnums=(0, 1))
        self.correct = jax.jit(correct)
        self.predict_original = jax.jit(predict_original)

    def place(self, *arrays: Any) -> tuple:
        if self.mesh is None:
            return arrays
        from jaxnets.train.parallel import shard_batch

        return shard_batch(self.mesh, *arrays)

    def replicate(self, tree: Any) -> Any:
        if self.mesh is None:
            return tree
        from jaxnets.train.parallel import replicate

        return replicate(self.mesh, tree)

    def accuracy(self, scores: Any, head: Any, params: Any, bs: Any, loader: Any) -> float:
        total, n = [], 0
        for batch in loader.epoch(0):
            images, labels, valid = self.place(batch.images, batch.labels, batch.mask)
            total.append(self.correct(scores, head, params, bs, images, labels, valid))
            n += batch.num_valid
        return float(sum(int(c) for c in jax.device_get(total))) / max(n, 1)

    def original_predictions(self, params: Any, bs: Any, loader: Any) -> tuple[np.ndarray, np.ndarray]:
        preds, labels = [], []
        for batch in loader.epoch(0):
            (images,) = self.place(batch.images)
            p = np.asarray(self.predict_original(params, bs, images))
            preds.append(p[batch.mask])
            labels.append(batch.labels[batch.mask])
        return np.concatenate(preds), np.concatenate(labels)


def _copy(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), jax.device_get(tree))


def train_masks(
    module: Any, variables: Mapping, train_loader: Any, test_loader: Any, *, num_classes: int,
    num_targets: int, normalize: tuple[Sequence[float], Sequence[float]], acc_pre: float,
    cfg: ReengineerConfig, exclude: Any = None, mesh: Any = None,
    on_epoch: Callable[[dict], None] | None = None, head_init: Any = None,
) -> Result:
    """Learn scores + head for the target problem; select the snapshot of §2.7.

    ``acc_pre``: the original model's accuracy on the target test set (must be in (0, 1]).
    ``on_epoch(row)`` is called after every epoch's evaluation (logging, progress).
    """
    params = variables["params"]
    bs = variables.get("batch_stats") or {}
    scores = core.init_scores(params, exclude)
    n = core.num_entries(scores)
    head_module, head = core.init_head(num_classes, num_targets, cfg.seed)
    if head_init is not None:
        head = head_init
    eng = Engine(module, head_module, normalize, cfg, n, mesh=mesh)
    head_state = eng.opt_head.init(head)
    trainable = {"scores": scores, "head": head}
    joint_state = eng.opt_joint.init(trainable)
    params_d, bs_d = eng.replicate(params), eng.replicate(bs)
    trainable, head_state, joint_state = eng.replicate((trainable, head_state, joint_state))
    selector = Selector(acc_pre, cfg.early_stop)
    base = jax.random.key(cfg.seed)
    best: tuple | None = None
    bak: tuple | None = None
    history: list[dict] = []
    global_step = 0
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        head_only = is_head_epoch(epoch)
        losses = []
        for batch in train_loader.epoch(epoch):
            images, labels, valid = eng.place(batch.images, batch.labels, batch.mask)
            key = jax.random.fold_in(base, global_step)
            if head_only:
                new_head, head_state, m = eng.step_head(trainable["head"], head_state,
                                                        trainable["scores"], params_d, bs_d,
                                                        images, labels, valid, key)
                trainable = {"scores": trainable["scores"], "head": new_head}
            else:
                trainable, joint_state, m = eng.step_joint(trainable, joint_state, params_d, bs_d,
                                                           images, labels, valid, key)
            losses.append(m)
            global_step += 1
        fetched = jax.device_get(losses)
        acc = eng.accuracy(trainable["scores"], trainable["head"], params_d, bs_d, test_loader)
        kept = core.count_kept(trainable["scores"])
        r = kept / n
        decision = selector.update(epoch, acc, r)
        if decision.record_best:
            best = (_copy(trainable["scores"]), _copy(trainable["head"]), epoch, acc, r)
        if decision.record_bak:
            bak = (_copy(trainable["scores"]), _copy(trainable["head"]), epoch, acc, r)
        row = {
            "epoch": epoch, "phase": "head" if head_only else "head+mask",
            "train_loss": float(np.mean([f["loss"] for f in fetched])) if fetched else float("nan"),
            "train_ce": float(np.mean([f["ce"] for f in fetched])) if fetched else float("nan"),
            "test_acc": acc, "retention": r, "kept": kept, "event": decision.event,
            "counter": selector.counter, "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if decision.stop:
            break
    chosen = best if best is not None else bak
    assert chosen is not None, "at least one epoch must run"
    c_scores, c_head, c_epoch, c_acc, c_r = chosen
    return Result(scores=c_scores, head=c_head, epoch=c_epoch, used_fallback=best is None,
                  acc=c_acc, retention=c_r, acc_pre=acc_pre, n_entries=n, history=history,
                  selector=selector, final_scores=_copy(trainable["scores"]),
                  final_head=_copy(trainable["head"]),
                  opt_states={"head": jax.device_get(head_state), "joint": jax.device_get(joint_state)})
