"""Helpers over registered models: build, init, load weights, named intermediates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.converters.convert import (
    BuiltFor,
    check_variables_fit,
    count_nonfinite,
    flatten_tree,
    state_dict_to_variables,
)
from jaxnets.converters.namings import to_native
from jaxnets.converters.npz import load_npz_state
from jaxnets.converters.safetensors_io import is_safetensors_path, load_safetensors_state
from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file
from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.io import is_jaxnets_checkpoint, load_variables, read_metadata
from jaxnets.models.registry import ModelSpec, get_spec
from jaxnets.ui import warn

Variables = dict[str, Any]


def resolve(model: str | ModelSpec) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_spec(model)


def init_variables(spec: ModelSpec, module: Any, seed: int = 0, size: int | None = None) -> Variables:
    """Fresh variables (``params`` and, where the model has BN, ``batch_stats``)."""
    x = jnp.zeros(spec.input_shape(1, size), jnp.float32)
    variables = jax.jit(lambda k: module.init({"params": k, "dropout": k}, x, train=False))(
        jax.random.key(seed)
    )
    return dict(variables)


def abstract_variables(spec: ModelSpec, module: Any, size: int | None = None) -> Variables:
    """Shapes and dtypes of the variables, without allocating them."""
    x = jax.ShapeDtypeStruct(spec.input_shape(1, size), jnp.float32)
    return dict(jax.eval_shape(
        lambda x: module.init({"params": jax.random.key(0), "dropout": jax.random.key(0)}, x,
                              train=False), x))


def count_params(variables: Mapping) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables.get("params", {}))))


@dataclass(frozen=True)
class CheckpointSource:
    """What a checkpoint file turned out to be: its format and the naming of its keys."""

    format: str  # torch | safetensors | npz | jaxnets
    naming: str  # torchvision | timm | official (Mixer .npz) | jaxnets


def read_state(spec: ModelSpec, path: str | Path, keys: str | None = None) -> tuple[dict, CheckpointSource]:
    """A checkpoint file's state_dict in the family's native names (timm's renamed), and what it was."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder but not a jaxnets checkpoint (it has no jaxnets.json); "
                              "pass a checkpoint file or a folder written by jaxnets")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".npz":
        state, fmt = load_npz_state(path), "npz"
    elif is_safetensors_path(path):
        state, fmt = load_safetensors_state(path), "safetensors"
    else:
        state, fmt = extract_state_dict(load_torch_file(path)), "torch"
    state, naming = to_native(state, spec.keymap.namings, spec.keymap.native, keys)
    return state, CheckpointSource(fmt, naming)


def load_weights(spec: ModelSpec, module: Any, path: str | Path, keys: str | None = None) -> Variables:
    """Read a PyTorch (``.th/.pth/.pt/.tar``), ``.safetensors`` (or its sharded ``.safetensors.index.json``),
    ``.npz`` or jaxnets checkpoint into variables; :func:`load_weights_from`'s variables."""
    return load_weights_from(spec, module, path, keys)[0]


def load_weights_from(spec: ModelSpec, module: Any, path: str | Path,
                      keys: str | None = None) -> tuple[Variables, CheckpointSource]:
    """The variables of a checkpoint, and its format and key naming (detected, or ``keys``).

    Every leaf must fit the model exactly; when a checkpoint differs only in input channels,
    classes or input size, the error names the option that fits. Non-finite weights load with a
    warning.
    """
    path = Path(path)
    target = abstract_variables(spec, module)
    if is_jaxnets_checkpoint(path):
        variables = load_variables(path, target, model_name=spec.name)
        trained_on = read_metadata(path).get("dataset")
        check_variables_fit(variables, target, model_name=spec.name, keymap=spec.keymap,
                            built_for=_built_for(spec, target, trained_on if isinstance(trained_on, str) else None))
        source = CheckpointSource("jaxnets", "jaxnets")
    else:
        state, source = read_state(spec, path, keys)
        variables = state_dict_to_variables(state, target, spec.keymap, model_name=spec.name,
                                            built_for=_built_for(spec, target))
    _warn_nonfinite(path, variables)
    return jax.tree_util.tree_map(jnp.asarray, variables), source


