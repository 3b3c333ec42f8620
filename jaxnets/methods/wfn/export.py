"""Export a fixed model: a PyTorch state_dict, and a compact codebook + indices file.

The compact file is an uncompressed ``.npz``: ``codebook`` (float32, K values), one index
array per quantised tensor (``idx/<torch name>``, uint8 when K ≤ 256, else uint16, PyTorch
shape) and every other tensor as is (``raw/<torch name>``: BN statistics, unquantised leaves).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError

COMPACT_SCHEMA = "jaxnets.wfn.compact/1"


def export_torch(path: str | Path, variables: Mapping, keymap: Any) -> Path:
    """The fixed model as a PyTorch state_dict file (modern key names, PyTorch layouts)."""
    from jaxnets.converters.torch_writer import export_variables

    return export_variables(path, variables, keymap)


def export_compact(path: str | Path, variables: Mapping, keymap: Any, layout: Any,
                   codebook_values: np.ndarray) -> dict[str, Any]:
    """Write the compact file; returns its byte size and the float32 size it replaces."""
    from jaxnets.converters.convert import variables_to_state_dict

    path = Path(path)
    sd = variables_to_state_dict(variables, keymap)
    values = np.unique(np.asarray(codebook_values, np.float32) + np.float32(0.0))
    if values.size > 65536:
        raise JaxnetsError(f"codebook of {values.size} values does not fit 16-bit indices")
    idx_dtype = np.uint8 if values.size <= 256 else np.uint16
    arrays: dict[str, np.ndarray] = {"codebook": values}
    quantised = {e.torch_name for e in layout.entries}
    n_quant, idx_bytes = 0, 0
    for name, x in sd.items():
        x = np.asarray(x)
        if name in quantised:
            flat = x.astype(np.float32).reshape(-1) + np.float32(0.0)
            pos = np.searchsorted(values, flat)
            pos = np.minimum(pos, values.size - 1)
            if not np.array_equal(values[pos], flat):
                raise JaxnetsError(f"{name} holds values outside the codebook: is the model "
                                   "fully fixed (last percentage 1.0)?")
            arrays[f"idx/{name}"] = pos.astype(idx_dtype).reshape(x.shape)
            n_quant += flat.size
            idx_bytes += flat.size * np.dtype(idx_dtype).itemsize
        else:
            arrays[f"raw/{name}"] = x
    meta = {"schema": COMPACT_SCHEMA, "keys": list(sd), "index_dtype": np.dtype(idx_dtype).name}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    size = path.stat().st_size
    raw_bytes = sum(int(np.asarray(v).nbytes) for k, v in arrays.items() if k.startswith("raw/"))
    return {"path": str(path), "bytes": int(size), "codebook_size": int(values.size),
            "index_dtype": meta["index_dtype"], "quantised_values": int(n_quant),
            "quantised_bytes": int(idx_bytes + values.nbytes),
            "quantised_float32_bytes": int(4 * n_quant),
            "float32_bytes": int(4 * n_quant + raw_bytes),
            "ratio_vs_float32": float((4 * n_quant + raw_bytes) / max(size, 1))}


def load_compact(path: str | Path) -> dict[str, np.ndarray]:
    """The state dict stored in a compact file (codebook values looked up)."""
    with np.load(path) as z:
        meta = json.loads(bytes(z["meta"]).decode())
        if meta.get("schema") != COMPACT_SCHEMA:
            raise JaxnetsError(f"{path} is not a jaxnets WFN compact file")
        values = z["codebook"]
        out = {}
        for key in meta["keys"]:
            if f"idx/{key}" in z:
                out[key] = values[z[f"idx/{key}"].astype(np.int64)]
            else:
                out[key] = z[f"raw/{key}"]
    return out


def is_compact(path: str | Path) -> bool:
    path = Path(path)
    if not (path.is_file() and path.suffix == ".npz"):
        return False
    try:
        with np.load(path) as z:
            return "codebook" in z and "meta" in z
    except (OSError, ValueError):
        return False
