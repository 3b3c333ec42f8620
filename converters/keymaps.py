"""Key maps: how a PyTorch state_dict key names a leaf of the Flax variable tree.

The generic rule, shared by every family (models name their submodules to follow it):
  * the module path's dots become Flax nesting, except that a numeric segment attaches to the
    segment before it: ``layer1.0.conv1`` → ``layer1_0/conv1``, ``features.0`` → ``features_0``;
  * the leaf is chosen by name and rank: ``weight`` of rank 4 → ``params/kernel`` (OIHW→HWIO),
    rank 2 → ``params/kernel`` (transposed), rank 1 → ``params/scale``; ``bias`` → ``params/bias``;
    ``running_mean``/``running_var`` → ``batch_stats/mean``/``var``.
A family's KeyMap adds only what differs: regex renames of legacy keys, keys to ignore, and the
Linear layers fed by a PyTorch (C, H, W) flatten, whose kernel rows are permuted once for NHWC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from jaxnets.converters.namings import Naming

DROPPED_SUFFIXES = ("num_batches_tracked",)


@dataclass(frozen=True)
class KeyMap:
    """Per-family differences from the generic rule (see module docstring)."""

    renames: tuple[tuple[str, str], ...] = ()
    ignore: tuple[str, ...] = ()
    flatten_chw: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    source_layout: str = "torch"  # "torch" (OIHW, state_dict names) or "flax" (npz, slash names)
    native: str = "torchvision"  # the naming the rules above read (converters/namings.py)
    namings: tuple[Naming, ...] = ()  # other libraries' names, detected from the keys

    def rename(self, key: str) -> str:
        for pattern, repl in self.renames:
            key = re.sub(pattern, repl, key)
        return key

    def ignored(self, key: str) -> bool:
        return key.endswith(DROPPED_SUFFIXES) or any(re.fullmatch(p, key) for p in self.ignore)


GENERIC = KeyMap()

_NUMERIC = re.compile(r"^\d+$")
# A name, then one or more attached numeric segments: "layer3_0" → layer3 + [0],
# "features_0_1" → features + [0, 1]. The name itself may end in a digit ("layer3").
_ATTACHED = re.compile(r"^(.+?)((?:_\d+)+)$")


def torch_module_to_flax(path: str) -> tuple[str, ...]:
    """``layer1.0.conv1`` → ("layer1_0", "conv1")."""
    out: list[str] = []
    for seg in path.split("."):
        if _NUMERIC.match(seg) and out:
            out[-1] = f"{out[-1]}_{seg}"
        else:
            out.append(seg)
    return tuple(out)


def flax_module_to_torch(path: tuple[str, ...]) -> str:
    """Inverse of :func:`torch_module_to_flax`: ("layer1_0", "conv1") → ``layer1.0.conv1``."""
    segs = []
    for seg in path:
        m = _ATTACHED.match(seg)
        segs.extend([m.group(1), *m.group(2)[1:].split("_")] if m else [seg])
    return ".".join(segs)
