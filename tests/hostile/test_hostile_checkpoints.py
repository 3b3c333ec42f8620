"""Hostile checkpoints through the real CLI: every one refused on one line, nothing run or written.

Each case builds a file (damaged, crafted or malicious) and runs ``jaxnets convert`` or ``jaxnets
validate`` on it. The shared harness (tests/hostile_harness.py) asserts exit code 2, exactly one
``error:`` line holding the case's fragments, no traceback, no marker file created by a pickle,
and a pre-existing run folder byte-for-byte unchanged. ``convert`` writes its --out inside that
folder, so a refused conversion that left anything behind would show. Cases whose file could
crash the interpreter if the reader's bounds checks regressed run in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli
from hostile_harness import TouchMarker, refuse
from jaxnets.converters.convert import variables_to_state_dict
from jaxnets.converters.torch_reader import load_torch_file
from jaxnets.converters.torch_writer import save_torch_state_dict

from jaxnets.models.api import abstract_variables
from jaxnets.models.registry import get_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "converters"))
from craft import (  # noqa: E402  (tests/converters/craft.py: checkpoints crafted byte by byte)
    Storage,
    Tensor,
    contiguous,
    pickle_bytes,
    write_legacy,
    write_zip,
)

SHARED_WEIGHTS = Path(os.environ.get("JAXNETS_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
RESNET20 = SHARED_WEIGHTS / "weights" / "resnet20-12fca82f.th"
RESNET32 = SHARED_WEIGHTS / "weights" / "resnet32-d509ac18.th"
ALLOW_LIST = "not on jaxnets' allow-list"

Builder = Callable[[Path, Path], Path]  # (folder, marker path) -> the hostile checkpoint


@dataclass(frozen=True)
class Case:
    name: str
    build: Builder
    fragments: tuple[str, ...]
    model: str = "digits_cnn"
    command: str = "convert"
    subprocess: bool = False  # the file could crash the interpreter were a bounds check missing
    needs_shared: Path | None = None


# ---------------------------------------------------------------- building blocks


def _digits_state(fill: float = 0.5) -> dict[str, np.ndarray]:
    spec = get_spec("digits_cnn")
    abstract = abstract_variables(spec, spec.create())
    variables = jax.tree_util.tree_map(lambda s: np.full(s.shape, fill, s.dtype), abstract)
    return variables_to_state_dict(variables, spec.keymap)


def _zip_file(folder: Path, _: Path) -> Path:
    return save_torch_state_dict(folder / "digits.pth", _digits_state())


def _legacy_file(folder: Path, _: Path) -> Path:
    return write_legacy(folder / "digits.th", _craft_state(_digits_state()))


def _craft_state(arrays: dict[str, np.ndarray]) -> OrderedDict:
    return OrderedDict((k, contiguous(v, str(i))) for i, (k, v) in enumerate(arrays.items()))


def _truncated(make: Builder) -> Builder:
    def build(folder: Path, marker: Path) -> Path:
        path = make(folder, marker)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return path
    return build


def _bytes(name: str, data: bytes) -> Builder:
    def build(folder: Path, _: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return build


def _random_bytes(name: str, head: bytes = b"") -> Builder:
    return _bytes(name, head + np.random.default_rng(15).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _crafted(fmt: str, weight: Tensor) -> Builder:
    """A complete digits_cnn checkpoint whose conv1.weight is the crafted tensor: were the reader
    to accept it, the conversion would succeed (with values from outside the buffer)."""
    def build(folder: Path, _: Path) -> Path:
        tensors = _craft_state(_digits_state())
        tensors["conv1.weight"] = weight
        writer = write_zip if fmt == "zip" else write_legacy
        return writer(folder / f"crafted.{'pth' if fmt == 'zip' else 'th'}", tensors)
    return build


def _weight(offset: object = 0, size: object = (32, 1, 3, 3), stride: object = (9, 9, 3, 1), numel: object = None,
            storage_type: str | None = None, record_numel: int | None = None) -> Tensor:
    """digits_cnn's conv1.weight (32, 1, 3, 3) over its own storage, any field replaced."""
    storage = Storage("hostile", np.full(288, 0.5, np.float32), numel=numel, storage_type=storage_type,
                      record_numel=record_numel)
    return Tensor(storage, offset, size, stride)


