"""Epoch labels of snapshots (spec §3.4, §7 #5–#6).

Snapshot names: ``<arch>_init_0`` (before training), ``<arch>_pretrained_0`` (fine-tuning start),
``<arch>_<e>`` / ``.tar`` (after the epoch with 0-based index ``e``), final ``<arch>_<E>.pt`` /
``<arch>_pretrained_<E>.pt`` (original) or ``<arch>_final_<E>`` (jaxnets). Labels are the number
of completed epochs, ``"0"`` for an init, ``"-1"`` for ImageNet-pretrained start weights.

- **fixed** (default): the basename only, the same rules in both tools; a jaxnets snapshot's
  metadata (``epoch_completed``) wins when present; a final ``.pt`` is ``E`` (the original says
  ``E+1``, although its weights equal those of ``_<E-1>.tar`` = ``E``).
- **legacy** (``--legacy-epoch-labels``): byte-compatible with the original: ``projections``
  splits the basename (``pretrained`` → -1, ``init`` → 0, else last + 1); ``reinit`` splits the
  *full path* without extension and has no ``pretrained`` rule.
"""

from __future__ import annotations

import os
from pathlib import Path

TORCH_SUFFIXES = (".pt", ".pth", ".tar", ".th", ".npz", ".safetensors")


def _stem(path: str | Path) -> str:
    p = Path(path)
    return p.name[: -len(p.suffix)] if p.suffix in TORCH_SUFFIXES else p.name


class _NoEpoch(Exception):
    pass


def _last_int(tokens: list[str], path: str | Path) -> int:
    try:
        return int(tokens[-1])
    except (ValueError, IndexError):
        raise _NoEpoch from None


def _metadata_epoch(path: str | Path) -> int | None:
    from jaxnets.io import is_jaxnets_checkpoint, read_metadata

    if not is_jaxnets_checkpoint(path):
        return None
    meta = read_metadata(path)
    value = meta.get("epoch_completed")
    return int(value) if value is not None else None


def epoch_label(path: str | Path, *, tool: str = "projections", legacy: bool = False) -> str:
    """The epoch label of a snapshot path (see the module docstring). A name without an epoch
    (e.g. ``resnet20-12fca82f.th``) is labelled by its own stem (the original would crash)."""
    try:
        return _epoch_label(path, tool, legacy)
    except _NoEpoch:
        return _stem(path)


def _epoch_label(path: str | Path, tool: str, legacy: bool) -> str:
    if legacy:
        if tool == "reinit":
            text = str(path)
            root, ext = os.path.splitext(text)
            tokens = (root if ext else text).split("_")
            return "0" if "init" in tokens else str(_last_int(tokens, path) + 1)
        tokens = _stem(path).split("_")
        if "pretrained" in tokens:
            return "-1"
        return "0" if "init" in tokens else str(_last_int(tokens, path) + 1)
    tokens = _stem(path).split("_")
    if "init" in tokens:
        return "0"
    is_pretrained = "pretrained" in tokens
    if is_pretrained and (not tokens[-1].lstrip("-").isdigit() or int(tokens[-1]) == 0):
        return "-1"
    meta = _metadata_epoch(path)
    if meta is not None:
        return str(meta)
    last = _last_int(tokens, path)
    # A final weights file (.pt, or jaxnets' _final_E / _pretrained_E) already counts epochs.
    if Path(path).suffix in (".pt", ".pth") or "final" in tokens or is_pretrained:
        return str(last)
    return str(last + 1)
