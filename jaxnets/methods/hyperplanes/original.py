"""The original train.py's files and diagnostics, for ``jaxnets train`` (specs/hyperplane-arrangements.md §4).

- :func:`read_original_snapshot`: an original snapshot ``<arch>_<e>.tar`` (``torch.save`` of
  ``{epoch, top1_acc, top5_acc, model_state_dict, optimizer_state_dict, scheduler_state_dict}``;
  ``state_dict``/``optimizer`` are accepted as the keys' other common spellings) or a plain
  state_dict file, read by the torch-free restricted reader;
- :func:`restore_optimizer_state`: its SGD momentum buffers (→ optax ``trace``) or Adam moments
  (→ ``mu``/``nu``/``count``) in the run's optax state; what does not map is reported, never guessed;
- :func:`regularization_loss`: ``--eval-regularization-loss`` — ``weight_decay · Σ‖W‖₂``.

PyTorch numbers an optimiser's tensors by their position in ``net.parameters()``: the
state_dict's keys in order, without the buffers (BatchNorm running statistics). That is how a
momentum buffer finds its weight's name, and then its Flax leaf through the model's key map,
with the same layout change as the weight (OIHW → HWIO, transposed linears).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import CheckpointError
from jaxnets.safe_pickle import short_repr

# state_dict entries that are buffers, not parameters (absent from net.parameters()).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
_MODEL_KEYS = ("model_state_dict", "state_dict")
_OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer")
_MAX_EPOCH = 10**6  # an epoch index beyond this is a damaged or crafted file, not a training run
# PyTorch's defaults, which the optax transformations jaxnets builds also use.
_ADAM_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8}


@dataclass(frozen=True)
class OriginalSnapshot:
    """What an original file holds, with the weights already as the model's variables."""

    path: Path
    variables: dict  # the model's Flax variables
    epoch: int | None  # 0-based index of the last finished epoch; None for a plain state_dict
    top1_acc: float | None
    param_names: tuple[str, ...]  # PyTorch parameter names in net.parameters() order
    param_shapes: Mapping[str, tuple[int, ...]]  # their PyTorch shapes
    optimizer: Any  # the raw optimizer state_dict; None when the file has none

    @property
    def next_epoch(self) -> int | None:
        """Where training continues: after the last finished epoch (the original re-ran it, §7 #14)."""
        return None if self.epoch is None else self.epoch + 1


def _first_key(obj: Mapping, keys: Sequence[str]) -> Any:
    return next((obj[k] for k in keys if k in obj), None)


def _epoch(value: Any, path: Path) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 0 <= int(value) <= _MAX_EPOCH:
        raise CheckpointError(f"{path}: 'epoch' is {short_repr(value)}, not an epoch index (0..{_MAX_EPOCH})")
    return int(value)


def read_original_snapshot(path: str | Path, spec: Any, module: Any) -> OriginalSnapshot:
    """Read ``path`` for model ``spec`` (its Flax ``module``); a one-line ``CheckpointError`` for
    anything else than an original snapshot or a state_dict that fits the model."""
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file
    from jaxnets.models.api import load_weights

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"--resume-from {path} is a folder: it takes an original train.py file "
                              "(<arch>_<e>.tar or a state_dict .pt); continue a jaxnets run with --resume")
    raw = load_torch_file(path)
    is_snapshot = isinstance(raw, dict) and "epoch" in raw and _first_key(raw, _MODEL_KEYS) is not None
    model_state = extract_state_dict(_first_key(raw, _MODEL_KEYS) if is_snapshot else raw)
    epoch = _epoch(raw["epoch"], path) if is_snapshot else None
    top1 = raw.get("top1_acc") if is_snapshot else None
    # The model loader reads the file again: one path for every checkpoint (fit checks with the
    # options that would make a misfit fit, the non-finite warning).
    variables = load_weights(spec, module, path)
    names = tuple(k for k in model_state if not k.endswith(BUFFER_SUFFIXES))
    return OriginalSnapshot(
        path=path, variables=variables, epoch=epoch,
        top1_acc=float(top1) if isinstance(top1, (int, float)) and not isinstance(top1, bool) else None,
        param_names=names, param_shapes={k: tuple(np.shape(model_state[k])) for k in names},
        optimizer=_first_key(raw, _OPTIMIZER_KEYS) if is_snapshot else None)


# ------------------------------------------------------------------------------------------------
# optimiser state


class _Unmappable(Exception):
    """Why the snapshot's optimiser state cannot become this run's (one line)."""


def _groups(optimizer: Any) -> tuple[list[dict], dict]:
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("param_groups"), list) \
            or not isinstance(optimizer.get("state"), dict):
        raise _Unmappable("it is not a PyTorch optimizer state_dict (no 'state' and 'param_groups')")
    groups = optimizer["param_groups"]
    if not groups or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise _Unmappable("its param_groups are malformed")
    return groups, optimizer["state"]