def _members(*names: str) -> Builder:
    """A zip checkpoint whose member names are the given ones (data.pkl a valid empty state)."""
    def build(folder: Path, _: Path) -> Path:
        path = folder / "names.pth"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
            with zipfile.ZipFile(path, "w") as zf:
                for name in names:
                    zf.writestr(name, pickle_bytes({}) if name.endswith("data.pkl") else b"x")
        return path
    return build


def _malicious_pickle(folder: Path, marker: Path) -> Path:
    path = folder / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": TouchMarker(marker)}, protocol=2))
    return path


def _malicious_zip(folder: Path, marker: Path) -> Path:
    return write_zip(folder / "evil.pth", {}, payload=pickle.dumps(TouchMarker(marker), protocol=2))


def _malicious_legacy(folder: Path, marker: Path) -> Path:
    return write_legacy(folder / "evil.th", {}, payload=pickle.dumps({"w": TouchMarker(marker)}, protocol=2))


def _npz(members: Callable[[Path], dict[str, bytes]]) -> Builder:
    def build(folder: Path, marker: Path) -> Path:
        path = folder / "weights.npz"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members(marker).items():
                zf.writestr(name, data)
        return path
    return build


def _npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _object_npz(marker: Path) -> dict[str, bytes]:
    return {"conv1/kernel.npy": _npy(np.array([TouchMarker(marker)], dtype=object), allow_pickle=True)}


def _pickled_npz(folder: Path, marker: Path) -> Path:
    path = folder / "weights.npz"
    path.write_bytes(pickle.dumps({"conv1/kernel": TouchMarker(marker)}, protocol=2))
    return path


def _resnet20_negative_last_stride(fmt: str) -> Builder:
    """The published resnet20 checkpoint, rewritten with conv1.weight's last stride negated."""
    def build(folder: Path, _: Path) -> Path:
        original = load_torch_file(RESNET20)
        tensors = _craft_state(original["state_dict"])
        weight = tensors["module.conv1.weight"]
        weight.stride = (*weight.stride[:-1], -weight.stride[-1])
        obj = {"best_prec1": original["best_prec1"], "state_dict": tensors}
        writer = write_zip if fmt == "zip" else write_legacy
        return writer(folder / f"resnet20-negative-stride-{fmt}.th", obj)
    return build


def _deep_nesting(folder: Path, _: Path) -> Path:
    depth = 100_000  # empty lists, each appended into the one below: nested 100,000 deep
    payload = pickle.PROTO + b"\x02" + pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1) + pickle.STOP
    return write_legacy(folder / "deep.th", {}, payload=payload)


def _folder(folder: Path, _: Path) -> Path:
    (folder / "not-a-checkpoint").mkdir()
    (folder / "not-a-checkpoint" / "weights.bin").write_bytes(b"\0" * 16)
    return folder / "not-a-checkpoint"


def _bad_magic(folder: Path, _: Path) -> Path:
    (folder / "magic.th").write_bytes(pickle.dumps(12345, protocol=2) + pickle.dumps(1001, protocol=2))
    return folder / "magic.th"


# ---------------------------------------------------------------- the catalogue

