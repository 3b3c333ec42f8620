"""Map a flat PyTorch state_dict onto a Flax variable tree, strictly, and back.

The target structure comes from ``jax.eval_shape(model.init, …)``: every target leaf must be
filled with an array of exactly its shape, and every source key must be consumed (or ignored by
the family's KeyMap), or a ``CheckpointError`` names the offending keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

import numpy as np
from jaxnets.converters.keymaps import KeyMap, flax_module_to_torch, torch_module_to_flax

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


@dataclass(frozen=True)
class BuiltFor:
    """What a model was built for: lets a misfit error say which option would make it fit."""

    in_channels: int
    num_classes: int
    head: str  # slash path of the final Dense layer
    channels_origin: str = ""  # why it has that many channels, e.g. "from --data digits"
    classes_origin: str = ""
    trained_on: str | None = None  # the data spec the checkpoint records it was trained on


@dataclass(frozen=True)
class ShapeMismatch:
    """One tensor whose shape differs; ``found``/``expected`` are in the checkpoint's layout."""

    key: str
    path: Path
    found: tuple[int, ...]
    expected: tuple[int, ...]
    found_flax: tuple[int, ...]
    expected_flax: tuple[int, ...]


def _torch_layout(path: Path, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape of a Flax leaf's shape (inverse of :func:`torch_key_to_flax`'s layouts)."""
    if path[-1] == "kernel" and len(flax_shape) == 4:
        kh, kw, i, o = flax_shape
        return (o, i, kh, kw)
    if path[-1] == "kernel" and len(flax_shape) == 2:
        return (flax_shape[1], flax_shape[0])
    return tuple(flax_shape)


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {plural or word + 's'}"


def _with_origin(text: str, origin: str) -> str:
    return f"{text} ({origin})" if origin else text


def _explain_mismatches(mismatches: Sequence[ShapeMismatch], built: BuiltFor,
                        flattened: Set[tuple[str, ...]]) -> str | None:
    """When every shape difference is the input channels, the classes or the flattened input size,
    say so and name the option that fits; None when it looks like another architecture."""
    channels: set[int] = set()
    classes: set[int] = set()
    inputs: list[ShapeMismatch] = []
    for m in mismatches:
        want, got, module, leaf = m.expected_flax, m.found_flax, m.path[1:-1], m.path[-1]
        if len(want) != len(got):
            return None
        axes = [i for i, (w, g) in enumerate(zip(want, got, strict=True)) if w != g]
        if leaf == "kernel" and len(want) == 4 and axes == [2] and want[2] == built.in_channels:
            channels.add(got[2])  # a conv reading the image itself
        elif ("/".join(module) == built.head and want[-1] == built.num_classes
              and ((leaf == "kernel" and len(want) == 2 and axes == [1]) or (leaf == "bias" and axes == [0]))):
            classes.add(got[-1])
        elif leaf == "kernel" and len(want) == 2 and axes == [0] and module in flattened:
            inputs.append(m)  # a Linear fed by a flatten of the image or feature map
        else:
            return None
    if len(channels) > 1 or len(classes) > 1:
        return None
    found_channels = next(iter(channels), None)
    found_classes = next(iter(classes), None)
    has, model, fixes = [], [], []
    if found_channels is not None or not inputs:  # a flattened input alone says nothing of channels
        has.append(_count(built.in_channels if found_channels is None else found_channels, "input channel"))
    has.append(_count(built.num_classes if found_classes is None else found_classes, "class", "classes"))
    if found_channels is not None:
        model.append(_with_origin(_count(built.in_channels, "channel"), built.channels_origin))
        fixes.append(f"pass --data with {found_channels}-channel images")
    if found_classes is not None:
        model.append(_with_origin(_count(built.num_classes, "class", "classes"), built.classes_origin))
        fixes.append(f"pass --num-classes {found_classes}")
    if inputs:
        first = inputs[0]
        has.append(f"{first.found_flax[0]} input features into {first.key}")
        model.append(_with_origin(f"{first.expected_flax[0]} input features into {first.key}",
                                  built.channels_origin))
        if found_channels is None:
            fixes.append("pass --data with images of the size and channels it was trained on")
    hint = (f"the checkpoint has {', '.join(has[:-1])} and {has[-1]} but the model was built for "
            f"{' and '.join(model)}: {'; '.join(fixes)}")
    if built.trained_on:
        hint += f" (the checkpoint was trained on --data {built.trained_on})"
    return hint


def raise_misfit(model_name: str, *, mismatched: Sequence[ShapeMismatch] = (), unexpected: Sequence[str] = (),
                 missing: Sequence[str] = (), built_for: BuiltFor | None = None,
                 flattened: Set[tuple[str, ...]] = frozenset()) -> None:
    """Raise the ``CheckpointError`` saying why a checkpoint does not fit (no-op if nothing is wrong)."""
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): " + "; ".join(
            f"{m.key} has shape {m.found} where {model_name} expects {m.expected}" for m in mismatched[:5]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): " + ", ".join(unexpected[:8]))
    if missing:
        problems.append(f"{len(missing)} missing leaf/leaves: " + ", ".join(missing[:8]))
    if not problems:
        return
    hint = None
    if mismatched and not unexpected and not missing and built_for is not None:
        hint = _explain_mismatches(mismatched, built_for, flattened)
    if hint:
        more = f" — {hint}"
    elif len(problems) > 1 or mismatched:
        more = " (is it a checkpoint of another architecture?)"
    else:
        more = ""
    raise CheckpointError(f"checkpoint does not fit {model_name}: " + " | ".join(problems) + more)


def check_variables_fit(variables: Mapping, target: Mapping, *, model_name: str = "model",
                        built_for: BuiltFor | None = None, keymap: KeyMap | None = None) -> None:
    """Refuse ``variables`` (e.g. restored from a jaxnets folder) unless every leaf has the target's shape."""
    have, want = flatten_tree(variables), flatten_tree(target)
    mismatched = [
        ShapeMismatch("/".join(p), p, tuple(np.shape(have[p])), tuple(want[p].shape),
                      tuple(np.shape(have[p])), tuple(want[p].shape))
        for p in want if p in have and tuple(np.shape(have[p])) != tuple(want[p].shape)]
    raise_misfit(model_name, mismatched=mismatched,
                 unexpected=["/".join(p) for p in have if p not in want],
                 missing=["/".join(p) for p in want if p not in have], built_for=built_for,
                 flattened=_flattened_modules(keymap))


