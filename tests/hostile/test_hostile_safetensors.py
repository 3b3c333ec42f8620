"""Hostile ``.safetensors`` files (and sharded indexes) through the real CLI: each refused on one
line with exit 2, nothing written (the harness of tests/hostile_harness.py)."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hostile_harness import refuse
from safetensors.numpy import save_file

Builder = Callable[[Path], Path]


def _raw(name: str, header: object, data: bytes = b"", *, length: int | None = None) -> Builder:
    """A file written byte by byte: 8-byte length, the JSON header, then ``data``."""
    def build(folder: Path) -> Path:
        text = json.dumps(header).encode() if not isinstance(header, bytes) else header
        path = folder / name
        path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
        return path
    return build


def _file(name: str, data: bytes) -> Builder:
    def build(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name
    return build


def _entry(dtype: str = "F32", shape: object = (2,), offsets: object = (0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


def _huge_header(folder: Path) -> Path:
    """A header of 100 MB (a sparse file: the bytes are never written)."""
    path = folder / "huge.safetensors"
    with path.open("wb") as f:
        f.write(struct.pack("<Q", 100 * 2**20))
        f.truncate(8 + 100 * 2**20 + 16)
    return path


def _index(weight_map: dict, shards: dict[str, dict[str, np.ndarray]] | None = None) -> Builder:
    def build(folder: Path) -> Path:
        for name, arrays in (shards or {}).items():
            save_file(arrays, str(folder / name))
        path = folder / "model.safetensors.index.json"
        path.write_text(json.dumps({"weight_map": weight_map}))
        return path
    return build


@dataclass(frozen=True)
class Case:
    name: str
    build: Builder
    fragments: tuple[str, ...]


ZEROS = np.zeros(2, np.float32)
CASES = [
    Case("zero-byte", _file("empty.safetensors", b""), ("too short",)),
    Case("header-longer-than-file", _raw("long.safetensors", {"w": _entry()}, bytes(8), length=10**6),
         ("header claims", "truncated")),
    Case("header-100-mb", _huge_header, ("over the", "limit")),
    Case("header-not-json", _raw("text.safetensors", b"{not json"), ("not valid JSON",)),
    Case("header-not-object", _raw("list.safetensors", [1, 2]), ("not a JSON object",)),
    Case("offsets-out-of-range", _raw("far.safetensors", {"w": _entry(offsets=(8, 16))}, bytes(8)),
         ("ends at byte 16", "8-byte data section")),
    Case("offsets-reversed", _raw("rev.safetensors", {"w": _entry(offsets=(8, 0))}, bytes(8)),
         ("bad data_offsets",)),
    Case("negative-offset", _raw("neg.safetensors", {"w": _entry(offsets=(-8, 0))}, bytes(8)),
         ("bad data_offsets",)),
    Case("size-not-shape", _raw("size.safetensors", {"w": _entry(shape=(3,))}, bytes(8)),
         ("needs 12 bytes", "give 8")),
    Case("overlapping-tensors", _raw("overlap.safetensors", {"a": _entry(offsets=(0, 8)),
                                                              "b": _entry(offsets=(4, 12))}, bytes(12)),
         ("overlap",)),
    Case("unknown-dtype", _raw("dtype.safetensors", {"w": _entry(dtype="F8_E4M3", offsets=(0, 2))}, bytes(2)),
         ("dtype 'F8_E4M3'",)),
    Case("bad-shape", _raw("shape.safetensors", {"w": _entry(shape=[2.0])}, bytes(8)), ("bad shape",)),
    Case("huge-shape", _raw("big.safetensors", {"w": _entry(shape=(2**40, 64), offsets=(0, 8))}, bytes(8)),
         ("256 TiB", "limit")),
    Case("entry-not-object", _raw("entry.safetensors", {"w": [1, 2]}), ("needs dtype, shape and data_offsets",)),
    Case("shard-climbs-out", _index({"w": "../outside.safetensors"}), ("must be a file name beside the index",)),
    Case("shard-missing", _index({"w": "model-00001.safetensors"}), ("shard model-00001.safetensors", "missing")),
    Case("tensor-not-in-shard", _index({"w": "a.safetensors"}, {"a.safetensors": {"other": ZEROS}}),
         ("lacks", "w")),
    Case("index-without-weight-map", _file("x.safetensors.index.json", b"{}"), ("no weight_map",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_safetensors_is_refused(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    previous = tmp_path / "previous-run"
    previous.mkdir()
    (previous / "results.json").write_text('{"top1": 0.9173}\n')
    (tmp_path / "files").mkdir()
    checkpoint = case.build(tmp_path / "files")
    refuse(["convert", "digits_cnn", checkpoint, "--out", previous / "converted"], *case.fragments,
           protect=[previous, checkpoint], capsys=capsys, monkeypatch=monkeypatch)


def test_the_sparse_header_file_is_not_really_100_mb(tmp_path: Path) -> None:
    path = _huge_header(tmp_path)
    assert path.stat().st_size > 100 * 2**20
    blocks = getattr(os.stat(path), "st_blocks", 0)
    assert blocks * 512 < 2**20  # the test itself stays cheap on disk
