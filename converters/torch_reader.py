"""Read PyTorch checkpoints (zip and legacy formats) without torch, safely.

Pickles may only name the globals in ``ALLOWED_GLOBALS``; any other global raises a
``CheckpointError`` naming it, before anything runs. Tensors come back as NumPy arrays on the
CPU whatever device they were saved from.

Nothing in the file is trusted: every tensor's size, stride and offset is checked against its
storage before a view is taken (so no read ever leaves the buffer), every storage's declared
element count must match the bytes really present, and sizes are bounded
(:func:`max_tensor_bytes`) before anything is allocated. Whatever goes wrong inside the reader
surfaces as a one-line ``CheckpointError``.
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from jaxnets.errors import CheckpointError
from jaxnets.safe_pickle import RestrictedUnpickler, latin1_encode, numpy_scalar, one_line, short_repr

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# No single tensor or storage may need more bytes than this (a crafted header can claim any
# size; refusing before allocating turns a memory error or a hang into a clear message).
DEFAULT_MAX_TENSOR_BYTES = 16 * 2**30
MAX_TENSOR_BYTES_ENV = "JAXNETS_MAX_TENSOR_BYTES"

_MAX_RANK = 64  # NumPy's limit on the number of dimensions
_MAX_INDEX = 2**63 - 1  # torch sizes, strides and offsets are int64
_STORAGE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")

_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "BFloat16Storage": ml_dtypes.bfloat16,
}


def max_tensor_bytes() -> int:
    """The size limit of one tensor or storage: ``$JAXNETS_MAX_TENSOR_BYTES`` or 16 GiB."""
    text = os.environ.get(MAX_TENSOR_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_TENSOR_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise CheckpointError(f"{MAX_TENSOR_BYTES_ENV} must be a positive number of bytes, got {text!r}")
    return value


def format_bytes(n: int) -> str:
    """``17179869184`` → ``"16 GiB"`` (binary units, at most three significant digits)."""
    for unit, scale in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30),
                        ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def check_size(nbytes: int, what: str) -> None:
    """Refuse ``what`` if it would need more than :func:`max_tensor_bytes` bytes."""
    limit = max_tensor_bytes()
    if nbytes > limit:
        raise CheckpointError(f"{what} would need {format_bytes(nbytes)}, over the {format_bytes(limit)} "
                              f"limit on one tensor (set {MAX_TENSOR_BYTES_ENV} to raise it)")


def _index(value: Any, what: str) -> int:
    """A non-negative int64 taken from the pickle (bools, floats and the like are refused)."""
    if type(value) is not int:
        raise CheckpointError(f"a tensor's {what} is {short_repr(value)}, not an integer (corrupt or crafted file)")
    if value < 0:
        raise CheckpointError(f"a tensor's {what} is negative ({value}): refusing to read outside its storage")
    if value > _MAX_INDEX:
        raise CheckpointError(f"a tensor's {what} ({short_repr(value)}) does not fit in 64 bits (crafted file)")
    return value


def _index_tuple(value: Any, what: str) -> tuple[int, ...]:
    if type(value) is not tuple:
        raise CheckpointError(f"a tensor's {what} is {short_repr(value)}, not a tuple of integers")
    if len(value) > _MAX_RANK:
        raise CheckpointError(f"a tensor has {len(value)} dimensions (at most {_MAX_RANK} are supported)")
    return tuple(_index(v, what) for v in value)


class _StorageType:
    """Stands in for ``torch.FloatStorage`` etc.: only its dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> np.ndarray:
    """``torch._utils._rebuild_tensor(_v2)``: a copy of the strided view, every index checked first."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise CheckpointError(f"a tensor's storage is {short_repr(storage)}, not a storage record")
    offset = _index(offset, "storage offset")
    size = _index_tuple(size, "size")
    stride = _index_tuple(stride, "stride")
    if len(size) != len(stride):
        raise CheckpointError(f"a tensor has size {size} but stride {stride} (different lengths)")
    numel = math.prod(size)
    check_size(numel * storage.itemsize, f"a tensor of shape {size} ({storage.dtype.name})")
    if numel == 0:
        # No elements, but NumPy still refuses shapes whose other dimensions overflow: bound them too.
        check_size(math.prod(max(s, 1) for s in size) * storage.itemsize,
                   f"an empty tensor of shape {size} ({storage.dtype.name}), were its zero dimensions 1,")
        return np.zeros(size, dtype=storage.dtype)
    # The last element the view reaches; strides are non-negative, so the first is `offset`.
    extent = offset + sum((s - 1) * st for s, st in zip(size, stride, strict=True)) + 1
    if extent > storage.size:
        raise CheckpointError(
            f"a tensor of shape {size} with stride {stride} at offset {offset} reaches element "
            f"{extent - 1} of a storage of {storage.size}: refusing to read past its end (corrupt or crafted)")
    # A dimension of size 1 is never stepped along: its stride is irrelevant (and may be huge).
    byte_strides = tuple(st * storage.itemsize if s > 1 else 0 for s, st in zip(size, stride, strict=True))
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=byte_strides)
    return np.array(view, order="C")  # an own, writable copy: never a view into the file bytes


def _rebuild_parameter(data: Any, *_: Any) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise CheckpointError(f"a parameter wraps {short_repr(data)}, not a tensor")
    return data


def _numpy_dtype(name: Any, *_: Any) -> np.dtype:
    # Only plain numeric dtypes, as torch and NumPy pickle them for NumPy scalars.
    if not isinstance(name, str) or len(name) > 8:
        raise CheckpointError(f"refusing to load: numpy.dtype({short_repr(name)})")
    dtype = np.dtype(name)
    if dtype.kind not in "biufc":
        raise CheckpointError(f"refusing to load: numpy.dtype({name!r}) is not a numeric dtype")
    return dtype


def _device(*args: Any) -> str:
    return ":".join(str(a) for a in args)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "device"): _device,
    ("_codecs", "encode"): latin1_encode,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): numpy_scalar,
    ("numpy._core.multiarray", "scalar"): numpy_scalar,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _StorageRef:
    """What a persistent id names: a storage (key, dtype, element count), maybe a slice of it."""

    def __init__(self, key: str, dtype: np.dtype, numel: int, view: tuple[int, int] | None):
        self.key, self.dtype, self.numel, self.view = key, dtype, numel, view


def _parse_persistent_id(pid: Any) -> _StorageRef:
    """``("storage", storage_type, key, location, numel[, view_metadata])``, every field checked."""
    if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] not in ("storage", b"storage"):
        raise CheckpointError(f"unsupported persistent id in the pickle: {short_repr(pid)}")
    storage_type, key, _location, numel = pid[1:5]
    if not isinstance(storage_type, _StorageType):
        raise CheckpointError(f"unsupported storage type {short_repr(storage_type)}")
    if not isinstance(key, str) or not _STORAGE_KEY.fullmatch(key):
        raise CheckpointError(f"bad storage key {short_repr(key)} in the pickle")
    if type(numel) is not int or not 0 <= numel <= _MAX_INDEX:
        raise CheckpointError(f"storage {key} declares {short_repr(numel)} elements (corrupt or crafted)")
    check_size(numel * storage_type.dtype.itemsize, f"storage {key} ({numel} × {storage_type.dtype.name})")
    view = None
    if len(pid) == 6 and pid[5] is not None:  # legacy: a slice of another storage
        meta = pid[5]
        if not (isinstance(meta, tuple) and len(meta) == 3 and all(type(v) is int for v in meta[1:])):
            raise CheckpointError(f"bad storage view {short_repr(meta)} in the pickle")
        start, length = meta[1], meta[2]
        if start < 0 or length < 0 or start + length > numel:
            raise CheckpointError(f"storage view [{start}, {start}+{length}) lies outside storage {key} of "
                                  f"{numel} elements")
        view = (start, length)
    return _StorageRef(key, storage_type.dtype, numel, view)


class _RestrictedUnpickler(RestrictedUnpickler):
    allowed = ALLOWED_GLOBALS
    error = CheckpointError
    refusal_hint = "the file may be malicious or hold custom classes"

    def __init__(self, file: io.BufferedIOBase, load_storage: Any, legacy: bool = False):
        super().__init__(file, encoding="latin1")
        self._load_storage = load_storage
        self._legacy = legacy

    def find_class(self, module: str, name: str) -> Any:
        if self._legacy and (module, name) in _LEGACY_OVERRIDES:
            return _LEGACY_OVERRIDES[(module, name)]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._load_storage is None:
            raise CheckpointError("a storage reference where none may be (corrupt or crafted file)")
        return self._load_storage(_parse_persistent_id(pid))


def unsafe_member_name(name: str) -> str | None:
    """Why a zip member name is refused, or None: absolute, drive-relative, ``..`` or odd characters."""
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if "\\" in name or "\0" in name:
        return "holds a backslash or NUL"
    if ".." in name.split("/"):
        return "climbs out of the archive with '..'"
    return None


def _archive_prefix(infos: list[zipfile.ZipInfo]) -> str:
    """The ``<archive>/`` folder holding ``data.pkl``; every member must lie in it."""
    names = [info.filename for info in infos]
    for name in names:
        reason = unsafe_member_name(name)
        if reason:
            raise CheckpointError(f"zip member name {one_line(repr(name), 100)} {reason}: refusing a crafted archive")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise CheckpointError(f"the zip holds {one_line(repr(twice[0]), 100)} more than once: refusing an "
                              "ambiguous archive")
    pickles = [n for n in names if n.rsplit("/", 1)[-1] == "data.pkl"]
    if not pickles:
        raise CheckpointError("zip file without data.pkl — not a PyTorch checkpoint")
    if len(pickles) > 1:
        raise CheckpointError(f"the zip holds {len(pickles)} data.pkl records ({', '.join(pickles[:3])}): "
                              "refusing an ambiguous archive")
    prefix = pickles[0][: -len("data.pkl")]
    if prefix.count("/") != 1:
        raise CheckpointError(f"data.pkl is at {pickles[0]!r}, not directly in an archive folder")
    outside = [n for n in names if not n.startswith(prefix)]
    if outside:
        raise CheckpointError(f"the zip holds members outside its archive folder {prefix!r} "
                              f"(e.g. {one_line(repr(outside[0]), 100)}): more than one archive prefix")
    return prefix


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, expected: int | None = None) -> bytes:
    """A member's bytes, its declared size checked (against ``expected`` and the limit) first."""
    if expected is not None and info.file_size != expected:
        raise CheckpointError(f"record {info.filename} holds {info.file_size} bytes but the pickle declares "
                              f"{expected}: refusing a storage whose size does not match")
    check_size(info.file_size, f"record {info.filename}")
    return zf.read(info)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        prefix = _archive_prefix(infos)
        by_name = {info.filename: info for info in infos}
        if prefix + "byteorder" in by_name:
            byteorder = _read_member(zf, by_name[prefix + "byteorder"]).strip()
            if byteorder != b"little":
                raise CheckpointError(f"byte order {short_repr(byteorder)} is not supported (little-endian only)")
        cache: dict[str, tuple[_StorageRef, np.ndarray]] = {}

        def load_storage(ref: _StorageRef) -> np.ndarray:
            if ref.view is not None:
                raise CheckpointError("a storage view in a zip checkpoint (only legacy files have them)")
            if ref.key in cache:
                seen, array = cache[ref.key]
                if (seen.dtype, seen.numel) != (ref.dtype, ref.numel):
                    raise CheckpointError(f"storage {ref.key} is declared twice with different types or sizes")
                return array
            info = by_name.get(f"{prefix}data/{ref.key}")
            if info is None:
                raise CheckpointError(f"the record of storage {ref.key} is missing (truncated or corrupt file)")
            raw = _read_member(zf, info, expected=ref.numel * ref.dtype.itemsize)
            array = np.frombuffer(raw, dtype=ref.dtype)
            cache[ref.key] = (ref, array)
            return array

        payload = _read_member(zf, by_name[prefix + "data.pkl"])
        return _RestrictedUnpickler(io.BytesIO(payload), load_storage).load()