CASES = [
    # damaged files
    Case("truncated-zip", _truncated(_zip_file), ("digits.pth", "truncated")),
    Case("truncated-legacy", _truncated(_legacy_file), ("digits.th", "truncated")),
    Case("truncated-zip-validate", _truncated(_zip_file), ("truncated",), command="validate"),
    Case("zero-byte", _bytes("empty.pth", b""), ("empty (0 bytes)",)),
    Case("zero-byte-validate", _bytes("empty.pth", b""), ("empty (0 bytes)",), command="validate"),
    Case("random-bytes", _random_bytes("random.pth"), ("not a PyTorch checkpoint",)),
    Case("random-bytes-zip-header", _random_bytes("random.pth", b"PK\x03\x04"), ("truncated or corrupt",)),
    Case("bad-magic", _bad_magic, ("bad magic number",)),
    Case("zero-byte-npz", _bytes("empty.npz", b""), ("not an .npz (zip) archive",)),
    Case("missing-file", lambda folder, _: folder / "nowhere.pth", ("checkpoint not found",)),
    Case("directory", _folder, ("is a folder but not a jaxnets checkpoint",)),
    Case("deep-nesting", _deep_nesting, ("nests too deeply",)),
    # checkpoints of something else
    Case("wrong-architecture", lambda folder, m: save_torch_state_dict(
        folder / "other.pth", {"features.0.weight": np.zeros((8, 3, 3, 3), np.float32)}),
        ("does not fit digits_cnn", "another architecture")),
    Case("wrong-depth-real-resnet32", lambda folder, m: RESNET32, ("does not fit resnet20", "60 unexpected key(s)"),
         model="resnet20", needs_shared=RESNET32),
    # pickles that would run code
    Case("malicious-pickle", _malicious_pickle, (ALLOW_LIST, "system")),
    Case("malicious-pickle-validate", _malicious_pickle, (ALLOW_LIST, "system"), command="validate"),
    Case("malicious-zip-data-pkl", _malicious_zip, (ALLOW_LIST, "system")),
    Case("malicious-legacy", _malicious_legacy, (ALLOW_LIST, "system")),
    Case("object-dtype-npz", _npz(_object_npz), ("dtype object", "never loads")),
    Case("pickled-npz", _pickled_npz, ("not an .npz (zip) archive",)),
    # zip member names
    Case("zip-path-traversal", _members("archive/data.pkl", "archive/../../../tmp/evil"), ("climbs out",)),
    Case("zip-absolute-member", _members("archive/data.pkl", "/etc/cron.d/evil"), ("absolute path",)),
    Case("zip-duplicate-data-pkl", _members("archive/data.pkl", "archive/data.pkl"), ("more than once",)),
    Case("zip-two-archive-prefixes", _members("a/data.pkl", "b/data.pkl"), ("2 data.pkl records",)),
    Case("zip-member-outside-prefix", _members("archive/data.pkl", "other/data/0"), ("more than one archive prefix",)),
    Case("npz-path-traversal", _npz(lambda m: {"../../w.npy": _npy(np.zeros(2, np.float32))}), ("climbs out",)),
    Case("npz-huge-header", _npz(lambda m: {"w.npy": _npy_header((2**40, 64))}), ("256 TiB", "16 GiB limit")),
    # crafted tensor geometry: could read outside the buffer
    Case("negative-stride-zip", _crafted("zip", _weight(stride=(9, 9, 3, -1))), ("stride is negative",),
         subprocess=True),
    Case("far-negative-stride-legacy", _crafted("legacy", _weight(stride=(-(2**40), 9, 3, 1))),
         ("stride is negative",), subprocess=True),
    Case("negative-stride-validate", _crafted("zip", _weight(stride=(9, 9, -3, 1))), ("stride is negative",),
         command="validate", subprocess=True),
    Case("negative-offset", _crafted("zip", _weight(offset=-288)), ("storage offset is negative",), subprocess=True),
    Case("stride-0-256-tib", _crafted("zip", _weight(size=(2**23, 2**23), stride=(0, 0))),
         ("256 TiB", "16 GiB limit", "JAXNETS_MAX_TENSOR_BYTES"), subprocess=True),
    Case("extent-past-storage", _crafted("legacy", _weight(size=(33, 1, 3, 3))), ("past its end",), subprocess=True),
    Case("huge-numel", _crafted("zip", _weight(numel=2**61)), ("would need", "limit"), subprocess=True),
    Case("numel-mismatch-zip", _crafted("zip", _weight(numel=300)), ("does not match",)),
    Case("numel-mismatch-legacy", _crafted("legacy", _weight(record_numel=280)), ("does not match",)),
    Case("unknown-storage-type", _crafted("zip", _weight(storage_type="QUInt8Storage")),
         ("torch.QUInt8Storage", ALLOW_LIST)),
    Case("non-int-sizes", _crafted("zip", _weight(size=(32.0, 1, 3, 3))), ("not an integer",)),
    Case("bool-strides", _crafted("legacy", _weight(stride=(9, 9, 3, True))), ("not an integer",)),
    Case("resnet20-negative-last-stride-zip", _resnet20_negative_last_stride("zip"), ("stride is negative",),
         model="resnet20", subprocess=True, needs_shared=RESNET20),
    Case("resnet20-negative-last-stride-legacy", _resnet20_negative_last_stride("legacy"), ("stride is negative",),
         model="resnet20", subprocess=True, needs_shared=RESNET20),
]


