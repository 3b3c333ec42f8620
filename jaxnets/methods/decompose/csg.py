"""CSG (Liang et al., ECCV 2020) class gates from ``best_save_CSG.pth`` (spec §2.2, §3.7).

The gate matrix G (classes × channels) sits in ``model_state_dict["csg"]``; the model
converter ignores it (KeyMap), so it is read here with the torch-free reader. A larger gate
means the class uses the channel, yet the published CSG indices are the *ascending* argsort
(the least-used channels, spec §6 P7): ``order="ascending"`` reproduces the published files,
``"descending"`` is the semantically right selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import CheckpointError, JaxnetsError

ORDERS = ("ascending", "descending")


def load_gates(path: str | Path) -> np.ndarray:
    """The (C, D) float32 gate matrix of a CSG checkpoint; a clear error when it has none."""
    from jaxnets.converters.torch_reader import load_torch_file

    obj = load_torch_file(path)
    candidates: list[Any] = [obj]
    if isinstance(obj, dict):
        candidates += [obj.get(k) for k in ("model_state_dict", "state_dict", "model")]
    for cand in candidates:
        if isinstance(cand, dict):
            for key in ("csg", "module.csg"):
                g = cand.get(key)
                if isinstance(g, np.ndarray):
                    if g.ndim != 2:
                        raise CheckpointError(f"{path}: the csg gate tensor has shape {g.shape}, "
                                              "expected (classes, channels)")
                    return np.asarray(g, dtype=np.float32)
    raise CheckpointError(f"{path} holds no CSG gates (no 'csg' tensor in model_state_dict); "
                          "pass the CSG checkpoint best_save_CSG.pth")


def csg_indices(gates: Any, k: int, order: str = "ascending") -> np.ndarray:
    """Per class, the ``k`` channels with the smallest (ascending) or largest gates.

    Stable sort: equal gates keep channel order (all gates of the shipped file are distinct).
    """
    if order not in ORDERS:
        raise JaxnetsError(f"--csg-order must be one of {', '.join(ORDERS)}, got {order!r}")
    g = np.asarray(gates)
    if not 1 <= k <= g.shape[1]:
        raise JaxnetsError(f"k = {k} outside 1..{g.shape[1]} (the gate matrix has {g.shape[1]} channels)")
    key = g if order == "ascending" else -g
    return np.argsort(key, axis=1, kind="stable")[:, :k].astype(np.int32)
