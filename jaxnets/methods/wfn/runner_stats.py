"""``jaxnets wfn stats``: the metrics of any checkpoint, from its PyTorch-style state dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jaxnets.errors import JaxnetsError


def checkpoint_state_dict(path: str | Path, model: str | None = None) -> dict:
    """A PyTorch-layout state dict from a torch file, .npz, WFN compact file or jaxnets folder."""
    import jax

    from jaxnets.converters.convert import variables_to_state_dict
    from jaxnets.converters.safetensors_io import is_safetensors_path, load_safetensors_state
    from jaxnets.io import is_jaxnets_checkpoint, read_metadata
    from jaxnets.methods.wfn.export import is_compact, load_compact

    path = Path(path)
    if not path.exists():
        raise JaxnetsError(f"checkpoint not found: {path}")
    if is_compact(path):
        return load_compact(path)
    if is_safetensors_path(path):
        return load_safetensors_state(path)  # PyTorch names already
    if is_jaxnets_checkpoint(path) or path.suffix == ".npz":
        from jaxnets.models.api import load_weights, resolve

        name = model or (read_metadata(path).get("model") if is_jaxnets_checkpoint(path) else None)
        if not name:
            raise JaxnetsError(f"{path}: say which model it holds with --model NAME")
        spec = resolve(name)
        variables = load_weights(spec, spec.create(), path)
        return variables_to_state_dict(jax.device_get(variables), spec.keymap)
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

    return extract_state_dict(load_torch_file(path))


def checkpoint_stats(path: str | Path, *, model: str | None = None, bn_inc: bool = True
                     ) -> dict[str, Any]:
    from jaxnets.methods.wfn.metrics import state_dict_stats

    return state_dict_stats(checkpoint_state_dict(path, model), bn_inc=bn_inc)
