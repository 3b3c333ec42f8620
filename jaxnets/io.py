"""jaxnets' own checkpoint format: an orbax checkpoint folder plus ``jaxnets.json`` metadata."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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


def _manifest(folder: Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file under ``folder`` except the metadata."""
    out = {}
    for file in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META):
        out[file.relative_to(folder).as_posix()] = [file.stat().st_size,
                                                    hashlib.sha256(file.read_bytes()).hexdigest()]
    return out


def save_variables(path: str | Path, variables: Mapping, metadata: Mapping[str, Any]) -> Path:
    """Write ``variables`` to the folder ``path`` (must not exist, or be empty).

    Atomic: written under a temporary sibling and renamed into place, so a crash never leaves a
    half-written checkpoint under ``path``. ``jaxnets.json`` records every file's size and
    SHA-256, so a checkpoint damaged later is detected (:func:`checkpoint_problem`).
    """
    import jax
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(f"refusing to overwrite {path} (nothing was overwritten)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    # Host arrays written by this process alone: in a multi-process run only process 0 saves
    # snapshots, so orbax must not wait for the others at its barriers.
    me = jax.process_index()
    alone = ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me})
    with ocp.StandardCheckpointer(multiprocessing_options=alone) as ckpt:
        ckpt.save(tmp / "variables", dict(variables))
        ckpt.wait_until_finished()
    meta = {"format": "jaxnets", "format_version": FORMAT_VERSION, **metadata, "files": _manifest(tmp)}
    (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    if path.exists():
        path.rmdir()  # empty (checked above)
    tmp.rename(path)
    return path


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the jaxnets checkpoint folder ``path`` is incomplete or damaged, or None if it is whole."""
    path = Path(path)
    if not (path / META).is_file():
        return f"{path} has no {META} (not a jaxnets checkpoint, or written only in part)"
    try:
        files = json.loads((path / META).read_text()).get("files")
    except (OSError, json.JSONDecodeError, AttributeError) as exc:
        return f"{path / META} is unreadable ({exc})"
    if files is None:
        return None  # written before manifests existed: nothing to compare with
    for rel, (size, digest) in files.items():
        file = path / rel
        if not file.is_file():
            return f"{path}: {rel} is missing"
        if file.stat().st_size != size or hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            return f"{path}: {rel} differs from what was written (truncated or modified)"
    return None


def load_variables(path: str | Path, target: Mapping, model_name: str | None = None) -> dict:
    """Restore against ``target`` (abstract or concrete variables); checks the model name."""
    import jax
    import orbax.checkpoint as ocp

    path = Path(path).absolute()
    meta = read_metadata(path)
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint is damaged: {problem}")
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