def _built_for(spec: ModelSpec, target: Mapping, trained_on: str | None = None) -> BuiltFor:
    """What the model was built for and why (the registry's default, or adapted to --data)."""
    try:
        default = get_spec(spec.name)
    except JaxnetsError:  # a spec made outside the registry: nothing to compare with
        default = spec
    if spec.in_channels != default.in_channels:
        # adapt_to_data (jaxnets.data.pipeline) gives the digits source its own normalisation.
        data = " digits" if spec.normalization == "digits" else ""
        channels_origin = f"from --data{data}"
    else:
        channels_origin = f"{spec.name}'s default; commands with --data adapt it"
    head_kernel = flatten_tree(target).get(("params", *spec.head.split("/"), "kernel"))
    num_classes = int(head_kernel.shape[-1]) if head_kernel is not None else spec.num_classes
    classes_origin = (f"{spec.name}'s default" if num_classes == default.num_classes
                      else "set by --num-classes or the data")
    return BuiltFor(in_channels=spec.in_channels, num_classes=num_classes, head=spec.head,
                    channels_origin=channels_origin, classes_origin=classes_origin, trained_on=trained_on)


def _warn_nonfinite(path: Path, variables: Mapping) -> None:
    """One warning line when weights hold NaN or inf: everything computed from them is meaningless."""
    bad = count_nonfinite(variables)
    if not bad:
        return
    nan = sum(n for n, _ in bad.values())
    inf = sum(i for _, i in bad.values())
    names = ", ".join(list(bad)[:3]) + (", …" if len(bad) > 3 else "")
    warn(f"{path}: {len(bad)} tensor(s) hold non-finite values ({nan} NaN, {inf} inf): {names}; "
         "outputs computed from them are meaningless")


def capture_filter(names: Sequence[str]):
    """A ``capture_intermediates`` filter keeping the outputs of the named submodules."""
    wanted = set(names)

    def keep(module: Any, method_name: str) -> bool:
        return method_name == "__call__" and "/".join(module.path) in wanted

    return keep


def apply_with_intermediates(
    module: Any, variables: Mapping, x: jnp.ndarray, names: Sequence[str] = ("features",),
    train: bool = False,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Logits plus named intermediates.

    A name is either a sown value (``"features"``: the pooled penultimate vector) or the
    slash-joined path of a submodule whose output is wanted (``"layer1_0/conv1"``).
    """
    logits, state = module.apply(
        variables, x, train=train, capture_intermediates=capture_filter(names),
        mutable=["intermediates"],
    )
    flat: dict[str, jnp.ndarray] = {}

    def walk(node: Mapping, prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            if key == "__call__":
                flat["/".join(prefix)] = value[0]
            elif isinstance(value, Mapping):
                walk(value, prefix + (key,))
            else:
                flat["/".join(prefix + (key,))] = value[0]

    walk(state["intermediates"], ())
    missing = [n for n in names if n not in flat]
    if missing:
        raise KeyError(f"intermediates not produced: {missing}")
    return logits, {n: flat[n] for n in names}


def intermediate_names(spec: ModelSpec, module: Any) -> list[str]:
    """Every submodule path (for ``--layers``) plus the sown names, in call order."""
    x = jnp.zeros(spec.input_shape(1), jnp.float32)
    variables = abstract_variables(spec, module)
    _, state = jax.eval_shape(
        lambda v, x: module.apply(v, x, train=False, capture_intermediates=True,
                                  mutable=["intermediates"]), variables, x)
    names: list[str] = []

    def walk(node: Mapping, prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            if key == "__call__":
                if prefix:
                    names.append("/".join(prefix))
            elif isinstance(value, Mapping):
                walk(value, prefix + (key,))
            else:
                names.append("/".join(prefix + (key,)))

    walk(state["intermediates"], ())
    return names
