"""Train checkpoints: one orbax ``CheckpointManager`` per run folder.

Layout: ``<run>/checkpoints/<global step>/{state, meta}`` — ``state`` is the TrainState's
pytree (params, batch_stats, optimiser state, step, PRNG key data, extras), ``meta`` a JSON
item with the model name, the data-sampler position (``epoch``, ``step_in_epoch``: the next
batch to draw), the PRNG key data, the resolved config and library versions.

Atomicity comes from orbax: a step is written under ``<step>.orbax-checkpoint-tmp-<ts>`` and
renamed when finalised, so a checkpoint interrupted while being written (SIGKILL, power loss)
is never listed. Saving is asynchronous (the device→host copy is synchronous, so donating the
state right after ``save`` is safe); call :meth:`Checkpointer.wait_until_finished` (or
``close``) before exiting.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from jaxnets.errors import CheckpointError

FORMAT = "jaxnets-train"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir).absolute() / CHECKPOINT_DIR


def _ocp() -> Any:
    import orbax.checkpoint as ocp

    return ocp


def _to_abstract(tree: Any, sharding: Any = None) -> Any:
    def one(x: Any) -> Any:
        s = sharding if sharding is not None else getattr(x, "sharding", None)
        return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=s)

    return jax.tree_util.tree_map(one, tree)


def abstract_state(state: Any) -> Any:
    """Shapes/dtypes (and shardings) of a state — what a restore is checked against."""
    return _to_abstract(state)


def signature(state: Any) -> dict[str, list]:
    """``{"params/conv1/kernel": [shape, dtype], ...}`` of a state's pytree (stored in the
    metadata so a mismatch is explained by name before orbax is asked to restore)."""
    from jaxnets.transforms.names import flatten

    return {name: [list(np.shape(x)), str(np.dtype(x.dtype))]
            for name, x in flatten(serialization.to_state_dict(state)).items()}


def _explain_mismatch(stored: Mapping[str, list], wanted: Mapping[str, list]) -> str | None:
    missing = [n for n in wanted if n not in stored]
    extra = [n for n in stored if n not in wanted]
    shapes = [f"{n} is {stored[n][0]} in the checkpoint, {wanted[n][0]} here"
              for n in wanted if n in stored and list(stored[n][0]) != list(wanted[n][0])]
    parts = []
    if missing:
        parts.append(f"{len(missing)} entries missing from the checkpoint (e.g. "
                     f"{', '.join(missing[:3])})")
    if extra:
        parts.append(f"{len(extra)} unexpected entries (e.g. {', '.join(extra[:3])})")
    if shapes:
        parts.append("; ".join(shapes[:3]))
    return "; ".join(parts) or None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Accept a run folder (with ``checkpoints/``) or a checkpoints folder itself."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise CheckpointError(f"resume folder not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"resume path is not a folder: {path}")
    inner = path / CHECKPOINT_DIR
    return inner if inner.is_dir() else path


class Checkpointer:
    """Save/restore TrainStates in one checkpoints folder (absolute path, keep-N, async)."""

    def __init__(self, directory: str | Path, *, max_to_keep: int | None = 3,
                 async_save: bool = True, read_only: bool = False):
        ocp = _ocp()
        self.directory = Path(directory).expanduser().absolute()
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"checkpoint folder not found: {self.directory}")
        extra = {"save_interval_steps": 0} if read_only else {}
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max_to_keep, create=not read_only,
            read_only=read_only, enable_async_checkpointing=async_save, **extra)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    # ------------------------------------------------------------------ queries
    def all_steps(self) -> list[int]:
        """Finalised steps only (orbax skips ``*.orbax-checkpoint-tmp-*`` folders)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def metadata(self, step: int | None = None) -> dict:
        """The JSON metadata of ``step`` (default: latest); CheckpointError if unreadable."""
        ocp = _ocp()
        step = self._pick(step)
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            meta = dict(meta["meta"])
        except Exception as exc:  # orbax raises many types for a damaged folder
            raise CheckpointError(
                f"corrupt checkpoint {self.directory / str(step)}: metadata unreadable "
                f"({_first_line(exc)}); delete that folder to resume from an earlier step"
            ) from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{self.directory / str(step)} is not a jaxnets training "
                                  f"checkpoint (format {meta.get('format')!r})")
        return meta

    def _pick(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no finished checkpoint in {self.directory}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise CheckpointError(f"no checkpoint for step {step} in {self.directory} "
                                  f"(have {steps})")
        return step

    # ------------------------------------------------------------------ save / restore
    def save(self, state: Any, *, epoch: int, step_in_epoch: int, model: str | None = None,
             config: Mapping | None = None, extra: Mapping | None = None,
             step: int | None = None) -> int:
        """Save ``state`` under its global step; ``(epoch, step_in_epoch)`` is the position of
        the *next* batch, so a resumed run continues with exactly that batch."""
        from jaxnets.train.logging import library_versions

        ocp = _ocp()
        if self.read_only:
            raise CheckpointError(f"{self.directory} was opened read-only")
        global_step = int(jax.device_get(state.step)) if step is None else int(step)
        rng = np.asarray(jax.device_get(state.rng)).tolist()
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": model,
            "global_step": global_step,
            "epoch": int(epoch),
            "step_in_epoch": int(step_in_epoch),
            "rng_key_data": rng,
            "rng_impl": str(jax.config.jax_default_prng_impl),
            "config": dict(config or {}),
            "signature": signature(state),
            "versions": library_versions(),
            "saved_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **dict(extra or {}),
        }
        json.dumps(meta)  # fail here, not in the background thread, on unserialisable config
        self._manager.save(global_step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(serialization.to_state_dict(state)),
            meta=ocp.args.JsonSave(meta)), force=True)
        return global_step

    def restore(self, template: Any, step: int | None = None, *, model: str | None = None,
                sharding: Any = None) -> tuple[Any, dict]:
        """Restore onto ``template`` (a TrainState, concrete or abstract from ``eval_shape``),
        checking the model name and the tree against the checkpoint. Returns (state, meta)."""
        ocp = _ocp()
        step = self._pick(step)
        meta = self.metadata(step)
        where = self.directory / str(step)
        if model is not None and meta.get("model") not in (None, model):
            raise CheckpointError(
                f"{where} is a checkpoint of '{meta.get('model')}', not '{model}'; "
                f"pick the run folder of a '{model}' run or start a new one")
        if "signature" in meta:
            why = _explain_mismatch(meta["signature"], signature(template))
            if why:
                raise CheckpointError(
                    f"{where} does not fit this model/optimiser configuration: {why}")
        target = _to_abstract(serialization.to_state_dict(template), sharding)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))["state"]
        except Exception as exc:
            raise CheckpointError(
                f"cannot restore {where}: {_first_line(exc)} — the checkpoint is corrupt or "
                f"was written with another model/optimiser configuration") from None
        try:
            state = serialization.from_state_dict(template, restored)
        except Exception as exc:
            raise CheckpointError(f"{where} does not fit the train state: {_first_line(exc)}"
                                  ) from None
        _check_shapes(template, state, where)
        return state, meta

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_shapes(template: Any, state: Any, where: Path) -> None:
    a = jax.tree_util.tree_leaves_with_path(template)
    b = jax.tree_util.tree_leaves_with_path(state)
    for (path, x), (_, y) in zip(a, b, strict=True):
        if np.shape(x) != np.shape(y):
            raise CheckpointError(f"{where}: {jax.tree_util.keystr(path)} has shape "
                                  f"{np.shape(y)}, the model expects {np.shape(x)}")