class _Deferred:
    """A tensor whose storage bytes come after the pickle in the legacy format."""

    def __init__(self, ref: _StorageRef, args: tuple = ()):
        self.ref, self.args = ref, args


def _legacy_rebuild(storage: Any, *args: Any) -> Any:
    if isinstance(storage, _Deferred):
        return _Deferred(storage.ref, args)
    return _rebuild_tensor(storage, *args)


# The legacy format stores tensor bytes after the pickle, so tensors are rebuilt lazily there.
_LEGACY_OVERRIDES = {
    ("torch._utils", "_rebuild_tensor"): _legacy_rebuild,
    ("torch._utils", "_rebuild_tensor_v2"): _legacy_rebuild,
}


def _load_legacy(path: Path) -> Any:
    data = path.read_bytes()
    f = io.BytesIO(data)

    def plain_load() -> Any:
        return _RestrictedUnpickler(f, None).load()

    if plain_load() != LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (bad magic number)")
    if plain_load() != LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy protocol version")
    plain_load()  # sys_info
    declared: dict[str, _StorageRef] = {}

    def defer_storage(ref: _StorageRef) -> _Deferred:
        seen = declared.setdefault(ref.key, ref)
        if (seen.dtype, seen.numel) != (ref.dtype, ref.numel):
            raise CheckpointError(f"storage {ref.key} is declared twice with different types or sizes")
        return _Deferred(ref)

    obj = _RestrictedUnpickler(f, defer_storage, legacy=True).load()
    keys = plain_load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("the list of storage keys is not a list of names (corrupt file)")
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in declared:
            raise CheckpointError(f"storage {short_repr(key)} has a record but no tensor declares it")
        if key in storages:
            raise CheckpointError(f"storage {key} has two records: refusing an ambiguous file")
        ref = declared[key]
        header = f.read(8)
        if len(header) < 8:
            raise CheckpointError("file ends inside the tensor data (truncated)")
        (numel,) = struct.unpack("<q", header)
        if numel != ref.numel:
            raise CheckpointError(f"storage {key} holds {numel} elements but the pickle declares {ref.numel}: "
                                  "refusing a storage whose size does not match")
        nbytes = numel * ref.dtype.itemsize
        if nbytes > len(data) - f.tell():
            raise CheckpointError("file ends inside the tensor data (truncated)")
        storages[key] = np.frombuffer(f.read(nbytes), dtype=ref.dtype)
    return _resolve(obj, storages)