def _previous_run(tmp_path: Path) -> Path:
    """A run folder that existed before the command: nothing may touch it."""
    previous = tmp_path / "previous-run"
    previous.mkdir()
    (previous / "results.json").write_text('{"top1": 0.9173}\n')
    return previous


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_checkpoint_is_refused(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if case.needs_shared is not None and not case.needs_shared.is_file():
        pytest.skip(f"{case.needs_shared} not found (shared data absent)")
    marker = tmp_path / "pwned"
    previous = _previous_run(tmp_path)
    (tmp_path / "files").mkdir()
    checkpoint = case.build(tmp_path / "files", marker)
    if case.command == "convert":
        args = ["convert", case.model, checkpoint, "--out", previous / "converted"]
    else:
        args = ["validate", case.model, "--weights", checkpoint, "--data", "digits", "--out", tmp_path / "validated"]
    in_process = {} if case.subprocess else {"capsys": capsys, "monkeypatch": monkeypatch}
    refuse(args, *case.fragments, protect=[previous, checkpoint], marker=marker, **in_process)


def test_the_catalogue_is_complete() -> None:
    assert len(CASES) >= 28 and len({c.name for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- accepted, but never silent


def _nan_checkpoint(tmp_path: Path) -> Path:
    state = _digits_state()
    state["conv1.weight"].reshape(-1)[:3] = np.nan
    state["fc.bias"][0] = np.inf
    return save_torch_state_dict(tmp_path / "nan.pth", state)


def _convert_nan(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    code, _, err = run_cli(["convert", "digits_cnn", str(_nan_checkpoint(tmp_path)), "--out", str(tmp_path / "out")],
                           capsys, monkeypatch)
    assert code == 0 and "Traceback" not in err, err
    return err, tmp_path / "out" / "conversion.json"


def test_nan_weights_convert_with_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    err, _ = _convert_nan(tmp_path, capsys, monkeypatch)
    warnings_ = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings_) == 1, err
    assert "2 tensor(s) hold non-finite values (3 NaN, 1 inf): params/conv1/kernel, params/fc/bias" in warnings_[0]


def test_nan_weights_parity_report_counts_them(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _, report_path = _convert_nan(tmp_path, capsys, monkeypatch)
    report = json.loads(report_path.read_text())
    assert report["round_trip_nan"] == 3 and report["round_trip_inf"] == 1
    assert report["round_trip_nonfinite_mismatches"] == 0
    assert report["round_trip_max_abs_diff"] == 0.0  # over the finite values, the NaN counted apart


def test_craft_helpers_match_the_real_writer(tmp_path: Path) -> None:
    """The crafted files the catalogue relies on are read like real ones when nothing is hostile."""
    state = _digits_state()
    for path in (write_zip(tmp_path / "ok.pth", _craft_state(state)),
                 write_legacy(tmp_path / "ok.th", _craft_state(state))):
        loaded = load_torch_file(path)
        assert list(loaded) == list(state)
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key], value)