def resumed_run_folder(resume: str | Path | None, run_dir: str | Path) -> Path | None:
    """The run folder whose ``config.json`` a ``--resume`` continues (None: a fresh start or
    this very run folder)."""
    if resume in (None, False, "", "auto"):
        return None
    path = Path(resume).expanduser().absolute()
    folder = path.parent if path.name == CHECKPOINT_DIR else path
    return None if folder == Path(run_dir).absolute() else folder


def find_resume(resume: str | Path | None, run_dir: str | Path | None) -> Path | None:
    """Where to resume from, or None for a fresh start.

    ``"auto"``: the run folder's own checkpoints if it has a finished one, else a fresh start.
    A path: a run folder or checkpoints folder that must hold a finished checkpoint
    (CheckpointError otherwise — never silently start over).
    """
    if resume is None or resume is False or resume == "":
        return None
    if str(resume) == "auto":
        if run_dir is None:
            raise CheckpointError("--resume auto needs a run folder")
        path = checkpoint_dir(run_dir)
        if not path.is_dir():
            return None
        with Checkpointer(path, read_only=True) as ck:
            return path if ck.latest_step() is not None else None
    path = resolve_checkpoint_dir(resume)
    with Checkpointer(path, read_only=True) as ck:
        if ck.latest_step() is None:
            what = "is empty" if not any(path.iterdir()) else "holds no finished checkpoint"
            raise CheckpointError(f"cannot resume: {path} {what}")
    return path