def _resolve(obj: Any, storages: dict[str, np.ndarray]) -> Any:
    if isinstance(obj, _Deferred):
        if obj.ref.key not in storages:
            raise CheckpointError("a tensor's storage is missing from the checkpoint (truncated)")
        storage = storages[obj.ref.key]
        if obj.ref.view is not None:
            start, length = obj.ref.view
            storage = storage[start:start + length]
        return _rebuild_tensor(storage, *obj.args)
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v, storages)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(v, storages) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, storages) for v in obj)
    return obj


def load_torch_file(path: str | Path) -> Any:
    """The unpickled object of a ``torch.save`` file, tensors as NumPy arrays."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError("the file is empty (0 bytes): not a checkpoint")
        if zipfile.is_zipfile(path):
            return _load_zip(path)
        with path.open("rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip whose end (central directory) is missing
                raise CheckpointError("the zip checkpoint is truncated or corrupt (no central directory)")
        return _load_legacy(path)
    except CheckpointError as exc:
        raise CheckpointError(one_line(f"{path}: {exc}")) from None
    except MemoryError:
        raise CheckpointError(f"{path}: ran out of memory while reading the checkpoint (each tensor is limited "
                              f"to {format_bytes(max_tensor_bytes())}; set {MAX_TENSOR_BYTES_ENV} lower to "
                              "refuse such files early)") from None
    except RecursionError:
        raise CheckpointError(f"{path}: the pickle nests too deeply (corrupt or crafted file)") from None
    except Exception as exc:  # a crafted file can raise anything inside pickle, zipfile or NumPy
        raise CheckpointError(one_line(
            f"{path}: cannot read checkpoint ({type(exc).__name__}: {exc}); the file is truncated, damaged "
            "or not a PyTorch checkpoint")) from None


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
