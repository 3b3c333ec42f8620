"""``.safetensors`` checkpoints — one file, or shards named by a ``*.safetensors.index.json`` — read
and written with the ``safetensors`` package's NumPy API (no torch).

Nothing in the file is trusted: the 8-byte header length, the JSON header, every dtype, shape and
byte range are checked here before the package maps a byte (header within the file and under
:data:`MAX_HEADER_BYTES`, known dtypes only, each tensor's byte range inside the data section and
exactly as long as its shape needs, no two tensors overlapping, sizes under the reader's
per-tensor limit). Whatever goes wrong surfaces as a one-line ``CheckpointError``.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from jaxnets.converters.torch_reader import check_size, format_bytes, unsafe_member_name

from jaxnets.errors import CheckpointError
from jaxnets.safe_pickle import one_line

SUFFIX = ".safetensors"
INDEX_SUFFIX = ".safetensors.index.json"

# Real headers are ~100 bytes per tensor (a 200k-tensor model stays under 20 MB); the format's own
# reader stops at 100 MB. Refusing earlier keeps a crafted length from costing a big read.
MAX_HEADER_BYTES = 32 * 2**20
MAX_INDEX_BYTES = 32 * 2**20
_MAX_RANK = 64

DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "U16": np.dtype(np.uint16), "I16": np.dtype(np.int16), "U32": np.dtype(np.uint32),
    "I32": np.dtype(np.int32), "U64": np.dtype(np.uint64), "I64": np.dtype(np.int64),
    "F16": np.dtype(np.float16), "BF16": np.dtype(ml_dtypes.bfloat16), "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
}


def is_safetensors_path(path: str | Path) -> bool:
    name = Path(path).name
    return name.endswith(SUFFIX) or name.endswith(INDEX_SUFFIX)


def _header(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """``({key: {"dtype", "shape", "data_offsets"}}, metadata)`` of one file, every field checked."""
    size = path.stat().st_size
    if size < 8:
        raise CheckpointError(f"the file has {size} bytes: too short for a safetensors header")
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > size - 8:
            raise CheckpointError(f"the header claims {format_bytes(length)} but the file has only "
                                  f"{format_bytes(size - 8)} after its length field (truncated or not safetensors)")
        if length > MAX_HEADER_BYTES:
            raise CheckpointError(f"the header is {format_bytes(length)}, over the {format_bytes(MAX_HEADER_BYTES)} "
                                  "limit (crafted file?)")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"the header is not valid JSON ({type(exc).__name__}): not a safetensors file") from None
    if not isinstance(header, dict):
        raise CheckpointError("the header is not a JSON object: not a safetensors file")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError("__metadata__ must map names to strings")
    data_size = size - 8 - length
    spans: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        spans.append(_check_entry(key, entry, data_size))
    spans.sort()
    for (_, end, first), (begin, _, second) in zip(spans, spans[1:], strict=False):
        if begin < end:
            raise CheckpointError(f"tensors {first!r} and {second!r} overlap in the file (crafted file?)")
    return header, metadata


def _check_entry(key: str, entry: Any, data_size: int) -> tuple[int, int, str]:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise CheckpointError(f"tensor {key!r}: the header entry needs dtype, shape and data_offsets")
    dtype = DTYPES.get(entry["dtype"]) if isinstance(entry["dtype"], str) else None
    if dtype is None:
        raise CheckpointError(f"tensor {key!r} has dtype {str(entry['dtype'])[:40]!r}; jaxnets reads "
                              f"{', '.join(DTYPES)}")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if (not isinstance(shape, list) or len(shape) > _MAX_RANK
            or not all(type(s) is int and s >= 0 for s in shape)):
        raise CheckpointError(f"tensor {key!r}: bad shape {str(shape)[:80]}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int for o in offsets) or not 0 <= offsets[0] <= offsets[1]):
        raise CheckpointError(f"tensor {key!r}: bad data_offsets {str(offsets)[:80]}")
    begin, end = offsets
    nbytes = math.prod(shape) * dtype.itemsize
    check_size(nbytes, f"tensor {key!r} (shape {tuple(shape)}, {entry['dtype']})")
    if end > data_size:
        raise CheckpointError(f"tensor {key!r} ends at byte {end} of a {data_size}-byte data section "
                              "(truncated or crafted file)")
    if end - begin != nbytes:
        raise CheckpointError(f"tensor {key!r}: shape {tuple(shape)} of {entry['dtype']} needs {nbytes} bytes, "
                              f"its data_offsets give {end - begin}")
    return begin, end, key


def _read_file(path: Path, keys: set[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import safe_open

    header, metadata = _header(path)
    wanted = header.keys() if keys is None else keys
    missing = sorted(set(wanted) - header.keys())
    if missing:
        raise CheckpointError(f"the index names {len(missing)} tensor(s) this shard lacks: {', '.join(missing[:5])}")
    with safe_open(str(path), framework="numpy") as f:
        state = {key: np.array(f.get_tensor(key)) for key in header if key in wanted}
    return state, metadata


def _is_plain_file_name(name: object) -> bool:
    """A shard named by an index must be a file beside it: no folders, no climbing out."""
    return isinstance(name, str) and "/" not in name and "\\" not in name and not unsafe_member_name(name)


def _read_index(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if path.stat().st_size > MAX_INDEX_BYTES:
        raise CheckpointError(f"the index is over {format_bytes(MAX_INDEX_BYTES)} (crafted file?)")
    try:
        index = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"the index is not valid JSON ({type(exc).__name__})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError("the index has no weight_map (expected {\"weight_map\": {tensor: shard file}})")
    shards: dict[str, set[str]] = {}
    for key, shard in weight_map.items():
        if not _is_plain_file_name(shard):
            raise CheckpointError(f"tensor {key!r}: shard {str(shard)[:80]!r} must be a file name beside the index")
        shards.setdefault(shard, set()).add(key)
    state: dict[str, np.ndarray] = {}
    metadata: dict[str, str] = {}
    for shard, keys in shards.items():
        file = path.parent / shard
        if not file.is_file():
            raise CheckpointError(f"shard {shard} named by the index is missing")
        try:
            part, meta = _read_file(file, keys)
        except CheckpointError as exc:
            raise CheckpointError(f"{shard}: {exc}") from None
        state.update(part)
        metadata.update(meta)
    return state, metadata


def load_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(state_dict, metadata)`` of a ``.safetensors`` file or a sharded ``.safetensors.index.json``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.name.endswith(INDEX_SUFFIX):
            return _read_index(path)
        return _read_file(path)
    except CheckpointError as exc:
        raise CheckpointError(one_line(f"{path}: {exc}")) from None
    except MemoryError:
        raise CheckpointError(f"{path}: ran out of memory while reading the checkpoint") from None
    except Exception as exc:  # the package's own SafetensorError, OSError, …
        raise CheckpointError(one_line(f"{path}: cannot read safetensors ({type(exc).__name__}: {exc})")) from None


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` strings of a file (of every shard, for an index), headers only."""
    path = Path(path)
    try:
        if not path.name.endswith(INDEX_SUFFIX):
            return _header(path)[1]
        index = json.loads(path.read_text("utf-8")) if path.stat().st_size <= MAX_INDEX_BYTES else {}
        shards = set(index.get("weight_map", {}).values()) if isinstance(index, dict) else set()
        metadata: dict[str, str] = {}
        for shard in sorted(s for s in shards if _is_plain_file_name(s) and (path.parent / s).is_file()):
            metadata.update(_header(path.parent / shard)[1])
        return metadata
    except (CheckpointError, OSError, ValueError, AttributeError):
        return {}  # unreadable metadata is reported when the tensors are read


def load_safetensors_state(path: str | Path) -> dict[str, np.ndarray]:
    return load_safetensors(path)[0]


def save_safetensors_state(path: str | Path, state: Mapping[str, np.ndarray],
                           metadata: Mapping[str, str] | None = None) -> None:
    """Write ``state`` as one ``.safetensors`` file (atomically: a reader never sees half a file)."""
    from safetensors.numpy import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    arrays = {key: np.ascontiguousarray(value) if np.ndim(value) else np.asarray(value)  # keep 0-d arrays 0-d
              for key, value in state.items()}
    try:
        save_file(arrays, str(tmp), metadata=dict(metadata) if metadata else None)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
