"""``.npz`` checkpoints whose keys are slash-joined Flax paths (e.g. the MLP-Mixer release).

Read without pickles: every member must be a plain ``.npy`` array of a numeric (or bool) dtype,
its header is checked (dtype, shape, size limit, bytes present) before any data is read, and
member names may not be absolute or climb out with ``..``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO

import numpy as np
from jaxnets.converters.torch_reader import check_size, one_line, unsafe_member_name

from jaxnets.errors import CheckpointError

_NPY_SUFFIX = ".npy"


def _read_array(member: IO[bytes], name: str, file_size: int) -> np.ndarray:
    """One ``.npy`` member: header validated, then exactly its bytes read, then copied."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    elif version in ((2, 0), (3, 0)):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise CheckpointError(f"{name}: unsupported .npy format version {version}")
    if dtype.hasobject or dtype.kind not in "biufc":
        raise CheckpointError(f"{name} holds an array of dtype {dtype} (object or structured arrays need "
                              "pickles, which jaxnets never loads)")
    if not all(type(s) is int and s >= 0 for s in shape):
        raise CheckpointError(f"{name}: bad shape {shape} in the .npy header")
    nbytes = math.prod(shape) * dtype.itemsize
    check_size(nbytes, f"{name} (shape {tuple(shape)}, {dtype.name})")
    header_size = member.tell()
    if file_size != header_size + nbytes:
        raise CheckpointError(f"{name} holds {file_size - header_size} data bytes but its header declares "
                              f"{nbytes} (truncated or crafted)")
    raw = member.read(nbytes)
    if len(raw) != nbytes:
        raise CheckpointError(f"{name} ends early (truncated)")
    order = "F" if fortran_order else "C"
    return np.array(np.frombuffer(raw, dtype=dtype).reshape(shape, order=order), order="C")


def load_npz_state(path: str | Path) -> dict[str, np.ndarray]:
    """``{key: array}`` of an ``.npz`` archive, refusing pickles and anything malformed."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not an .npz file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not an .npz (zip) archive; a pickled or truncated file is refused")
    try:
        state: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                reason = unsafe_member_name(name)
                if reason:
                    raise CheckpointError(f"member name {one_line(repr(name), 100)} {reason}")
                if not name.endswith(_NPY_SUFFIX):
                    raise CheckpointError(f"member {one_line(repr(name), 100)} is not a .npy array")
                key = name[: -len(_NPY_SUFFIX)]
                if key in state:
                    raise CheckpointError(f"member {name!r} appears more than once")
                check_size(info.file_size, f"member {name}")
                with zf.open(info) as member:
                    state[key] = _read_array(member, name, info.file_size)
        return state
    except CheckpointError as exc:
        raise CheckpointError(one_line(f"{path}: {exc}")) from None
    except MemoryError:
        raise CheckpointError(f"{path}: ran out of memory while reading the .npz") from None
    except Exception as exc:  # a crafted archive can raise anything inside zipfile or NumPy
        raise CheckpointError(one_line(f"{path}: cannot read .npz ({type(exc).__name__}: {exc})")) from None


def save_npz_state(path: str | Path, state: dict[str, np.ndarray]) -> None:
    np.savez(path, **state)
