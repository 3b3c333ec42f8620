"""The original mask-dict format and the run folder's own files (specs/seam.md §2.9, §8.7).

Original ``.pth``: ``{"<torch param name>_mask": scores in the parameter's PyTorch layout (OIHW /
[out, in]), "module_head.1.weight": [K, C], "module_head.1.bias": [K]}`` — real-valued scores, so
a file of the authors' released masks evaluates here and ours there. Written without torch
(``jaxnets.converters.torch_writer``), read with the restricted reader. Layout changes go through the same
converter as the weights, so the round trip is exact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.converters.convert import torch_key_to_flax, variables_to_state_dict
from jaxnets.converters.keymaps import KeyMap
from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.transforms import names

MASK_SUFFIX = "_mask"
HEAD_KEYS = ("module_head.1.weight", "module_head.1.bias")


def run_name(lr_head: float, lr_mask: float, alpha: float) -> str:
    """``lr_head_mask_{lr_head}_{lr_mask}_alpha_{alpha}``, floats as Python ``str(float(x))``
    (pitfall 9: always ``alpha_1.0``, never the original's unparsed-default ``alpha_1``)."""
    return f"lr_head_mask_{float(lr_head)}_{float(lr_mask)}_alpha_{float(alpha)}"


_NAME_RE = re.compile(r"^lr_head_mask_([0-9.eE+-]+)_([0-9.eE+-]+)_alpha_([0-9.eE+-]+?)(?:\.pth)?$")


def parse_run_name(name: str) -> tuple[float, float, float]:
    """(lr_head, lr_mask, alpha) from a run folder or released file name; ``alpha_1`` and
    ``alpha_1.0`` both parse."""
    m = _NAME_RE.match(Path(name).name)
    if not m:
        raise JaxnetsError(f"'{name}' is not named lr_head_mask_<lr_head>_<lr_mask>_alpha_<alpha>")
    return float(m.group(1)), float(m.group(2)), float(m.group(3))


def scores_to_state_dict(scores: Any, head: Mapping | None, keymap: KeyMap) -> dict[str, np.ndarray]:
    """Score tree (+ head) → the original dict (torch names and layouts)."""
    flat = {k: np.asarray(v, np.float32) for k, v in names.flatten(scores).items()}
    state = variables_to_state_dict({"params": names.unflatten(flat)}, keymap)
    out = {f"{k}{MASK_SUFFIX}": v for k, v in state.items()}
    if head is not None:
        out[HEAD_KEYS[0]] = np.ascontiguousarray(np.asarray(head["linear"]["kernel"]).T)
        out[HEAD_KEYS[1]] = np.asarray(head["linear"]["bias"])
    return out


def state_dict_to_scores(state: Mapping[str, np.ndarray], template: Any, keymap: KeyMap
                         ) -> tuple[Any, dict | None]:
    """The inverse: fill a score tree shaped like ``template`` (strict both ways) and the head."""
    expected = names.flatten(template)
    filled: dict[str, np.ndarray] = {}
    unknown = []
    for key, value in state.items():
        if key in HEAD_KEYS:
            continue
        if not key.endswith(MASK_SUFFIX):
            unknown.append(key)
            continue
        path, array = torch_key_to_flax(key[: -len(MASK_SUFFIX)], np.asarray(value), keymap)
        leaf = "/".join(path[1:])
        if path[0] != "params" or leaf not in expected:
            unknown.append(key)
            continue
        if tuple(array.shape) != tuple(np.shape(expected[leaf])):
            raise CheckpointError(f"mask {key} has shape {tuple(np.shape(value))}, the model's "
                                  f"{leaf} needs {tuple(np.shape(expected[leaf]))}")
        filled[leaf] = np.ascontiguousarray(array, np.float32)
    missing = [k for k in expected if k not in filled]
    if unknown or missing:
        raise CheckpointError("mask file does not fit the model: "
                              + (f"unexpected {', '.join(unknown[:5])}; " if unknown else "")
                              + (f"missing masks for {', '.join(missing[:5])}" if missing else ""))
    scores = _fill_like(template, filled)
    head = None
    if all(k in state for k in HEAD_KEYS):
        head = {"linear": {"kernel": np.ascontiguousarray(np.asarray(state[HEAD_KEYS[0]], np.float32).T),
                           "bias": np.asarray(state[HEAD_KEYS[1]], np.float32)}}
    return scores, head


def _fill_like(template: Any, filled: Mapping[str, np.ndarray]) -> Any:
    return names.map_with_names(lambda n, leaf: None if leaf is None else filled[n], template)


def export_mask_dict(path: str | Path, scores: Any, head: Mapping | None, keymap: KeyMap) -> Path:
    from jaxnets.converters.torch_writer import save_torch_state_dict

    save_torch_state_dict(Path(path), scores_to_state_dict(scores, head, keymap))
    return Path(path)


def import_mask_dict(path: str | Path, template: Any, keymap: KeyMap) -> tuple[Any, dict | None]:
    from jaxnets.converters.torch_reader import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"mask file not found: {path}")
    obj = load_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of masks, got {type(obj).__name__}")
    state = {str(k): np.asarray(v) for k, v in obj.items()}
    return state_dict_to_scores(state, template, keymap)


# --------------------------------------------------------------------------- run folder files


def save_tree(path: str | Path, tree: Any) -> Path:
    """A tree of arrays (``None`` leaves dropped) as Flax msgpack."""
    from flax import serialization

    flat = {k: np.asarray(v) for k, v in names.flatten(tree).items()}
    Path(path).write_bytes(serialization.msgpack_serialize(names.unflatten(flat)))
    return Path(path)


def load_tree(path: str | Path, template: Any = None) -> Any:
    """Read :func:`save_tree`; with ``template``, ``None`` leaves come back where it has them."""
    from flax import serialization

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"not found: {path}")
    tree = serialization.msgpack_restore(path.read_bytes())
    if template is None:
        return tree
    flat = names.flatten(tree)
    return _fill_like(template, flat)

