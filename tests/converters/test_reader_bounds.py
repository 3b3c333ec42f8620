"""The torch-free reader never reads outside a buffer: every refusal, and a property test.

Files are crafted byte by byte (tests/converters/craft.py), so sizes, strides, offsets and
element counts can be anything a hostile file could hold.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path

import jaxnets.converters.torch_reader as reader
import ml_dtypes
import numpy as np
import pytest
from craft import (
    Call,
    Global,
    Persistent,
    Storage,
    Tensor,
    contiguous,
    pickle_bytes,
    state,
    write_legacy,
    write_zip,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from jaxnets.converters.npz import load_npz_state, save_npz_state
from jaxnets.converters.torch_reader import (
    DEFAULT_MAX_TENSOR_BYTES,
    MAX_TENSOR_BYTES_ENV,
    format_bytes,
    load_torch_file,
    max_tensor_bytes,
)

from jaxnets.errors import CheckpointError

WRITERS = {"zip": write_zip, "legacy": write_legacy}
FORMATS = list(WRITERS)
TiB = 2**40


def _storage(n: int = 12, dtype: type = np.float32) -> Storage:
    return Storage("0", np.arange(n).astype(dtype))


def _write(tmp_path: Path, fmt: str, obj: object) -> Path:
    return WRITERS[fmt](tmp_path / f"crafted-{fmt}.pth", obj)


def _refused(path: Path, pattern: str) -> str:
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_torch_file(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return message


# ---------------------------------------------------------------- tensor geometry


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("offset", "size", "stride", "pattern"), [
    (0, (3, 4), (4, -1), r"stride is negative \(-1\)"),
    (4, (2, 2), (-4, 1), r"stride is negative \(-4\)"),
    (-1, (3,), (1,), r"storage offset is negative \(-1\)"),
    (-2**40, (), (), r"storage offset is negative"),
    (12, (), (), r"reaches element 12 of a storage of 12"),
    (0, (4, 4), (4, 1), r"reaches element 15 of a storage of 12: refusing to read past its end"),
    (11, (2,), (1,), r"past its end"),
    (0, (2, 2), (1,), r"different lengths"),
    (0, (2.0, 3), (3, 1), r"size is 2\.0, not an integer"),
    (0, (True, 3), (3, 1), r"size is True, not an integer"),
    (0, (2, 3), ("3", 1), r"stride is '3', not an integer"),
    (0.0, (2,), (1,), r"storage offset is 0\.0, not an integer"),
    (0, [2, 3], (3, 1), r"size is \[2, 3\], not a tuple"),
    (0, (2**64, 1), (1, 1), r"does not fit in 64 bits"),
    (0, (1,) * 65, (1,) * 65, r"65 dimensions"),
])
def test_bad_geometry_is_refused(tmp_path: Path, fmt: str, offset, size, stride, pattern: str) -> None:
    _refused(_write(tmp_path, fmt, {"t": Tensor(_storage(), offset, size, stride)}), pattern)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stride_zero_of_256_tib_is_refused_before_allocating(tmp_path: Path, fmt: str) -> None:
    huge = Tensor(_storage(), 0, (2**23, 2**23), (0, 0))  # 2**46 float32 = 256 TiB
    message = _refused(_write(tmp_path, fmt, {"t": huge}), r"would need 256 TiB, over the 16 GiB limit")
    assert MAX_TENSOR_BYTES_ENV in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_small_stride_zero_and_empty_tensors_are_read(tmp_path: Path, fmt: str) -> None:
    storage = _storage(3)
    obj = {"expanded": Tensor(storage, 0, (4, 3), (0, 1)), "empty": Tensor(storage, 99, (0, 5), (7, 1)),
           "scalar": Tensor(storage, 2, (), ()), "huge_unit_stride": Tensor(storage, 1, (1, 2), (2**62, 1))}
    out = load_torch_file(_write(tmp_path, fmt, obj))
    np.testing.assert_array_equal(out["expanded"], np.tile(np.arange(3.0), (4, 1)))
    assert out["empty"].shape == (0, 5)
    assert out["scalar"].shape == () and float(out["scalar"]) == 2.0
    np.testing.assert_array_equal(out["huge_unit_stride"], [[1.0, 2.0]])
    out["expanded"][0, 0] = -1  # an own copy, not a view of the file's bytes
    assert out["expanded"][1, 0] == 0


# ---------------------------------------------------------------- storages and their records


@pytest.mark.parametrize("fmt", FORMATS)
def test_huge_declared_numel_is_refused(tmp_path: Path, fmt: str) -> None:
    storage = Storage("0", np.arange(4, dtype=np.float32), numel=2**50)
    _refused(_write(tmp_path, fmt, {"t": Tensor(storage, 0, (4,), (1,))}), r"storage 0 .* would need 4 PiB")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("numel", [-1, 2**63, 3.0, True, "4"])
def test_bad_declared_numel_is_refused(tmp_path: Path, fmt: str, numel) -> None:
    storage = Storage("0", np.arange(4, dtype=np.float32), numel=numel)
    _refused(_write(tmp_path, fmt, {"t": Tensor(storage, 0, (4,), (1,))}), r"storage 0 declares .* elements")


def test_zip_numel_mismatch_is_refused(tmp_path: Path) -> None:
    storage = Storage("0", np.arange(4, dtype=np.float32), numel=8)  # the record holds 4
    path = write_zip(tmp_path / "m.pth", {"t": Tensor(storage, 0, (8,), (1,))})
    _refused(path, r"record archive/data/0 holds 16 bytes but the pickle declares 32")


@pytest.mark.parametrize("record_numel", [2, 6])
def test_legacy_record_numel_mismatch_is_refused(tmp_path: Path, record_numel: int) -> None:
    storage = Storage("0", np.arange(4, dtype=np.float32), record_numel=record_numel)
    path = write_legacy(tmp_path / "m.pth", {"t": Tensor(storage, 0, (4,), (1,))})
    _refused(path, rf"storage 0 holds {record_numel} elements but the pickle declares 4")


def test_legacy_record_past_end_of_file_is_refused(tmp_path: Path) -> None:
    path = write_legacy(tmp_path / "m.pth", {"t": contiguous(np.arange(64, dtype=np.float32), "0")})
    path.write_bytes(path.read_bytes()[:-4])
    _refused(path, "truncated")


def test_zip_storage_record_missing(tmp_path: Path) -> None:
    path = tmp_path / "m.pth"
    write_zip(path, {}, payload=pickle_bytes({"t": contiguous(np.arange(3.0), "7")}))
    _refused(path, r"record of storage 7 is missing")


def test_zip_compressed_record_over_limit_is_refused_before_inflating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MAX_TENSOR_BYTES_ENV, "1000")
    path = write_zip(tmp_path / "m.pth", {"t": contiguous(np.zeros(4096, np.uint8), "0")}, compress=True)
    assert path.stat().st_size < 1000  # a tiny file that inflates past the limit
    _refused(path, r"storage 0 \(4096 × uint8\) would need 4 KiB, over the 1000 bytes limit")


@pytest.mark.parametrize("fmt", FORMATS)
def test_same_storage_declared_with_two_types_is_refused(tmp_path: Path, fmt: str) -> None:
    data = np.arange(4, dtype=np.float32)
    obj = {"a": Tensor(Storage("0", data), 0, (4,), (1,)),
           "b": Tensor(Storage("0", data, storage_type="IntStorage"), 0, (4,), (1,))}
    _refused(_write(tmp_path, fmt, obj), r"storage 0 is declared twice")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("pid", "pattern"), [
    (("module", "x"), r"unsupported persistent id"),
    ("storage", r"unsupported persistent id"),
    (("storage", "FloatStorage", "0", "cpu", 4), r"unsupported storage type 'FloatStorage'"),
    (("storage", Global("torch", "FloatStorage"), "../0", "cpu", 4), r"bad storage key '\.\./0'"),
    (("storage", Global("torch", "FloatStorage"), 0, "cpu", 4), r"bad storage key 0"),
])
def test_bad_persistent_ids_are_refused(tmp_path: Path, fmt: str, pid, pattern: str) -> None:
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), (Persistent(pid), 0, (4,), (1,)))
    payload = pickle_bytes({"t": tensor}, legacy=fmt == "legacy")
    path = WRITERS[fmt](tmp_path / f"{fmt}.pth", {}, payload=payload)
    _refused(path, pattern)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_storage_type_is_refused(tmp_path: Path, fmt: str) -> None:
    storage = Storage("0", np.arange(4, dtype=np.float32), storage_type="ComplexFloatStorage")
    _refused(_write(tmp_path, fmt, {"t": Tensor(storage, 0, (2,), (1,))}),
             r"'torch\.ComplexFloatStorage', which is not on jaxnets' allow-list")


@pytest.mark.parametrize("fmt", FORMATS)
def test_tensor_over_something_else_than_a_storage_is_refused(tmp_path: Path, fmt: str) -> None:
    tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), ("not a storage", 0, (4,), (1,)))
    payload = pickle_bytes({"t": tensor}, legacy=fmt == "legacy")
    _refused(WRITERS[fmt](tmp_path / f"{fmt}.pth", {}, payload=payload), r"storage is 'not a storage'")


def test_parameter_and_numpy_scalar_arguments_are_checked(tmp_path: Path) -> None:
    param = Call(Global("torch._utils", "_rebuild_parameter"), (42, False, {}))
    _refused(write_zip(tmp_path / "p.pth", {}, payload=pickle_bytes({"p": param})), r"wraps 42, not a tensor")
    object_dtype = Call(Global("numpy", "dtype"), ("O", False, True))
    _refused(write_zip(tmp_path / "d.pth", {}, payload=pickle_bytes({"d": object_dtype})), r"not a numeric dtype")


def test_legacy_storage_views(tmp_path: Path) -> None:
    data = np.arange(10, dtype=np.float32)
    view_tensor = Call(Global("torch._utils", "_rebuild_tensor_v2"), (
        Persistent(("storage", Global("torch", "FloatStorage"), "0", "cpu", 10, ("1", 4, 3))), 1, (2,), (1,)))
    obj = {"t": view_tensor, "base": Tensor(Storage("0", data), 0, (10,), (1,))}
    path = write_legacy(tmp_path / "view.pth", obj)
    np.testing.assert_array_equal(load_torch_file(path)["t"], [5.0, 6.0])  # storage[4:7][1:3]
    outside = Persistent(("storage", Global("torch", "FloatStorage"), "0", "cpu", 10, ("1", 8, 3)))
    obj["t"] = Call(Global("torch._utils", "_rebuild_tensor_v2"), (outside, 0, (2,), (1,)))
    _refused(write_legacy(tmp_path / "outside.pth", obj), r"view \[8, 8\+3\) lies outside storage 0")


# ---------------------------------------------------------------- zip member names


@pytest.mark.parametrize(("names", "pattern"), [
    (["archive/data.pkl", "archive/../../etc/passwd"], r"climbs out of the archive with '\.\.'"),
    (["../archive/data.pkl"], r"climbs out"),
    (["/archive/data.pkl"], r"is an absolute path"),
    (["archive/data.pkl", "C:/evil"], r"is an absolute path"),
    (["archive/data.pkl", "archive\\..\\evil"], r"backslash"),
    (["archive/data.pkl", "archive/data.pkl"], r"'archive/data\.pkl' more than once"),
    (["archive/data.pkl", "other/data.pkl"], r"2 data\.pkl records"),
    (["archive/data.pkl", "other/data/0"], r"outside its archive folder 'archive/'"),
    (["data.pkl"], r"not directly in an archive folder"),
    (["a/b/data.pkl"], r"not directly in an archive folder"),
    (["archive/readme.txt"], r"without data\.pkl"),
])
def test_hostile_member_names_are_refused(tmp_path: Path, names: list[str], pattern: str) -> None:
    path = tmp_path / "names.pth"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "w") as zf:
            for name in names:
                zf.writestr(name, pickle_bytes({}) if name.endswith("data.pkl") else b"x")
    _refused(path, pattern)


def test_big_endian_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "be.pth", {})
    with zipfile.ZipFile(path) as zf:
        records = {n: zf.read(n) for n in zf.namelist()}
    records["archive/byteorder"] = b"big"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in records.items():
            zf.writestr(name, data)
    _refused(path, r"byte order b'big' is not supported")


# ---------------------------------------------------------------- files and errors


def test_empty_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    _refused(tmp_path / "empty.pth", r"empty \(0 bytes\)")
    with pytest.raises(CheckpointError, match=r"is a folder, not a checkpoint file"):
        load_torch_file(tmp_path)


def test_unexpected_errors_become_one_line_checkpoint_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_zip(tmp_path / "ok.pth", state({"w": np.ones(3, np.float32)}))

    def explode(_: Path) -> None:
        raise RuntimeError("something\nnobody expected")

    monkeypatch.setattr(reader, "_load_zip", explode)
    message = _refused(path, r"cannot read checkpoint \(RuntimeError: something nobody expected\)")
    assert "\n" not in message

    def out_of_memory(_: Path) -> None:
        raise MemoryError

    monkeypatch.setattr(reader, "_load_zip", out_of_memory)
    _refused(path, r"ran out of memory .* limited to 16 GiB")

    def interrupted(_: Path) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(reader, "_load_zip", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_torch_file(path)


def test_deeply_nested_pickle_is_refused(tmp_path: Path) -> None:
    depth = 100_000  # N empty lists, each appended into the one below it: lists nested N deep
    payload = pickle.PROTO + b"\x02" + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1) + pickle.STOP
    _refused(write_legacy(tmp_path / "deep.pth", {}, payload=payload), r"nests too deeply|cannot read")


def test_size_limit_and_its_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_tensor_bytes() == DEFAULT_MAX_TENSOR_BYTES == 16 * 2**30
    assert format_bytes(DEFAULT_MAX_TENSOR_BYTES) == "16 GiB" and format_bytes(3) == "3 bytes"
    path = write_zip(tmp_path / "m.pth", state({"w": np.zeros((8, 8), np.float32)}))
    monkeypatch.setenv(MAX_TENSOR_BYTES_ENV, "255")
    _refused(path, r"would need 256 bytes, over the 255 bytes limit")
    monkeypatch.setenv(MAX_TENSOR_BYTES_ENV, "256")
    assert load_torch_file(path)["w"].shape == (8, 8)
    for bad in ("lots", "-5", "0"):
        monkeypatch.setenv(MAX_TENSOR_BYTES_ENV, bad)
        with pytest.raises(CheckpointError, match=rf"{MAX_TENSOR_BYTES_ENV} must be a positive number"):
            load_torch_file(path)


# ---------------------------------------------------------------- .npz


def _npz(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(header: dict) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def test_npz_round_trip(tmp_path: Path) -> None:
    arrays = {"Dense_0/kernel": np.arange(6, dtype=np.float32).reshape(2, 3), "flag": np.array([True, False]),
              "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "scalar": np.array(3, np.int64)}
    save_npz_state(tmp_path / "ok.npz", arrays)
    out = load_npz_state(tmp_path / "ok.npz")
    assert set(out) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(out[key], value)
        assert out[key].dtype == value.dtype and out[key].flags.writeable


@pytest.mark.parametrize(("members", "pattern"), [
    ({"w.npy": _npy(np.array([{"a": 1}], dtype=object), allow_pickle=True)}, r"dtype object"),
    ({"w.npy": _npy(np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]))}, r"object or structured"),
    ({"../w.npy": _npy(np.zeros(2))}, r"climbs out"),
    ({"/w.npy": _npy(np.zeros(2))}, r"absolute path"),
    ({"w.txt": b"hello"}, r"'w\.txt' is not a \.npy array"),
    ({"w.npy": _npy(np.zeros(8))[:-8]}, r"holds 56 data bytes but its header declares 64"),
    ({"w.npy": _npy_header({"descr": "<f4", "fortran_order": False, "shape": (2**40, 64)})},
     r"would need 256 TiB, over the 16 GiB limit"),
    ({"w.npy": b"not an npy file at all"}, r"cannot read \.npz"),
])
def test_hostile_npz_is_refused(tmp_path: Path, members: dict[str, bytes], pattern: str) -> None:
    path = _npz(tmp_path / "bad.npz", members)
    with pytest.raises(CheckpointError, match=pattern) as err:
        load_npz_state(path)
    assert "\n" not in str(err.value)


def test_pickled_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.npz"
    path.write_bytes(pickle.dumps({"w": np.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"not an \.npz \(zip\) archive"):
        load_npz_state(path)


# ---------------------------------------------------------------- the property: in bounds or refused

DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint8, np.bool_,
          ml_dtypes.bfloat16]


@st.composite
def geometries(draw: st.DrawFn) -> tuple:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    numel = draw(st.integers(0, 48))
    rank = draw(st.integers(0, 4))
    # Mostly small, sometimes a huge size (which only a zero stride keeps inside the storage).
    size = tuple(draw(st.lists(st.one_of(st.integers(0, 5), st.just(2**36)), min_size=rank, max_size=rank)))
    stride = tuple(draw(st.lists(st.integers(-3, 13), min_size=rank, max_size=rank)))
    offset = draw(st.integers(-4, 52))
    declared = draw(st.one_of(st.just(numel), st.integers(0, 52)))
    fmt = draw(st.sampled_from(FORMATS))
    return dtype, numel, declared, offset, size, stride, fmt


def _expected(storage: np.ndarray, declared: int, offset: int, size: tuple, stride: tuple) -> np.ndarray | None:
    """What a correct reader returns, computed independently, or None where it must refuse."""
    if declared != storage.size or offset < 0 or any(s < 0 for s in stride):
        return None
    n = int(np.prod(size, dtype=object))
    nonzero = int(np.prod([max(s, 1) for s in size], dtype=object))  # bounded even when n == 0
    if nonzero * storage.itemsize > DEFAULT_MAX_TENSOR_BYTES:
        return None
    if n == 0:
        return np.zeros(size, storage.dtype)
    if offset + sum((s - 1) * t for s, t in zip(size, stride, strict=True)) >= storage.size:
        return None
    strides = tuple(t * storage.itemsize for t in stride)
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=strides)


@settings(max_examples=150, deadline=None)
@given(geometry=geometries())
def test_reader_returns_the_in_bounds_view_or_refuses(tmp_path_factory: pytest.TempPathFactory, geometry) -> None:
    dtype, numel, declared, offset, size, stride, fmt = geometry
    values = (np.arange(numel) % 7 - 3).astype(dtype)  # distinct-ish values, in range of every dtype
    storage = Storage("0", values, numel=declared)
    path = WRITERS[fmt](tmp_path_factory.mktemp("prop") / "t.pth", {"t": Tensor(storage, offset, size, stride)})
    want = _expected(values, declared, offset, size, stride)
    if want is None:
        with pytest.raises(CheckpointError):
            load_torch_file(path)
        return
    got = load_torch_file(path)["t"]
    assert got.dtype == values.dtype and got.shape == size
    np.testing.assert_array_equal(got.astype(np.float64), want.astype(np.float64))