def _flattened_modules(keymap: KeyMap | None) -> set[tuple[str, ...]]:
    return {torch_module_to_flax(k) for k in keymap.flatten_chw} if keymap else set()


def state_dict_to_variables(
    state_dict: Mapping[str, np.ndarray], target: Mapping, keymap: KeyMap, *, model_name: str = "model",
    built_for: BuiltFor | None = None,
) -> dict:
    """Fill ``target`` (an abstract variable tree) from ``state_dict``; strict in both directions.

    ``built_for`` (what the model was built for) lets the error of a checkpoint that differs only
    in input channels, classes or input size name the option that would make it fit.
    """
    expected = flatten_tree(target)
    filled: dict[Path, np.ndarray] = {}
    unconsumed: list[str] = []
    mismatched: list[ShapeMismatch] = []
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
            found = tuple(value.shape)
            shown = want if keymap.source_layout == "flax" else _torch_layout(path, want)
            mismatched.append(ShapeMismatch(key, path, found, shown, tuple(array.shape), want))
            continue
        filled[path] = np.ascontiguousarray(array, dtype=expected[path].dtype)
    reported = filled.keys() | {m.path for m in mismatched}  # a mismatch is not also "missing"
    missing = ["/".join(p) for p in expected if p not in reported]
    raise_misfit(model_name, mismatched=mismatched, unexpected=unconsumed, missing=missing,
                 built_for=built_for, flattened=_flattened_modules(keymap))
    return unflatten_tree(filled)


def count_nonfinite(variables: Mapping) -> dict[str, tuple[int, int]]:
    """``{slash path: (NaN count, ±inf count)}`` of the leaves holding non-finite values."""
    out: dict[str, tuple[int, int]] = {}
    for path, value in flatten_tree(variables).items():
        array = np.asarray(value)
        if array.dtype.kind not in "fc" and array.dtype.name != "bfloat16":
            continue
        array = array.astype(np.float32) if array.dtype.name == "bfloat16" else array
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or inf:
            out["/".join(path)] = (nan, inf)
    return out


def compare_variables(reference: Mapping, other: Mapping) -> dict[str, Any]:
    """NaN-aware comparison of two variable trees of the same structure.

    ``max_abs_diff`` is taken over the positions finite in both; a NaN or inf counts as equal only
    where the other tree holds the same value at the same position, else it is counted in
    ``nonfinite_mismatches``. ``nan``/``inf`` count those values in ``reference``, so a NaN
    never reads as a difference of 0.0 without a word.
    """
    flat_a, flat_b = flatten_tree(reference), flatten_tree(other)
    max_diff, nan, inf, mismatches = 0.0, 0, 0, 0
    for path, value in flat_a.items():
        a = np.asarray(value, dtype=np.float64)
        b = np.asarray(flat_b[path], dtype=np.float64)
        finite_a, finite_b = np.isfinite(a), np.isfinite(b)
        nan += int(np.isnan(a).sum())
        inf += int(np.isinf(a).sum())
        both = finite_a & finite_b
        if both.any():
            max_diff = max(max_diff, float(np.max(np.abs(a[both] - b[both]))))
        same_nonfinite = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))
        mismatches += int((~both & ~same_nonfinite).sum())
    return {"max_abs_diff": max_diff, "nan": nan, "inf": inf, "nonfinite_mismatches": mismatches}


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
