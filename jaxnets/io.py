"""jaxnets' own checkpoint format: an orbax checkpoint folder plus ``jaxnets.json`` metadata."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxnets.errors import CheckpointError

META = "jaxnets.json"
FORMAT_VERSION = 1


def is_jaxnets_checkpoint(path: str | Path) -> bool:
    return (Path(path) / META).is_file()


def read_metadata(path: str | Path) -> dict:
    try:
        return json.loads((Path(path) / META).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable jaxnets metadata ({exc})") from None


def save_variables(path: str | Path, variables: Mapping, metadata: Mapping[str, Any]) -> Path:
    """Write ``variables`` to the folder ``path`` (created; must not exist or be empty)."""
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if path.exists() and any(path.iterdir()):
        raise CheckpointError(f"refusing to overwrite non-empty folder {path}")
    path.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path / "variables", dict(variables))
        ckpt.wait_until_finished()
    meta = {"format": "jaxnets", "format_version": FORMAT_VERSION, **metadata}
    (path / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return path


def load_variables(path: str | Path, target: Mapping, model_name: str | None = None) -> dict:
    """Restore against ``target`` (abstract or concrete variables); checks the model name."""
    import jax
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    meta = read_metadata(path)
    if model_name and meta.get("model") not in (None, model_name):
        raise CheckpointError(
            f"{path} holds a '{meta.get('model')}' checkpoint, not '{model_name}'")
    abstract = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), dict(target))
    try:
        with ocp.StandardCheckpointer() as ckpt:
            return dict(ckpt.restore(path / "variables", abstract))
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise CheckpointError(f"{path}: checkpoint does not fit {model_name or 'the model'} "
                              f"({str(exc).splitlines()[0][:300]})") from None