def _optimizer_kind(optimizer: Any) -> str | None:
    """'sgd' or 'adam' from the param_groups' keys; None when there is no optimizer state."""
    if optimizer is None:
        return None
    groups, _ = _groups(optimizer)
    if "betas" in groups[0]:
        return "adam"
    if "momentum" in groups[0]:
        return "sgd"
    raise _Unmappable(f"its optimiser is neither SGD nor Adam (param_group keys {short_repr(sorted(groups[0]))})")


def _param_states(snapshot: OriginalSnapshot, groups: list[dict], state: dict) -> dict[str, dict]:
    """``{parameter name: its state dict}`` via the parameter order (PyTorch's integer ids)."""
    ids = [i for g in groups for i in g["params"]]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise _Unmappable("its param_groups name parameters by something else than integer ids")
    if len(ids) != len(snapshot.param_names):
        raise _Unmappable(f"it covers {len(ids)} parameter tensors, the model's state_dict has "
                          f"{len(snapshot.param_names)}")
    by_name: dict[str, dict] = {}
    for position, pid in enumerate(ids):
        entry = state.get(pid, {})
        if not isinstance(entry, dict):
            raise _Unmappable(f"the state of parameter {short_repr(pid)} is {type(entry).__name__}, not a dict")
        by_name[snapshot.param_names[position]] = entry
    return by_name


def _moment_tree(snapshot: OriginalSnapshot, per_param: dict[str, dict], key: str, spec: Any,
                 params_target: Mapping) -> dict:
    """One optimiser tensor per parameter (zeros where PyTorch kept none: the parameter never got a
    gradient) → a params-shaped Flax tree, through the weights' own key map and layouts."""
    from jaxnets.converters.convert import state_dict_to_variables
    from jaxnets.converters.namings import to_native

    tensors: dict[str, np.ndarray] = {}
    for name, shape in snapshot.param_shapes.items():
        value = per_param[name].get(key)
        value = np.zeros(shape, np.float32) if value is None else value
        if not isinstance(value, np.ndarray) or value.shape != shape:
            raise _Unmappable(f"its {key} of {name} is {short_repr(getattr(value, 'shape', value))}, "
                              f"the weight's shape is {shape}")
        tensors[name] = value
    keymap = spec.keymap
    try:
        native, _ = to_native(tensors, keymap.namings, keymap.native)
        return state_dict_to_variables(native, {"params": params_target}, keymap, model_name=spec.name)["params"]
    except CheckpointError as exc:
        raise _Unmappable(f"its {key} tensors do not fit the model ({exc})") from None


def _adam_defaults(group: dict) -> bool:
    betas = tuple(float(b) for b in group.get("betas", _ADAM_DEFAULTS["betas"]))
    eps = float(group.get("eps", _ADAM_DEFAULTS["eps"]))
    return np.allclose(betas, _ADAM_DEFAULTS["betas"]) and np.isclose(eps, _ADAM_DEFAULTS["eps"]) \
        and not group.get("amsgrad", False)


def _adam_step(per_param: dict[str, dict]) -> int:
    steps = {int(np.asarray(s["step"]).reshape(-1)[0]) for s in per_param.values() if s.get("step") is not None}
    return max(steps) if steps else 0


def _hyperparameter_differences(kind: str, group: dict, opts: Mapping[str, Any]) -> list[str]:
    """The snapshot's optimiser settings that differ from the command line's (which win)."""
    lr = group.get("initial_lr", group.get("lr"))  # initial_lr: the base rate under a scheduler
    ours = {"lr": opts["lr"]} if kind == "adam" else {
        "lr": opts["lr"], "momentum": opts["momentum"], "weight_decay": opts["weight_decay"]}
    theirs = {"lr": lr, **{k: group.get(k) for k in ours if k != "lr"}}
    return [f"{k} {theirs[k]}" for k in ours
            if isinstance(theirs[k], (int, float)) and not np.isclose(float(theirs[k]), float(ours[k]))]


