"""``fit``: epochs over a loader, the jitted train step, periodic eval, checkpoints, exact resume.

The loader is duck-typed like ``jaxnets.data.Loader``: ``loader.epoch(epoch, start_step)``
yields batches (objects with ``images``, ``labels``, ``mask`` — or ``(images, labels, mask)``
tuples) and is a pure function of ``(seed, epoch, step)``; ``len(loader)`` or
``loader.steps_per_epoch`` gives the number of batches per epoch (for the progress bar and
to avoid a duplicate save on the last batch). Because the data position, the PRNG key
(folded with the global step) and the whole optimiser state are checkpointed, a run killed
at any point and resumed from its last checkpoint ends bit-identical to an uninterrupted run.

Metrics stay on the device (one small jitted accumulate per step) and are pulled to the host
every ``log_every`` steps, before every checkpoint and at epoch end; a non-finite loss found
then stops the run with a :class:`~jaxnets.errors.JaxnetsError` *without* saving, so the last
checkpoint on disk is the last good one.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxnets.errors import JaxnetsError
from jaxnets.train.checkpoint import Checkpointer, checkpoint_dir, find_resume
from jaxnets.train.logging import MetricsWriter, ProgressBar, host_metrics

StepCallback = Callable[[Any, dict], None]
EpochCallback = Callable[[Any, dict], "bool | None"]
# (state, epoch row) -> (state, stop): runs after the evaluation, before the row is written and
# the epoch's checkpoint saved, so what it puts into the state (a selected snapshot, a
# selection counter) is part of that checkpoint and a resumed run continues from it.
EpochEnd = Callable[[Any, dict], "tuple[Any, bool]"]
TrainStep = Callable[..., Any]


class NonFiniteLossError(JaxnetsError):
    """Training produced a NaN/inf loss; the run stopped, the last good checkpoint is kept."""


@dataclass
class FitResult:
    state: Any
    history: list[dict] = field(default_factory=list)  # one row per finished epoch
    resumed_from: int | None = None  # global step restored, None for a fresh start
    checkpoint_dir: Path | None = None
    stopped_early: bool = False


def _unpack(batch: Any) -> tuple[Any, Any, Any]:
    if hasattr(batch, "images"):
        return batch.images, batch.labels, getattr(batch, "mask", None)
    images, labels, *rest = batch
    return images, labels, (rest[0] if rest else None)


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def steps_per_epoch(loader: Any) -> int | None:
    n = getattr(loader, "steps_per_epoch", None)
    if n is None and hasattr(loader, "__len__"):
        n = len(loader)
    return None if n is None else int(n)


@jax.jit
def _accumulate(acc: dict, metrics: dict) -> dict:
    # Sums for counts, count-weighted sums for means: pulled and divided on the host.
    count = metrics["count"].astype(jnp.float32)
    out = {}
    for k, v in metrics.items():
        if k in ("correct", "count"):
            out[k] = acc[k] + v.astype(jnp.float32)
        else:
            out[k] = acc[k] + jnp.asarray(v, jnp.float32) * count
    return out


def _zeros_like_metrics(metrics: dict) -> dict:
    return {k: jnp.zeros((), jnp.float32) for k in metrics}


class _Totals:
    """Host-side running sums (floats) for a window or an epoch."""

    def __init__(self, sums: Mapping[str, float] | None = None):
        self.sums: dict[str, float] = dict(sums or {})

    def add(self, sums: Mapping[str, float]) -> None:
        for k, v in sums.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)

    def summary(self, prefix: str = "") -> dict[str, float]:
        n = self.sums.get("count", 0.0)
        out: dict[str, float] = {}
        for k, v in self.sums.items():
            if k == "count":
                continue
            if k == "correct":
                out[f"{prefix}acc"] = v / n if n else float("nan")
            else:
                out[f"{prefix}{k}"] = v / n if n else float("nan")
        out[f"{prefix}examples"] = int(n)
        return out


class _Meter:
    """Device accumulators for the steps since the last pull, plus host window/epoch sums."""

    def __init__(self, epoch_sums: Mapping[str, float] | None = None):
        self.acc: dict | None = None
        self.since_pull = 0
        self.window = _Totals()
        self.epoch = _Totals(epoch_sums)

    def add(self, metrics: dict) -> None:
        base = self.acc if self.acc is not None else _zeros_like_metrics(metrics)
        self.acc = _accumulate(base, metrics)
        self.since_pull += 1

    def pull(self) -> None:
        """One device→host transfer of everything accumulated since the last pull."""
        if self.acc is None:
            return
        sums = host_metrics(self.acc)
        self.acc, self.since_pull = None, 0
        self.window.add(sums)
        self.epoch.add(sums)

    def reset_window(self) -> None:
        self.window = _Totals()


def fit(
    state: Any,
    train_step: Callable[..., Any],
    loader: Any,
    *,
    epochs: int,
    run_dir: str | Path | None = None,
    eval_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int = 1,
    checkpoint_every: int | None = None,
    checkpoint_every_epochs: int = 1,
    max_to_keep: int | None = 3,
    async_checkpoints: bool = True,
    resume: str | Path | None = None,
    model_name: str | None = None,
    config: Mapping[str, Any] | None = None,
    transform_args: Any = None,
    log_every: int = 50,
    mesh: Any = None,
    progress: bool | None = None,
    tensorboard: bool = True,
    on_step: Sequence[StepCallback] = (),
    on_epoch_end: Sequence[EpochCallback] = (),
    end_epoch: EpochEnd | None = None,
    step_for_epoch: Callable[[int], TrainStep] | None = None,
    checkpoints: str | Path | None = None,
    metrics: MetricsWriter | None = None,
    row_fields: Mapping[str, Any] | None = None,
    start_epoch: int = 0,
) -> FitResult:
    """Train ``state`` for ``epochs`` epochs (counted from 0; a resumed run continues).

    ``train_step(state, images, labels, mask, transform_args) -> (state, metrics)`` (from
    ``make_train_step``). ``eval_fn(state) -> {name: number}`` runs after every
    ``eval_every``-th epoch and its values join the epoch row. Checkpoints go to
    ``<run_dir>/checkpoints`` at every ``checkpoint_every_epochs``-th epoch end and, when
    ``checkpoint_every`` is set, every that many global steps. ``resume``: None, ``"auto"``
    (the run folder's latest checkpoint, if any) or a folder (which must hold one).
    ``mesh``: defaults to the train step's mesh; the state is replicated over it.
    ``on_step(state, info)`` runs after every step; ``on_epoch_end(state, row)`` after every
    epoch and may return True to stop (plateau killing, snapshots).
    Without ``run_dir`` nothing is written and ``resume`` must be a folder or None.

    Hooks for the methods' schedules (one engine for every training command):
    ``end_epoch(state, row) -> (state, stop)`` runs after the evaluation and may replace the
    state (SeaM's selected snapshot) and add to the row before it is written and checkpointed;
    ``step_for_epoch(epoch) -> train_step`` picks the step of each epoch (SeaM's head-only
    epochs); ``checkpoints`` puts the checkpoints somewhere else than ``<run_dir>/checkpoints``
    (WFN: one folder per round); ``metrics`` is an open writer fit writes to and leaves open
    (a run with several fits); ``row_fields`` join every row (``{"round": t}``);
    ``start_epoch`` is a fresh run's first epoch index (``jaxnets train --start-epoch``; the state
    arrives with its step counter already there), ignored when resuming.
    """
    # 1. Resolve and restore *before* touching the run folder: bad input overwrites nothing.
    start_step, resumed_from = 0, None
    epoch_sums: dict[str, float] = {}
    resume_dir = find_resume(resume, run_dir) if resume is not None else None
    mesh = mesh if mesh is not None else getattr(train_step, "mesh", None)
    if mesh is not None:
        from jaxnets.train.parallel import replicate

        state = replicate(mesh, state)
    if resume_dir is not None:
        with Checkpointer(resume_dir, read_only=True) as ck:
            state, meta = ck.restore(state, model=model_name)
        start_epoch, start_step = int(meta["epoch"]), int(meta["step_in_epoch"])
        resumed_from = int(meta["global_step"])
        epoch_sums = dict(meta.get("epoch_sums") or {})

    ckpt_dir = Path(checkpoints) if checkpoints is not None else (
        checkpoint_dir(run_dir) if run_dir is not None else None)
    # Several processes (multi-host): only process 0 writes metrics; all of them checkpoint
    # (orbax coordinates the processes and writes each replicated array once).
    own_writer = metrics is None and run_dir is not None and jax.process_index() == 0
    writer = MetricsWriter(run_dir, resume_step=resumed_from, tensorboard=tensorboard) \
        if own_writer else metrics
    extra_fields = dict(row_fields or {})
    checkpointer = Checkpointer(ckpt_dir, max_to_keep=max_to_keep, async_save=async_checkpoints) \
        if ckpt_dir is not None else None
    history: list[dict] = []
    if writer is not None and own_writer:
        history = [r for r in writer.rows if r.get("phase") == "epoch"]

    n_steps = steps_per_epoch(loader)
    global_step = int(jax.device_get(state.step))
    last_saved = resumed_from
    stopped = False
    first_step_time: float | None = None  # compile (or cache load) + one step
    first_step_reported = False

    def save(epoch: int, step_in_epoch: int, sums: Mapping[str, float]) -> None:
        nonlocal last_saved
        if checkpointer is None or last_saved == global_step:
            return
        checkpointer.save(state, epoch=epoch, step_in_epoch=step_in_epoch, model=model_name,
                          config=config, extra={"epoch_sums": dict(sums)}, step=global_step)
        last_saved = global_step

    def check_finite(sums: Mapping[str, float], epoch: int) -> None:
        loss = sums.get("loss", 0.0)
        if not math.isfinite(loss):
            where = ""
            if checkpointer is not None:
                checkpointer.wait_until_finished()
                latest = checkpointer.latest_step()
                where = (f"; the last good checkpoint (step {latest}) is kept in "
                         f"{checkpointer.directory}" if latest is not None
                         else "; no checkpoint was saved yet")
            raise NonFiniteLossError(
                f"non-finite training loss ({loss}) by global step {global_step} "
                f"(epoch {epoch}): stopped{where}. Lower the learning rate or check the data.")

    try:
        with ProgressBar(enabled=progress) as bar, contextlib.ExitStack() as stack:
            for epoch in range(start_epoch, epochs):
                s0 = start_step if epoch == start_epoch else 0
                meter = _Meter(epoch_sums if epoch == start_epoch else None)
                bar.start(n_steps, f"epoch {epoch + 1}/{epochs}", completed=s0)
                t_epoch = t_window = time.perf_counter()
                images_window = images_epoch = 0
                step_fn = step_for_epoch(epoch) if step_for_epoch is not None else train_step
                batches = loader.epoch(epoch, s0)
                stack.callback(_close, batches)  # stop a prefetch thread on an early exit
                for step_in_epoch, batch in enumerate(batches, start=s0):
                    images, labels, mask = _unpack(batch)
                    t_step = time.perf_counter()
                    state, step_metrics = step_fn(state, images, labels, mask, transform_args)
                    if first_step_time is None:
                        jax.block_until_ready(step_metrics)  # the one host sync, on the first step only
                        first_step_time = time.perf_counter() - t_step
                    global_step += 1
                    n_img = int(labels.shape[0])
                    images_window += n_img
                    images_epoch += n_img
                    meter.add(step_metrics)
                    if log_every and global_step % log_every == 0:
                        meter.pull()
                        check_finite(meter.epoch.sums, epoch)
                        now = time.perf_counter()
                        row = {"phase": "train", **extra_fields, "epoch": epoch, "step": global_step,
                               **meter.window.summary(), "images_per_sec":
                               images_window / max(now - t_window, 1e-9)}
                        if writer is not None:
                            writer.write(row)
                        bar.advance(1, loss=row.get("loss", float("nan")),
                                    acc=row.get("acc", float("nan")),
                                    **{"img/s": row["images_per_sec"]})
                        meter.reset_window()
                        t_window, images_window = now, 0
                    else:
                        bar.advance(1)
                    last_of_epoch = n_steps is not None and step_in_epoch + 1 >= n_steps
                    if checkpoint_every and global_step % checkpoint_every == 0 \
                            and not last_of_epoch:
                        meter.pull()
                        check_finite(meter.epoch.sums, epoch)
                        save(epoch, step_in_epoch + 1, meter.epoch.sums)
                    for cb in on_step:
                        cb(state, {"epoch": epoch, "step_in_epoch": step_in_epoch + 1,
                                   "global_step": global_step})
                _close(batches)
                meter.pull()
                check_finite(meter.epoch.sums, epoch)
                elapsed = time.perf_counter() - t_epoch
                row = {"phase": "epoch", **extra_fields, "epoch": epoch, "step": global_step,
                       **meter.epoch.summary("train_"),
                       "images_per_sec": images_epoch / max(elapsed, 1e-9),
                       "epoch_time": elapsed}
                if first_step_time is not None and not first_step_reported:
                    row["first_step_time"] = first_step_time  # includes XLA compilation
                    first_step_reported = True
                if eval_fn is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
                    row.update(host_metrics(dict(eval_fn(state))))
                stop_here = False
                if end_epoch is not None:
                    state, stop_here = end_epoch(state, row)
                if writer is not None:
                    writer.write(row)
                history.append(row)
                if checkpoint_every_epochs and (
                        (epoch + 1) % checkpoint_every_epochs == 0 or epoch + 1 == epochs):
                    save(epoch + 1, 0, {})
                if any([bool(cb(state, row)) for cb in on_epoch_end]) or stop_here:  # call them all
                    stopped = True
                    if checkpointer is not None:
                        save(epoch + 1, 0, {})
                    break
    finally:
        if checkpointer is not None:
            checkpointer.close()
        if writer is not None and own_writer:
            writer.close()
    return FitResult(state=state, history=history, resumed_from=resumed_from,
                     checkpoint_dir=ckpt_dir, stopped_early=stopped)
