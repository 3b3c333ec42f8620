"""Craft PyTorch checkpoints byte by byte, valid or hostile, without torch.

The pickle is emitted opcode by opcode (protocol 2, as ``torch.save`` writes it), so any value
can go where torch would put a size, a stride, an offset or a storage's element count: negative,
huge, a float, a bool. ``write_zip`` and ``write_legacy`` wrap it in the two container formats.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from jaxnets.converters.torch_reader import LEGACY_MAGIC, LEGACY_PROTOCOL

STORAGE_TYPES = {
    "float64": "DoubleStorage", "float32": "FloatStorage", "float16": "HalfStorage",
    "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage",
    "uint8": "ByteStorage", "bool": "BoolStorage", "bfloat16": "BFloat16Storage",
}


@dataclass(frozen=True)
class Global:
    """A global named in the pickle (``GLOBAL module name``); nothing is imported to write it."""

    module: str
    name: str


@dataclass(frozen=True)
class Call:
    """``func(*args)`` in the pickle (``REDUCE``)."""

    func: Any
    args: tuple = ()


@dataclass(frozen=True)
class Persistent:
    """A persistent id exactly as given (``BINPERSID``)."""

    pid: Any


@dataclass
class Storage:
    """One storage record. ``numel`` is what the pickle declares (default: the real count);
    ``record_numel`` what a legacy record header says (default: the same as ``numel``)."""

    key: str
    data: np.ndarray
    numel: Any = None
    record_numel: int | None = None
    storage_type: str | None = None

    def declared(self) -> Any:
        return self.data.size if self.numel is None else self.numel

    def type_name(self) -> str:
        return self.storage_type or STORAGE_TYPES[self.data.dtype.name]


@dataclass
class Tensor:
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``, any values allowed."""

    storage: Storage
    offset: Any
    size: Any
    stride: Any


def contiguous(array: np.ndarray, key: str) -> Tensor:
    """A tensor over its own storage, C-contiguous, like ``torch.save`` writes one."""
    array = np.array(array, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    stride = tuple(int(np.prod(array.shape[i + 1:], dtype=np.int64)) for i in range(array.ndim))
    return Tensor(Storage(key, array.reshape(-1)), 0, tuple(array.shape), stride)


def state(arrays: dict[str, np.ndarray]) -> OrderedDict:
    """A state_dict of contiguous tensors, one storage each (keys "0", "1", …)."""
    return OrderedDict((k, contiguous(v, str(i))) for i, (k, v) in enumerate(arrays.items()))


@dataclass
class _Emitter:
    legacy: bool
    out: io.BytesIO = field(default_factory=io.BytesIO)
    storages: dict[str, Storage] = field(default_factory=dict)

    def emit(self, obj: Any) -> None:
        w = self.out.write
        if obj is None:
            w(pickle.NONE)
        elif obj is True or obj is False:
            w(pickle.NEWTRUE if obj else pickle.NEWFALSE)
        elif isinstance(obj, int):
            raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True) if obj else b""
            w(pickle.LONG1 + bytes([len(raw)]) + raw)
        elif isinstance(obj, float):
            w(pickle.BINFLOAT + struct.pack(">d", obj))
        elif isinstance(obj, str):
            raw = obj.encode("utf-8")
            w(pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw)
        elif isinstance(obj, tuple):
            w(pickle.MARK)
            for item in obj:
                self.emit(item)
            w(pickle.TUPLE)
        elif isinstance(obj, list):
            w(pickle.EMPTY_LIST + pickle.MARK)
            for item in obj:
                self.emit(item)
            w(pickle.APPENDS)
        elif isinstance(obj, dict):
            if isinstance(obj, OrderedDict):
                self.emit(Call(Global("collections", "OrderedDict")))
            else:
                w(pickle.EMPTY_DICT)
            w(pickle.MARK)
            for key, value in obj.items():
                self.emit(key)
                self.emit(value)
            w(pickle.SETITEMS)
        elif isinstance(obj, Global):
            w(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        elif isinstance(obj, Call):
            self.emit(obj.func)
            self.emit(tuple(obj.args))
            w(pickle.REDUCE)
        elif isinstance(obj, Persistent):
            self.emit(obj.pid)
            w(pickle.BINPERSID)
        elif isinstance(obj, Storage):
            self.storages.setdefault(obj.key, obj)
            pid = ("storage", Global("torch", obj.type_name()), obj.key, "cpu", obj.declared())
            self.emit(Persistent(pid + (None,) if self.legacy else pid))
        elif isinstance(obj, Tensor):
            self.emit(Call(Global("torch._utils", "_rebuild_tensor_v2"),
                           (obj.storage, obj.offset, obj.size, obj.stride, False, OrderedDict())))
        else:
            raise TypeError(f"cannot craft {type(obj).__name__}")

    def pickle(self, obj: Any) -> bytes:
        self.out = io.BytesIO()
        self.out.write(pickle.PROTO + bytes([2]))
        self.emit(obj)
        self.out.write(pickle.STOP)
        return self.out.getvalue()


def pickle_bytes(obj: Any, legacy: bool = False) -> bytes:
    """The protocol-2 pickle of ``obj`` (crafted values, tensors as torch writes them)."""
    return _Emitter(legacy).pickle(obj)


def write_zip(path: Path, obj: Any, *, prefix: str = "archive", payload: bytes | None = None,
              extra: tuple[tuple[str, bytes], ...] = (), compress: bool = False) -> Path:
    """A zip checkpoint: ``<prefix>/data.pkl`` (``payload`` if given), one record per storage."""
    emitter = _Emitter(legacy=False)
    data_pkl = emitter.pickle(obj) if payload is None else payload
    records = [(f"{prefix}/data.pkl", data_pkl), (f"{prefix}/byteorder", b"little")]
    records += [(f"{prefix}/data/{s.key}", s.data.tobytes()) for s in emitter.storages.values()]
    records += [(f"{prefix}/version", b"3\n"), *extra]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, data in records:
            zf.writestr(name, data)
    return path


def write_legacy(path: Path, obj: Any, *, payload: bytes | None = None) -> Path:
    """A legacy (pre-1.6) checkpoint: magic, protocol, sys_info, the pickle, keys, then records."""
    emitter = _Emitter(legacy=True)
    main = emitter.pickle(obj) if payload is None else payload
    sys_info = {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [pickle_bytes(LEGACY_MAGIC), pickle_bytes(LEGACY_PROTOCOL), pickle_bytes(sys_info), main,
             pickle_bytes(list(emitter.storages))]
    for s in emitter.storages.values():
        numel = s.data.size if s.record_numel is None else s.record_numel
        parts.append(struct.pack("<q", numel) + s.data.tobytes())
    path.write_bytes(b"".join(parts))
    return path
