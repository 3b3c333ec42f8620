"""Other libraries' names for the same weights: a state_dict in timm's naming is turned into the
family's own (the names its KeyMap reads), and back for export.

Each family has one *native* naming — the one its KeyMap reads: torchvision's for ResNet, VGG and
DenseNet, Google's official ``.npz`` paths for MLP-Mixer. A :class:`Naming` adds another one:
a key pattern that only that naming produces (so a checkpoint's naming is detected from its keys)
and the two conversions. timm's ResNets and DenseNet-121 use torchvision's names already, so
for them "timm" is the native naming under another name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from jaxnets.errors import CheckpointError

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class Naming:
    name: str
    marker: str  # a regex some key of every such checkpoint matches, and no native one does
    to_native: Callable[[State], State]
    from_native: Callable[[State], State]

    def matches(self, keys: list[str]) -> bool:
        return any(re.fullmatch(self.marker, k) for k in keys)


# ---------------------------------------------------------------- VGG: timm's ConvMlp head
# timm stores torchvision's classifier.0 (4096, 25088) as the 7×7 conv pre_logits.fc1
# (4096, 512, 7, 7) — the same numbers, (C, H, W)-flattened — classifier.3 as the 1×1 conv
# pre_logits.fc2 and classifier.6 as head.fc. Identical outputs at 224 px.
_VGG_TIMM = (("classifier.0.", "pre_logits.fc1."), ("classifier.3.", "pre_logits.fc2."), ("classifier.6.", "head.fc."))


def _rename(state: Mapping[str, np.ndarray], pairs: tuple[tuple[str, str], ...]) -> State:
    out: State = {}
    for key, value in state.items():
        for old, new in pairs:
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def _vgg_from_timm(state: State) -> State:
    out = _rename(state, tuple((new, old) for old, new in _VGG_TIMM))
    for key in ("classifier.0.weight", "classifier.3.weight"):
        if key in out and np.ndim(out[key]) == 4:
            out[key] = np.asarray(out[key]).reshape(out[key].shape[0], -1)
    return out


def _vgg_to_timm(state: State) -> State:
    out = dict(state)
    if "classifier.0.weight" in out:
        w = np.asarray(out["classifier.0.weight"])
        out["classifier.0.weight"] = w.reshape(w.shape[0], 512, 7, 7)
    if "classifier.3.weight" in out:
        w = np.asarray(out["classifier.3.weight"])
        out["classifier.3.weight"] = w.reshape(*w.shape, 1, 1)
    return _rename(out, _VGG_TIMM)


VGG_TIMM = Naming("timm", r"pre_logits\.fc1\.weight", _vgg_from_timm, _vgg_to_timm)

# ---------------------------------------------------------------- MLP-Mixer: timm's mlp_mixer
# Native = the official .npz's Flax paths (HWIO conv, (in, out) Dense); timm = PyTorch layouts.
_MIXER_PARTS = (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_1"), ("mlp_tokens.fc1", "token_mixing/Dense_0"),
                ("mlp_tokens.fc2", "token_mixing/Dense_1"), ("mlp_channels.fc1", "channel_mixing/Dense_0"),
                ("mlp_channels.fc2", "channel_mixing/Dense_1"))
_MIXER_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)\.(weight|bias)")


def _mixer_from_timm(state: State) -> State:
    out: State = {}
    parts = dict(_MIXER_PARTS)
    for key, value in state.items():
        value = np.asarray(value)
        block = _MIXER_BLOCK.fullmatch(key)
        if key in ("stem.proj.weight", "stem.proj.bias"):
            out["stem/" + ("kernel" if key.endswith("weight") else "bias")] = (
                value.transpose(2, 3, 1, 0) if value.ndim == 4 else value)
        elif block and block.group(2) in parts:
            module = f"MixerBlock_{block.group(1)}/{parts[block.group(2)]}"
            is_norm = block.group(2).startswith("norm")
            leaf = "bias" if block.group(3) == "bias" else ("scale" if is_norm else "kernel")
            out[f"{module}/{leaf}"] = value.T if leaf == "kernel" else value
        elif key in ("norm.weight", "norm.bias"):
            out["pre_head_layer_norm/" + ("scale" if key.endswith("weight") else "bias")] = value
        elif key in ("head.weight", "head.bias"):
            out["head/" + ("kernel" if key.endswith("weight") else "bias")] = value.T if value.ndim == 2 else value
        else:
            out[key] = value  # left for the strict mapping to report as unexpected
    return out


def _mixer_to_timm(state: State) -> State:
    out: State = {}
    parts = {flax: torch for torch, flax in _MIXER_PARTS}
    for key, value in state.items():
        value = np.asarray(value)
        module, _, leaf = key.rpartition("/")
        torch_leaf = "bias" if leaf == "bias" else "weight"
        if module == "stem":
            out[f"stem.proj.{torch_leaf}"] = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value
        elif module.startswith("MixerBlock_"):
            block, _, part = module.partition("/")
            name = f"blocks.{block.removeprefix('MixerBlock_')}.{parts[part]}.{torch_leaf}"
            out[name] = value.T if leaf == "kernel" else value
        elif module == "pre_head_layer_norm":
            out[f"norm.{torch_leaf}"] = value
        elif module == "head":
            out[f"head.{torch_leaf}"] = value.T if leaf == "kernel" else value
        else:
            raise CheckpointError(f"no timm name for {key}")
    return out


MIXER_TIMM = Naming("timm", r"blocks\.\d+\.mlp_tokens\.fc1\.weight", _mixer_from_timm, _mixer_to_timm)


def _same(state: State) -> State:
    return dict(state)


TIMM_IS_TORCHVISION = Naming("timm", r"(?!)", _same, _same)  # never detected: the names are the same


def detect_naming(namings: tuple[Naming, ...], native: str, keys: list[str]) -> str:
    """The naming a state_dict's keys are in: ``native`` unless another naming's marker matches."""
    found = [n.name for n in namings if n.matches(keys)]
    if len(found) > 1:
        raise CheckpointError(f"the checkpoint's keys fit several namings ({', '.join(found)}); "
                              "say which with --keys")
    return found[0] if found else native


def naming_names(namings: tuple[Naming, ...], native: str) -> tuple[str, ...]:
    return (native, *(n.name for n in namings if n.name != native))


def to_native(state: State, namings: tuple[Naming, ...], native: str, keys: str | None = None) -> tuple[State, str]:
    """``(state in the native naming, the naming it came in)``; ``keys`` forces a naming."""
    name = keys or detect_naming(namings, native, list(state))
    if name == native:
        return dict(state), name
    naming = next((n for n in namings if n.name == name), None)
    if naming is None:
        raise CheckpointError(f"--keys {name}: this model reads {' or '.join(naming_names(namings, native))} names")
    return naming.to_native(dict(state)), name


def from_native(state: State, namings: tuple[Naming, ...], native: str, keys: str | None = None) -> State:
    """The native state in naming ``keys`` (default: native) — for export."""
    if keys is None or keys == native:
        return dict(state)
    naming = next((n for n in namings if n.name == keys), None)
    if naming is None:
        raise CheckpointError(f"--keys {keys}: this model writes {' or '.join(naming_names(namings, native))} names")
    return naming.from_native(dict(state))
