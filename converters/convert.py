"""Map a flat PyTorch state_dict onto a Flax variable tree, strictly, and back.

The target structure comes from ``jax.eval_shape(model.init, …)``: every target leaf must be
filled with an array of exactly its shape, and every source key must be consumed (or ignored by
the family's KeyMap), or a ``CheckpointError`` names the offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from converters.keymaps import KeyMap, flax_module_to_torch, torch_module_to_flax
from jaxnets.errors import CheckpointError

Path = tuple[str, ...]

_BN_STATS = {"running_mean": "mean", "running_var": "var"}
_BN_STATS_INV = {v: k for k, v in _BN_STATS.items()}


def flatten_tree(tree: Mapping, prefix: Path = ()) -> dict[Path, Any]:
    out: dict[Path, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten_tree(value, prefix + (str(key),)))
        else:
            out[prefix + (str(key),)] = value
    return out


def unflatten_tree(flat: Mapping[Path, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = value
    return tree


def _chw_to_hwc_rows(kernel_in_out: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    c, h, w = chw
    return kernel_in_out.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)


def _hwc_to_chw_rows(kernel_in_out: np.ndarray, chw: tuple[int, int, int]) -> np.ndarray:
    c, h, w = chw
    return kernel_in_out.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)


def torch_key_to_flax(key: str, value: np.ndarray, keymap: KeyMap) -> tuple[Path, np.ndarray]:
    """One state_dict entry → (``(collection, *module_path, leaf)``, array in Flax layout)."""
    if keymap.source_layout == "flax":
        return ("params", *key.split("/")), value
    module, _, leaf = keymap.rename(key).rpartition(".")
    path = torch_module_to_flax(module) if module else ()
    if leaf in _BN_STATS:
        return ("batch_stats", *path, _BN_STATS[leaf]), value
    if leaf == "bias":
        return ("params", *path, "bias"), value
    if leaf == "weight":
        if value.ndim == 4:
            return ("params", *path, "kernel"), value.transpose(2, 3, 1, 0)
        if value.ndim == 2:
            kernel = value.T
            if module in keymap.flatten_chw:
                kernel = _chw_to_hwc_rows(kernel, keymap.flatten_chw[module])
            return ("params", *path, "kernel"), kernel
        if value.ndim == 1:
            return ("params", *path, "scale"), value
    raise CheckpointError(f"don't know where to put '{key}' (shape {tuple(value.shape)})")


def state_dict_to_variables(
    state_dict: Mapping[str, np.ndarray], target: Mapping, keymap: KeyMap, *, model_name: str = "model"
) -> dict:
    """Fill ``target`` (an abstract variable tree) from ``state_dict``; strict in both directions."""
    expected = flatten_tree(target)
    filled: dict[Path, np.ndarray] = {}
    unconsumed: list[str] = []
    mismatched: list[str] = []
    for key, value in state_dict.items():
        if keymap.ignored(key):
            continue
        value = np.asarray(value)
        try:
            path, array = torch_key_to_flax(key, value, keymap)
        except CheckpointError:
            unconsumed.append(key)
            continue
        if path not in expected:
            unconsumed.append(key)
            continue
        want = tuple(expected[path].shape)
        if tuple(array.shape) != want:
            mismatched.append(f"{key} {tuple(value.shape)} → {'/'.join(path)} expects {want}")
            continue
        filled[path] = np.ascontiguousarray(array, dtype=expected[path].dtype)
    missing = ["/".join(p) for p in expected if p not in filled]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(mismatched[:5]))
    if unconsumed:
        problems.append(f"{len(unconsumed)} unexpected key(s): " + ", ".join(unconsumed[:8]))
    if missing:
        problems.append(f"{len(missing)} missing leaf/leaves: " + ", ".join(missing[:8]))
    if problems:
        more = " (is it a checkpoint of another architecture?)" if len(problems) > 1 or mismatched else ""
        raise CheckpointError(f"checkpoint does not fit {model_name}: " + " | ".join(problems) + more)
    return unflatten_tree(filled)


def variables_to_state_dict(variables: Mapping, keymap: KeyMap) -> dict[str, np.ndarray]:
    """Inverse of :func:`state_dict_to_variables` (modern key names, PyTorch layouts)."""
    out: dict[str, np.ndarray] = {}
    inverse_chw = {tuple(torch_module_to_flax(k)): v for k, v in keymap.flatten_chw.items()}
    for path, value in flatten_tree(variables).items():
        value = np.asarray(value)
        collection, *module, leaf = path
        if keymap.source_layout == "flax":
            out["/".join([*module, leaf])] = value
            continue
        prefix = flax_module_to_torch(tuple(module))
        if collection == "batch_stats":
            out[f"{prefix}.{_BN_STATS_INV[leaf]}"] = value
            if leaf == "mean":
                out[f"{prefix}.num_batches_tracked"] = np.array(0, dtype=np.int64)
        elif leaf == "kernel" and value.ndim == 4:
            out[f"{prefix}.weight"] = value.transpose(3, 2, 0, 1)
        elif leaf == "kernel" and value.ndim == 2:
            if tuple(module) in inverse_chw:
                value = _hwc_to_chw_rows(value, inverse_chw[tuple(module)])
            out[f"{prefix}.weight"] = value.T
        elif leaf == "scale":
            out[f"{prefix}.weight"] = value
        elif leaf == "bias":
            out[f"{prefix}.bias"] = value
        else:
            raise CheckpointError(f"cannot export leaf {'/'.join(path)}")
    # np.ascontiguousarray turns 0-d arrays (num_batches_tracked) into shape (1,); keep them 0-d
    return {k: np.ascontiguousarray(v) if np.ndim(v) else np.asarray(v) for k, v in out.items()}