def restore_optimizer_state(opt_state: Any, snapshot: OriginalSnapshot, spec: Any, params: Mapping,
                            opts: Mapping[str, Any]) -> tuple[Any, list[str]]:
    """``opt_state`` (from this run's optax chain) with the snapshot's moments; and the warnings.

    SGD (dampening 0, not Nesterov): ``momentum_buffer`` → ``TraceState.trace`` — the same
    recursion (``buf = m·buf + g + wd·p``; optax's ``add_decayed_weights`` then ``trace``).
    Adam (PyTorch's defaults): ``exp_avg``/``exp_avg_sq``/``step`` → ``mu``/``nu``/``count``.
    Anything else — another optimiser, a different parameter count or shape, Nesterov — gives
    the state unchanged (fresh) and one warning saying why. Hyperparameters are the command
    line's; where the snapshot's differ one warning names them (the original would have
    continued with the snapshot's).
    """
    import jax
    import jax.numpy as jnp
    import optax

    if snapshot.optimizer is None:
        return opt_state, []
    where = f"--resume-from {snapshot.path.name}"
    try:
        kind = _optimizer_kind(snapshot.optimizer)
        groups, state = _groups(snapshot.optimizer)
        if kind != opts["optimizer"]:
            raise _Unmappable(f"it is an {kind.upper()} state, this run uses --optimizer {opts['optimizer']}")
        group = groups[0]
        if kind == "sgd" and (group.get("nesterov") or group.get("dampening", 0)):
            raise _Unmappable("it uses Nesterov momentum or dampening, jaxnets' SGD neither")
        if kind == "adam" and not _adam_defaults(group):
            raise _Unmappable("its Adam betas/eps/amsgrad are not PyTorch's defaults, which jaxnets uses")
        per_param = _param_states(snapshot, groups, state)
        target = jax.tree_util.tree_map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
        if kind == "sgd":
            has_trace = any(isinstance(s, optax.TraceState)
                            for s in jax.tree_util.tree_leaves(opt_state, is_leaf=_is_moment_state))
            buffers = any(s.get("momentum_buffer") is not None for s in per_param.values())
            if buffers and not has_trace:
                raise _Unmappable("it holds momentum buffers but this run's SGD has --momentum 0")
            moments = {"trace": _moment_tree(snapshot, per_param, "momentum_buffer", spec, target)}
        else:
            moments = {"mu": _moment_tree(snapshot, per_param, "exp_avg", spec, target),
                       "nu": _moment_tree(snapshot, per_param, "exp_avg_sq", spec, target),
                       "count": _adam_step(per_param)}
    except (_Unmappable, TypeError, ValueError, KeyError, IndexError) as why:
        # TypeError & co.: values of the wrong kind in a damaged or crafted file
        reason = str(why) if isinstance(why, _Unmappable) else f"malformed: {type(why).__name__}"
        return opt_state, [f"{where}: its optimiser state cannot be mapped ({reason}); starting a fresh optimiser"]

    def restore(node: Any) -> Any:
        if isinstance(node, optax.TraceState) and "trace" in moments:
            return node._replace(trace=jax.tree_util.tree_map(jnp.asarray, moments["trace"]))
        if isinstance(node, optax.ScaleByAdamState) and "mu" in moments:
            return node._replace(count=jnp.asarray(moments["count"], node.count.dtype),
                                 mu=jax.tree_util.tree_map(jnp.asarray, moments["mu"]),
                                 nu=jax.tree_util.tree_map(jnp.asarray, moments["nu"]))
        return node

    restored = jax.tree_util.tree_map(restore, opt_state, is_leaf=_is_moment_state)
    differing = _hyperparameter_differences(kind, groups[0], opts)
    warnings = [f"{where}: the snapshot's optimiser had {', '.join(differing)}; this run uses the command "
                "line's values (the original would have continued with the snapshot's)"] if differing else []
    return restored, warnings


def _is_moment_state(node: Any) -> bool:
    import optax

    return isinstance(node, (optax.TraceState, optax.ScaleByAdamState))


def set_schedule_position(opt_state: Any, step: int) -> Any:
    """The learning-rate schedule's step counter (``ScaleByScheduleState.count``) set to ``step``,
    so a step-LR schedule continues at that step's epoch."""
    import jax
    import jax.numpy as jnp
    import optax

    def place(node: Any) -> Any:
        if isinstance(node, optax.ScaleByScheduleState):
            return node._replace(count=jnp.asarray(step, node.count.dtype))
        return node

    return jax.tree_util.tree_map(place, opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))


# ------------------------------------------------------------------------------------------------
# --eval-regularization-loss


@dataclass(frozen=True)
class RegularizationLoss:
    value: float  # weight_decay · norm_sum
    norm_sum: float  # Σ ‖W‖₂ over the weight tensors
    tensors: int  # how many weight tensors


def regularization_loss(variables: Mapping, weight_decay: float) -> RegularizationLoss:
    """The original's diagnostic (§4.1, §7 #26): ``weight_decay · Σ_W ‖W‖₂`` over every parameter
    whose PyTorch name contains "weight" — conv and linear kernels and the norm layers' scales (BN
    gammas included), biases excluded. The norms are **not squared**, so this is not the penalty
    SGD's coupled weight decay minimises (that would be ``wd/2 · Σ‖W‖₂²`` over every parameter).
    Summed in float64 (the original sums float32 norms: equal to ~1e-7 relative)."""
    from jaxnets.transforms.names import flatten

    norms = [float(np.linalg.norm(np.asarray(leaf, np.float64)))
             for name, leaf in flatten(dict(variables.get("params", {}))).items()
             if name.rsplit("/", 1)[-1] in ("kernel", "scale")]  # Flax's names of PyTorch's 'weight'
    total = float(np.sum(norms))
    return RegularizationLoss(value=float(weight_decay) * total, norm_sum=total, tensors=len(norms))
