"""Read PyTorch checkpoints (zip and legacy formats) without torch, safely.

Pickles may only name the globals in ``ALLOWED_GLOBALS``; any other global raises a
``CheckpointError`` naming it, before anything runs. Tensors come back as NumPy arrays on the
CPU whatever device they were saved from.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import CheckpointError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}


class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        dt = _STORAGE_DTYPES[name]
        if dt == "bfloat16":
            import ml_dtypes

            dt = ml_dtypes.bfloat16
        self.dtype = np.dtype(dt)


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> np.ndarray:
    if len(size) == 0:
        return np.array(storage[offset])  # a 0-d array (not a NumPy scalar): a tensor like any other
    item = storage.itemsize
    needed = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1
    if any(s == 0 for s in size):
        return np.zeros(size, dtype=storage.dtype)
    if needed > storage.size:
        raise CheckpointError("tensor extends past its storage: the checkpoint is corrupt")
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride)
    )
    return np.array(view, order="C")  # an own, writable copy: never a view into the file bytes


def _rebuild_parameter(data: np.ndarray, *_: Any) -> np.ndarray:
    return data


def _numpy_scalar(dtype: np.dtype, data: bytes | None = None) -> Any:
    return np.frombuffer(data or b"", dtype=dtype)[0] if data else dtype.type()


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); nothing else is allowed.
    if encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"refusing to load: _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "device"): _device,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, load_storage: Any, legacy: bool = False):
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage
        self._legacy = legacy

    def find_class(self, module: str, name: str) -> Any:
        if self._legacy and (module, name) in _LEGACY_OVERRIDES:
            return _LEGACY_OVERRIDES[(module, name)]
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(
                f"refusing to load: the pickle names the global '{module}.{name}', which is not "
                "on jaxnets' allow-list (the file may be malicious or hold custom classes)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"unsupported persistent id in checkpoint: {pid[:1]!r}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unsupported storage type {storage_type!r}")
        return self._load_storage(str(key), storage_type.dtype, int(numel))


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("data.pkl")), None)
        if pkl is None:
            raise CheckpointError(f"{path}: zip file without data.pkl — not a PyTorch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        byteorder = zf.read(prefix + "byteorder").decode() if prefix + "byteorder" in names else "little"
        if byteorder != "little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        cache: dict[str, np.ndarray] = {}

        def load_storage(key: str, dtype: np.dtype, numel: int) -> np.ndarray:
            if key not in cache:
                raw = zf.read(f"{prefix}data/{key}")
                cache[key] = np.frombuffer(raw, dtype=dtype)
            return cache[key]

        with zf.open(pkl) as f:
            return _RestrictedUnpickler(io.BytesIO(f.read()), load_storage).load()


def _load_legacy(path: Path) -> Any:
    data = path.read_bytes()
    f = io.BytesIO(data)

    def plain_load() -> Any:
        return _RestrictedUnpickler(f, lambda *a: None).load()

    if plain_load() != LEGACY_MAGIC:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
    if plain_load() != 1001:
        raise CheckpointError(f"{path}: unsupported legacy protocol version")
    plain_load()  # sys_info
    storages: dict[str, tuple[np.dtype, int, list]] = {}

    def defer_storage(key: str, dtype: np.dtype, numel: int) -> Any:
        holder = storages.setdefault(key, (dtype, numel, []))
        return _Deferred(holder[2])

    obj = _RestrictedUnpickler(f, defer_storage, legacy=True).load()
    keys = _RestrictedUnpickler(f, lambda *a: None).load()
    for key in keys:
        header = f.read(8)
        if len(header) < 8:
            raise CheckpointError(f"{path}: file ends inside the tensor data (truncated)")
        (numel,) = struct.unpack("<q", header)
        dtype = storages[key][0]
        raw = f.read(numel * dtype.itemsize)
        if len(raw) < numel * dtype.itemsize:
            raise CheckpointError(f"{path}: file ends inside the tensor data (truncated)")
        storages[key][2].append(np.frombuffer(raw, dtype=dtype))
    return _resolve(obj)


class _Deferred:
    """A tensor whose storage bytes come after the pickle in the legacy format."""

    def __init__(self, cell: list):
        self.cell = cell
        self.args: tuple = ()


def _legacy_rebuild(storage: Any, *args: Any) -> Any:
    if isinstance(storage, _Deferred):
        d = _Deferred(storage.cell)
        d.args = args
        return d
    return _rebuild_tensor(storage, *args)


# The legacy format stores tensor bytes after the pickle, so tensors are rebuilt lazily there.
_LEGACY_OVERRIDES = {
    ("torch._utils", "_rebuild_tensor"): _legacy_rebuild,
    ("torch._utils", "_rebuild_tensor_v2"): _legacy_rebuild,
}


def _resolve(obj: Any) -> Any:
    if isinstance(obj, _Deferred):
        if not obj.cell:
            raise CheckpointError("a tensor's storage is missing from the checkpoint (truncated)")
        return _rebuild_tensor(obj.cell[0], *obj.args)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def load_torch_file(path: str | Path) -> Any:
    """The unpickled object of a ``torch.save`` file, tensors as NumPy arrays."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with path.open("rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip whose end (central directory) is missing
                raise CheckpointError(f"{path}: the zip checkpoint is truncated or corrupt "
                                      "(no central directory)")
        return _load_legacy(path)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, KeyError, ValueError,
            struct.error, IndexError, TypeError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); "
                              "the file is truncated or not a PyTorch checkpoint") from None


_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "params")
_MODULE_SEGMENT = re.compile(r"(^|\.)module\.")


def extract_state_dict(obj: Any) -> dict[str, np.ndarray]:
    """Unwrap a checkpoint dict down to its flat ``{key: array}`` state_dict.

    Accepts a bare state_dict or one wrapped under ``state_dict``/``model_state_dict``/``model``;
    strips DataParallel ``module.`` segments (anywhere in the key) and keeps array leaves only.
    """
    for _ in range(3):
        if isinstance(obj, dict) and not _looks_like_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPERS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not _looks_like_state_dict(obj):
        raise CheckpointError("no state_dict found in the checkpoint (looked for a dict of tensors "
                              f"at the top level and under {', '.join(_WRAPPERS)})")
    out: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if isinstance(value, np.ndarray):
            out[_MODULE_SEGMENT.sub(r"\1", str(key))] = value
    return out


def _looks_like_state_dict(d: dict) -> bool:
    return bool(d) and sum(isinstance(v, np.ndarray) for v in d.values()) >= max(1, len(d) // 2)
