"""The original mask-dict format and the run folder's own files (specs/seam.md §2.9, §8.7).

Original ``.pth``: ``{"<torch param name>_mask": scores in the parameter's PyTorch layout (OIHW /
[out, in]), "module_head.1.weight": [K, C], "module_head.1.bias": [K]}`` — real-valued scores, so
a file of the authors' released masks evaluates here and ours there. Written without torch
(``jaxnets.converters.torch_writer``), read with the restricted reader. Layout changes go through the same
converter as the weights, so the round trip is exact. MLP-Mixer masks carry the SeaM fork's names
(``stem.weight_mask``, ``layer.0.token_mlp_block.fc0.weight_mask``, …, ``head.bias_mask``); files
with the official Flax names (``stem/kernel_mask``, what jaxnets wrote before) or timm's still read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.converters.convert import torch_key_to_flax, variables_to_state_dict
from jaxnets.converters.keymaps import KeyMap
from jaxnets.converters.namings import Naming, State, from_native, to_native
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


# ---------------------------------------------------------------- the SeaM fork's Mixer names
# The fork's PyTorch MLP-Mixer (ModularizedModels, src/multi_class/models/mlpmixer.py) names its
# layers stem, layer.<i>.{token,channel}_mlp_block.fc{0,1}, layer.<i>.{pre,post}_norm, pre_head_ln
# and head (PyTorch layouts): its released masks are "<that name>_mask". Native = the official
# .npz's Flax paths, which jaxnets' Mixer uses.
_FORK_MIXER_PARTS = (("token_mlp_block.fc0", "token_mixing/Dense_0"), ("token_mlp_block.fc1", "token_mixing/Dense_1"),
                     ("channel_mlp_block.fc0", "channel_mixing/Dense_0"),
                     ("channel_mlp_block.fc1", "channel_mixing/Dense_1"),
                     ("pre_norm", "LayerNorm_0"), ("post_norm", "LayerNorm_1"))
_FORK_TOP = (("stem", "stem"), ("pre_head_ln", "pre_head_layer_norm"), ("head", "head"))
_FORK_BLOCK = re.compile(r"layer\.(\d+)\.(.+)\.(weight|bias)")


def _flax_leaf(torch_leaf: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """A PyTorch ``weight``/``bias`` as the Flax leaf and layout (conv OIHW → HWIO, linear
    [out, in] → [in, out], a norm's 1-D weight → ``scale``)."""
    if torch_leaf == "bias":
        return "bias", value
    if value.ndim == 4:
        return "kernel", value.transpose(2, 3, 1, 0)
    return ("kernel", value.T) if value.ndim == 2 else ("scale", value)


def _torch_leaf(flax_leaf: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    if flax_leaf == "bias":
        return "bias", value
    if value.ndim == 4:
        return "weight", value.transpose(3, 2, 0, 1)
    return "weight", value.T if value.ndim == 2 else value


def _mixer_from_fork(state: State) -> State:
    parts, top = dict(_FORK_MIXER_PARTS), dict(_FORK_TOP)
    out: State = {}
    for key, value in state.items():
        value = np.asarray(value)
        module, _, leaf = key.rpartition(".")
        block = _FORK_BLOCK.fullmatch(key)
        if block and block.group(2) in parts:
            name, array = _flax_leaf(block.group(3), value)
            out[f"MixerBlock_{block.group(1)}/{parts[block.group(2)]}/{name}"] = array
        elif module in top and leaf in ("weight", "bias"):
            name, array = _flax_leaf(leaf, value)
            out[f"{top[module]}/{name}"] = array
        else:
            out[key] = value  # left for the strict mapping to report as unexpected
    return out


def _mixer_to_fork(state: State) -> State:
    parts = {flax: torch for torch, flax in _FORK_MIXER_PARTS}
    top = {flax: torch for torch, flax in _FORK_TOP}
    out: State = {}
    for key, value in state.items():
        value = np.asarray(value)
        module, _, leaf = key.rpartition("/")
        name, array = _torch_leaf(leaf, value)
        block, _, part = module.partition("/")
        if block.startswith("MixerBlock_") and part in parts:
            out[f"layer.{block.removeprefix('MixerBlock_')}.{parts[part]}.{name}"] = array
        elif module in top:
            out[f"{top[module]}.{name}"] = array
        else:
            raise CheckpointError(f"no SeaM-fork name for {key}")
    return out


MIXER_SEAM_FORK = Naming("seam-fork", r"layer\.\d+\.token_mlp_block\.fc0\.weight", _mixer_from_fork, _mixer_to_fork)


def mask_namings(keymap: KeyMap) -> tuple[tuple[Naming, ...], str | None]:
    """(the namings a mask dict of this family may use, the one to export) — the fork's for the
    MLP-Mixer (its official Flax names and timm's are still read), the keymap's native otherwise."""
    from jaxnets.models.mixer import MIXER_KEYMAP

    if keymap == MIXER_KEYMAP:
        return (MIXER_SEAM_FORK, *keymap.namings), MIXER_SEAM_FORK.name
    return keymap.namings, None


def scores_to_state_dict(scores: Any, head: Mapping | None, keymap: KeyMap) -> dict[str, np.ndarray]:
    """Score tree (+ head) → the original dict (torch names and layouts; the fork's Mixer names)."""
    flat = {k: np.asarray(v, np.float32) for k, v in names.flatten(scores).items()}
    namings, export = mask_namings(keymap)
    state = from_native(variables_to_state_dict({"params": names.unflatten(flat)}, keymap), namings, keymap.native,
                        export)
    out = {f"{k}{MASK_SUFFIX}": np.ascontiguousarray(v) for k, v in state.items()}
    if head is not None:
        out[HEAD_KEYS[0]] = np.ascontiguousarray(np.asarray(head["linear"]["kernel"]).T)
        out[HEAD_KEYS[1]] = np.asarray(head["linear"]["bias"])
    return out


def state_dict_to_scores(state: Mapping[str, np.ndarray], template: Any, keymap: KeyMap,
                         skip_modules: tuple[str, ...] = ()) -> tuple[Any, dict | None]:
    """The inverse: fill a score tree shaped like ``template`` (strict both ways) and the head.

    The mask names may be in any naming of :func:`mask_namings` (detected). ``skip_modules``:
    top-level modules whose entries are ignored — masks or weights (``defect_inherit``'s
    ``step_2_seam.pth`` holds the step-2 ``fc.weight``/``fc.bias`` next to the masks).
    """
    expected = names.flatten(template)
    masks = {key[: -len(MASK_SUFFIX)]: np.asarray(v) for key, v in state.items() if key.endswith(MASK_SUFFIX)}
    others = [key for key in state if key not in HEAD_KEYS and not key.endswith(MASK_SUFFIX)]
    namings, _ = mask_namings(keymap)
    masks, _ = to_native(masks, namings, keymap.native)
    filled: dict[str, np.ndarray] = {}
    unknown = []
    for key in others:
        try:
            path, _ = torch_key_to_flax(key, np.asarray(state[key]), keymap)
        except CheckpointError:
            path = ()
        if len(path) < 2 or path[1] not in skip_modules:
            unknown.append(key)
    for key, value in masks.items():
        path, array = torch_key_to_flax(key, value, keymap)
        leaf = "/".join(path[1:])
        if len(path) > 1 and path[1] in skip_modules:
            continue
        if path[0] != "params" or leaf not in expected:
            unknown.append(f"{key}{MASK_SUFFIX}")
            continue
        if tuple(array.shape) != tuple(np.shape(expected[leaf])):
            raise CheckpointError(f"mask {key}{MASK_SUFFIX} has shape {tuple(np.shape(value))}, the model's "
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


def import_mask_dict(path: str | Path, template: Any, keymap: KeyMap,
                     skip_modules: tuple[str, ...] = ()) -> tuple[Any, dict | None]:
    """Read an original mask dict (:func:`state_dict_to_scores`)."""
    from jaxnets.converters.torch_reader import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"mask file not found: {path}")
    obj = load_torch_file(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of masks, got {type(obj).__name__}")
    state = {str(k): np.asarray(v) for k, v in obj.items()}
    return state_dict_to_scores(state, template, keymap, skip_modules)


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

