"""Write PyTorch checkpoints (the zip format of ``torch.save``) without importing torch.

The file holds ``archive/data.pkl`` (a protocol-2 pickle of the state_dict), one
``archive/data/<key>`` record of raw little-endian bytes per tensor, ``archive/byteorder`` and
``archive/version``, like ``torch.save`` writes them. The pickle names only globals that
``torch.load(..., weights_only=True)`` accepts: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and the typed storages (``torch.FloatStorage`` …).
Tensors are written contiguous; the same array object appearing twice is one tensor.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import CheckpointError

ARCHIVE = "archive"
_ALIGN = 64  # torch aligns record data to 64 bytes (lets torch.load(mmap=True) map storages)
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: identical inputs give identical files


def _storage_name(dtype: np.dtype) -> str:
    if dtype.name == "bfloat16":
        return "BFloat16Storage"
    names = {
        "float64": "DoubleStorage", "float32": "FloatStorage", "float16": "HalfStorage",
        "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage",
        "int8": "CharStorage", "uint8": "ByteStorage", "bool": "BoolStorage",
    }
    if dtype.name not in names:
        raise CheckpointError(f"cannot write a tensor of dtype {dtype.name} to a PyTorch file")
    return names[dtype.name]


class _Global:
    """A global written by name (``GLOBAL module\\nname``); never imported while pickling."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle's save_reduce insists on a callable
        raise TypeError(f"{self.module}.{self.name} is only a name to pickle")


_REBUILD_TENSOR_V2 = _Global("torch._utils", "_rebuild_tensor_v2")


class _Storage:
    """One ``archive/data/<key>`` record; pickled as a persistent id, as torch does."""

    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array


class _TorchPickler(pickle._Pickler):  # the pure-Python pickler lets us add a dispatch entry
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file: io.BytesIO):
        super().__init__(file, protocol=2)
        self.storages: list[_Storage] = []
        self._storage_types: dict[str, _Global] = {}

    def _save_global_by_name(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[_Global] = _save_global_by_name

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _Storage):
            name = _storage_name(obj.array.dtype)
            storage_type = self._storage_types.setdefault(name, _Global("torch", name))
            return ("storage", storage_type, obj.key, "cpu", int(obj.array.size))
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.generic):
            obj = np.asarray(obj)
        if not isinstance(obj, np.ndarray):
            return NotImplemented
        # A tensor = _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks).
        # The pickler's memo already maps a repeated array object onto one tensor.
        _storage_name(obj.dtype)  # fail early on an unsupported dtype
        data = np.ascontiguousarray(obj)
        data = data.astype(data.dtype.newbyteorder("<"), copy=False)  # torch files are little-endian
        storage = _Storage(str(len(self.storages)), data)
        self.storages.append(storage)
        shape = tuple(int(s) for s in obj.shape)
        stride = tuple(int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape)))
        return _REBUILD_TENSOR_V2, (storage, 0, shape, stride, False, OrderedDict())


def _aligned_info(zf: zipfile.ZipFile, name: str) -> zipfile.ZipInfo:
    """A ZipInfo whose local-header extra field pads the data start to a 64-byte boundary."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    start = zf.fp.tell() + 30 + len(name.encode("utf-8"))  # 30 = fixed local header size
    pad = -start % _ALIGN
    if pad:
        pad = pad if pad >= 4 else pad + _ALIGN  # an extra field needs a 4-byte header
        info.extra = b"FB" + struct.pack("<H", pad - 4) + b"Z" * (pad - 4)
    return info


def _pickle_state(obj: Any) -> tuple[bytes, list[_Storage]]:
    buf = io.BytesIO()
    pickler = _TorchPickler(buf)
    pickler.dump(obj)
    return buf.getvalue(), pickler.storages


def save_torch_state_dict(
    path: str | Path, state: Mapping[str, np.ndarray], wrap: str | None = None
) -> Path:
    """Write ``state`` as ``torch.save(OrderedDict(state))`` would (``{wrap: …}`` if given).

    The result loads with ``torch.load(path, weights_only=True)`` and with
    :func:`jaxnets.converters.torch_reader.load_torch_file`.
    """
    path = Path(path)
    ordered = OrderedDict((str(k), np.asarray(v)) for k, v in state.items())
    payload, storages = _pickle_state({wrap: ordered} if wrap else ordered)
    records: list[tuple[str, bytes]] = [
        ("data.pkl", payload),
        ("byteorder", b"little"),
        *((f"data/{s.key}", s.array.tobytes()) for s in storages),
        ("version", b"3\n"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")  # never leave a half-written checkpoint
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in records:
                zf.writestr(_aligned_info(zf, f"{ARCHIVE}/{name}"), data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def export_variables(
    path: str | Path, variables: Mapping, keymap: Any, wrap: str | None = None
) -> Path:
    """Flax ``variables`` → a PyTorch state_dict file (modern key names, PyTorch layouts)."""
    from jaxnets.converters.convert import variables_to_state_dict

    return save_torch_state_dict(path, variables_to_state_dict(variables, keymap), wrap)
