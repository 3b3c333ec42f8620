"""Helpers over registered models: build, init, load weights, named intermediates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import CheckpointError
from jaxnets.models.registry import ModelSpec, get_spec

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


def load_weights(spec: ModelSpec, module: Any, path: str | Path) -> Variables:
    """Read a PyTorch (``.th/.pth/.pt/.tar``), ``.npz`` or jaxnets checkpoint into variables."""
    from converters.convert import state_dict_to_variables
    from converters.npz import load_npz_state
    from converters.torch_reader import extract_state_dict, load_torch_file
    from jaxnets.io import is_jaxnets_checkpoint, load_variables

    path = Path(path)
    target = abstract_variables(spec, module)
    if is_jaxnets_checkpoint(path):
        return load_variables(path, target, model_name=spec.name)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix == ".npz":
        state = load_npz_state(path)
    else:
        state = extract_state_dict(load_torch_file(path))
    variables = state_dict_to_variables(state, target, spec.keymap, model_name=spec.name)
    return jax.tree_util.tree_map(jnp.asarray, variables)


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
