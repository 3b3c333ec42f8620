"""The re-engineering loop (specs/seam.md §2.5–§2.7, §8.4) on ready loaders: :func:`train_masks`.

``jaxnets.methods.seam.reengineer`` (the library entry point, in :mod:`.runner`) opens the target
problem's data and calls it; its settings are a :class:`ReengineerConfig` (lr_head, lr_mask,
alpha, epochs, early_stop, seed, checkpoint_every and precision are used here).

The epochs run in ``jaxnets.train.loop.fit`` (the project's one training engine): a
:class:`SeamState` holds everything re-engineering changes — the global step, the PRNG key data,
the trainable ``{"scores", "head"}``, both optimiser states, the best and fallback snapshots of
§2.7 and the selection rule's numbers — so a checkpoint of it (``<run_dir>/checkpoints``, at every
epoch end and every ``checkpoint_every`` steps) lets ``resume`` continue a killed run bit for bit.
Frozen: the pretrained ``params`` and ``batch_stats`` (``fit``'s ``transform_args``: arguments of
the jitted steps and never outputs, so they stay bitwise the input).

Two Adam optimisers with separate states: ``opt_head`` (head only, epochs 0, 5, 10, …) and
``opt_joint`` (scores at ``lr_mask``, head at ``lr_head``, every other epoch); each state's step
counter advances only in its own epochs. PyTorch's Adam defaults (ε = 1e-8 matters here). Dropout
draws from ``fold_in(key(seed), global step)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxnets.methods.seam import core
from jaxnets.methods.seam.config import ReengineerConfig
from jaxnets.methods.seam.selection import Decision, Selector
from jaxnets.train import loop  # fit is looked up at call time (tests wrap it)
from jaxnets.train.state import device_copy, host_copy
from jaxnets.train.steps import Step, compute_dtype, normalize_images, with_compute_dtype

HEAD_EVERY = 5  # epoch e is head-only iff e % 5 == 0


def is_head_epoch(epoch: int) -> bool:
    return epoch % HEAD_EVERY == 0


def epoch_phase(epoch: int) -> str:
    """What epoch ``epoch`` trains: ``"head"`` or ``"head+mask"``."""
    return "head" if is_head_epoch(epoch) else "head+mask"


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
    resumed_from: int | None = None  # the global step a resumed run restored (None: a fresh start)


class SeamState(flax.struct.PyTreeNode):
    """Everything one re-engineering changes (what a checkpoint holds; ``fit`` needs ``step``/``rng``)."""

    step: jax.Array  # global step (int32)
    rng: jax.Array  # raw key data of key(seed)
    trainable: dict  # {"scores", "head"}
    opt_head: Any  # Adam over the head (head-only epochs)
    opt_joint: Any  # Adam over {"scores" at lr_mask, "head" at lr_head}
    best: dict  # {"scores", "head"} at the selected epoch (meaningful once selection["best_epoch"] ≥ 0)
    bak: dict  # the fallback snapshot: largest acc − r (once selection["bak_epoch"] ≥ 0)
    selection: dict  # Selector.to_arrays()


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
    """Jitted steps for one (model, head, normalisation, α, precision, mesh), in ``fit``'s signature
    ``step(state, images, labels, mask, frozen) -> (state, metrics)`` (``frozen``: the pretrained
    ``{"params", "batch_stats"}``); the state is donated."""

    def __init__(self, module: Any, head_module: Any, normalize: tuple[Sequence[float], Sequence[float]],
                 cfg: ReengineerConfig, n_entries: int, *, mesh: Any = None):
        self.head_module = head_module
        self.normalize = (tuple(normalize[0]), tuple(normalize[1]))
        self.cfg, self.n, self.mesh = cfg, n_entries, mesh
        self.opt_head, self.opt_joint = make_optimizers(cfg)
        dtype = compute_dtype(cfg.precision)
        self.module = with_compute_dtype(module, dtype)  # bf16 compute; params, scores and head stay float32
        alpha = float(cfg.alpha)
        model = self.module

        def prep(images: jax.Array) -> jax.Array:
            return normalize_images(images, self.normalize, dtype)

        def loss_fn(scores: Any, head: Any, frozen: Mapping, images: jax.Array, labels: jax.Array,
                    valid: jax.Array, key: jax.Array) -> tuple[jax.Array, tuple[jax.Array, dict]]:
            logits = core.masked_logits(model, frozen["params"], frozen["batch_stats"], scores, prep(images),
                                        dropout_rng=key)
            out = head_module.apply({"params": head}, logits)
            loss, aux = core.seam_loss(out, labels, valid, scores, alpha, n_entries)
            return loss, (out, aux)

        def metrics(loss: jax.Array, out: jax.Array, labels: jax.Array, valid: jax.Array, aux: dict) -> dict:
            ok = valid.astype(bool)
            return {"loss": loss, "correct": jnp.sum((jnp.argmax(out, -1) == labels) & ok).astype(jnp.int32),
                    "count": jnp.sum(ok).astype(jnp.int32), **aux}

        def dropout_key(state: SeamState) -> jax.Array:
            return jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)

        def head_step(state: SeamState, images: jax.Array, labels: jax.Array, valid: jax.Array,
                      frozen: Mapping) -> tuple[SeamState, dict]:
            # Scores get no update in head-only epochs (their gradient is discarded, §2.6).
            scores, head = state.trainable["scores"], state.trainable["head"]
            key = dropout_key(state)
            (loss, (out, aux)), g = jax.value_and_grad(
                lambda h: loss_fn(jax.lax.stop_gradient(scores), h, frozen, images, labels, valid, key),
                has_aux=True)(head)
            updates, opt_head = self.opt_head.update(g, state.opt_head, head)
            trainable = {"scores": scores, "head": optax.apply_updates(head, updates)}
            return (state.replace(step=state.step + 1, trainable=trainable, opt_head=opt_head),
                    metrics(loss, out, labels, valid, aux))

        def joint_step(state: SeamState, images: jax.Array, labels: jax.Array, valid: jax.Array,
                       frozen: Mapping) -> tuple[SeamState, dict]:
            key = dropout_key(state)
            (loss, (out, aux)), g = jax.value_and_grad(
                lambda t: loss_fn(t["scores"], t["head"], frozen, images, labels, valid, key),
                has_aux=True)(state.trainable)
            updates, opt_joint = self.opt_joint.update(g, state.opt_joint, state.trainable)
            trainable = optax.apply_updates(state.trainable, updates)
            return (state.replace(step=state.step + 1, trainable=trainable, opt_joint=opt_joint),
                    metrics(loss, out, labels, valid, aux))

        def correct(trainable: Mapping, frozen: Mapping, images: jax.Array, labels: jax.Array,
                    valid: jax.Array) -> jax.Array:
            logits = core.masked_logits(model, frozen["params"], frozen["batch_stats"], trainable["scores"],
                                        prep(images))
            pred = jnp.argmax(head_module.apply({"params": trainable["head"]}, logits), -1)
            return jnp.sum((pred == labels) & valid.astype(bool))

        kwargs: dict[str, Any] = {"donate_argnums": (0,)}
        if mesh is not None:
            from jaxnets.train.parallel import replicated

            kwargs["out_shardings"] = (replicated(mesh), replicated(mesh))
        # Step shards the batch over the mesh (and fit replicates the state) for --devices N.
        self.head_step = Step(jax.jit(head_step, **kwargs), mesh, "train")
        self.joint_step = Step(jax.jit(joint_step, **kwargs), mesh, "train")
        self.correct = jax.jit(correct)

    def step_for_epoch(self, epoch: int) -> Step:
        return self.head_step if is_head_epoch(epoch) else self.joint_step

    def replicate(self, tree: Any) -> Any:
        """``tree`` on the device(s) the steps expect (replicated over the mesh)."""
        if self.mesh is None:
            return jax.device_put(tree)
        from jaxnets.train.parallel import replicate

        return replicate(self.mesh, tree)

    def init_state(self, scores: Any, head: Any, selector: Selector, seed: int) -> SeamState:
        """The state before epoch 0 (new buffers: the caller's ``head`` is never donated)."""
        trainable = {"scores": scores, "head": head}
        return self.replicate(SeamState(
            step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(jax.random.key(seed)),
            trainable=device_copy(trainable), opt_head=self.opt_head.init(head),
            opt_joint=self.opt_joint.init(trainable), best=device_copy(trainable),
            bak=device_copy(trainable), selection=selector.to_arrays()))

    def place(self, *arrays: Any) -> tuple:
        if self.mesh is None:
            return arrays
        from jaxnets.train.parallel import shard_batch

        return shard_batch(self.mesh, *arrays)

    def accuracy(self, trainable: Mapping, frozen: Mapping, loader: Any) -> float:
        total, n = [], 0
        for batch in loader.epoch(0):
            images, labels, valid = self.place(batch.images, batch.labels, batch.mask)
            total.append(self.correct(trainable, frozen, images, labels, valid))
            n += batch.num_valid
        return float(sum(int(c) for c in jax.device_get(total))) / max(n, 1)


def history_row(row: Mapping[str, Any]) -> dict:
    """The SeaM row of one epoch (``Result.history``, metrics.json, the printed lines) from fit's
    epoch row (metrics.jsonl)."""
    return {"epoch": row["epoch"], "phase": row["seam_phase"], "train_loss": row["train_loss"],
            "train_ce": row["train_ce"], "test_acc": row["test_acc"], "retention": row["retention"],
            "kept": row["kept"], "event": row["event"], "counter": row["counter"], "seconds": row["epoch_time"]}


def stopped_epoch(checkpoints: Path) -> int | None:
    """The epoch at which the run of ``checkpoints`` stopped early, when its latest checkpoint is
    that stop (fit would otherwise train on past it): from the epoch rows fit wrote next to it."""
    from jaxnets.train.checkpoint import Checkpointer
    from jaxnets.train.logging import METRICS_JSONL

    with Checkpointer(checkpoints, read_only=True) as ck:
        step = ck.latest_step()
    path = Path(checkpoints).parent / METRICS_JSONL
    if step is None or not path.is_file():
        return None
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        if row.get("phase") == "epoch" and row.get("step") == step and row.get("stop"):
            return int(row["epoch"])
    return None


def train_masks(
    module: Any, variables: Mapping, train_loader: Any, test_loader: Any, *, num_classes: int,
    num_targets: int, normalize: tuple[Sequence[float], Sequence[float]], acc_pre: float,
    cfg: ReengineerConfig, exclude: Any = None, mesh: Any = None,
    on_epoch: Callable[[dict], None] | None = None, head_init: Any = None,
    run_dir: str | Path | None = None, resume: str | Path | None = None, model_name: str | None = None,
    record: Mapping[str, Any] | None = None,
) -> Result:
    """Learn scores + head for the target problem; select the snapshot of §2.7.

    ``acc_pre``: the original model's accuracy on the target test set (must be in (0, 1]).
    ``on_epoch(row)`` is called after every epoch's evaluation (logging, progress).
    ``run_dir``: fit writes ``metrics.jsonl``/``metrics.csv`` and ``checkpoints/`` there;
    ``resume`` (``"auto"`` or a run/checkpoints folder) continues from the latest checkpoint.
    ``model_name`` and ``record`` (JSON-able settings) go into every checkpoint.
    """
    from jaxnets.train.checkpoint import find_resume

    params = variables["params"]
    bs = variables.get("batch_stats") or {}
    scores = core.init_scores(params, exclude)
    n = core.num_entries(scores)
    head_module, head = core.init_head(num_classes, num_targets, cfg.seed)
    if head_init is not None:
        head = head_init
    eng = Engine(module, head_module, normalize, cfg, n, mesh=mesh)
    state = eng.init_state(scores, head, Selector(acc_pre, cfg.early_stop), cfg.seed)
    frozen = eng.replicate({"params": params, "batch_stats": bs})  # once, not at every step
    resume_dir = find_resume(resume, run_dir) if resume is not None else None
    epochs = cfg.epochs
    if resume_dir is not None and (stop := stopped_epoch(resume_dir)) is not None:
        epochs = min(epochs, stop + 1)  # an early-stopped run stays stopped

    def evaluate(state: SeamState) -> dict:
        return {"test_acc": eng.accuracy(state.trainable, frozen, test_loader)}

    def end_epoch(state: SeamState, row: dict) -> tuple[SeamState, bool]:
        # The selector lives in the state (so in every checkpoint): rebuilt, updated, stored back.
        epoch, acc = int(row["epoch"]), float(row["test_acc"])
        selector = Selector.from_arrays(jax.device_get(state.selection), acc_pre, cfg.early_stop)
        kept = core.count_kept(state.trainable["scores"])
        decision = selector.update(epoch, acc, kept / n)
        if decision.record_best:
            state = state.replace(best=device_copy(state.trainable))
        if decision.record_bak:
            state = state.replace(bak=device_copy(state.trainable))
        state = state.replace(selection=jax.device_put(selector.to_arrays(), state.step.sharding))
        row.update({"seam_phase": epoch_phase(epoch), "retention": kept / n, "kept": kept,
                    "event": decision.event, "counter": selector.counter, "record_best": decision.record_best,
                    "record_bak": decision.record_bak, "stop": decision.stop})
        if on_epoch is not None:
            on_epoch(history_row(row))
        return state, decision.stop

    fitted = loop.fit(state, eng.joint_step, train_loader, epochs=epochs, run_dir=run_dir, eval_fn=evaluate,
                      resume=resume_dir, checkpoint_every=cfg.checkpoint_every or None, model_name=model_name,
                      config=record, transform_args=frozen, mesh=mesh, progress=False, end_epoch=end_epoch,
                      step_for_epoch=eng.step_for_epoch)
    final: SeamState = fitted.state
    selector = Selector.from_arrays(jax.device_get(final.selection), acc_pre, cfg.early_stop)
    selector.log = [Decision(int(r["epoch"]), r["event"], bool(r["record_best"]), bool(r["record_bak"]),
                             bool(r["stop"])) for r in fitted.history]
    epoch, acc, r = selector.chosen
    assert epoch is not None, "at least one epoch must run"
    chosen = final.bak if selector.used_fallback else final.best
    return Result(scores=host_copy(chosen["scores"]), head=host_copy(chosen["head"]), epoch=epoch,
                  used_fallback=selector.used_fallback, acc=acc, retention=r, acc_pre=acc_pre, n_entries=n,
                  history=[history_row(row) for row in fitted.history], selector=selector,
                  final_scores=host_copy(final.trainable["scores"]), final_head=host_copy(final.trainable["head"]),
                  opt_states={"head": jax.device_get(final.opt_head), "joint": jax.device_get(final.opt_joint)},
                  resumed_from=fitted.resumed_from)
