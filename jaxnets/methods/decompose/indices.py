"""Index tables: ``I`` of shape (C, k), row ``c`` = the influential channels of class ``c``.

The file format is the one shipped with the paper: one JSON object whose keys are the class
numbers as decimal strings ("0".."C-1") and whose values are lists of channel ids. Keys are
converted to int and ordered *numerically* (spec §6 P4: string order scrambles 1000 classes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError


class IndexFileError(JaxnetsError):
    """A malformed index table (the message names the file and the fix)."""


def table_from_mapping(data: Any, *, num_classes: int | None = None,
                       num_features: int | None = None, source: str = "index table") -> np.ndarray:
    """A validated dense int32 (C, k) table from a ``{"0": [...], ...}`` mapping."""
    if not isinstance(data, Mapping) or not data:
        raise IndexFileError(f"{source}: expected a JSON object {{\"0\": [channel ids], ...}}")
    rows: dict[int, list[int]] = {}
    for key, value in data.items():
        try:
            c = int(str(key).strip())
        except ValueError:
            raise IndexFileError(f"{source}: class key {key!r} is not an integer") from None
        if str(c) != str(key).strip() or c < 0:
            raise IndexFileError(f"{source}: class key {key!r} must be a non-negative decimal "
                                 "number such as \"0\"")
        if c in rows:
            raise IndexFileError(f"{source}: class {c} appears twice")
        if not isinstance(value, list | tuple) or not value:
            raise IndexFileError(f"{source}: class {c} must map to a non-empty list of channel ids")
        ids: list[int] = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise IndexFileError(f"{source}: class {c} holds {v!r}, not an integer channel id")
            if v > _MAX_CHANNEL_ID:  # no layer has that many channels; int32 could not hold it
                raise IndexFileError(f"{source}: class {c} holds channel id {v}, which is out of "
                                     "range for any model")
            ids.append(int(v))
        rows[c] = ids
    n = len(rows)
    missing = sorted(set(range(n)) - set(rows))
    if missing:
        raise IndexFileError(f"{source}: classes must be numbered 0..{n - 1}; missing "
                             f"{', '.join(map(str, missing[:10]))}{' …' if len(missing) > 10 else ''}")
    lengths = {len(r) for r in rows.values()}
    if len(lengths) != 1:
        short = min(rows, key=lambda c: len(rows[c]))
        raise IndexFileError(f"{source}: rows have unequal lengths ({min(lengths)}..{max(lengths)}; "
                             f"e.g. class {short} has {len(rows[short])}); every class needs the same k")
    table = np.asarray([rows[c] for c in range(n)], dtype=np.int64)
    return validate_table(table, num_classes=num_classes, num_features=num_features, source=source)


def validate_table(table: Any, *, num_classes: int | None = None, num_features: int | None = None,
                   source: str = "index table") -> np.ndarray:
    """Check a (C, k) table against the model: class count, range, no duplicates in a row."""
    t = np.asarray(table)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise IndexFileError(f"{source}: expected a (classes, k) table, got shape {t.shape}")
    if not np.issubdtype(t.dtype, np.integer):
        raise IndexFileError(f"{source}: channel ids must be integers (dtype {t.dtype})")
    c, k = t.shape
    if num_classes is not None and c != num_classes:
        raise IndexFileError(f"{source} has {c} classes but the model has {num_classes}; "
                             "use the index file made for this model and data set")
    if t.min() < 0:
        raise IndexFileError(f"{source}: negative channel id {int(t.min())}")
    if num_features is not None:
        if t.max() >= num_features:
            row = int(np.argwhere(t >= num_features)[0, 0])
            raise IndexFileError(f"{source}: channel id {int(t.max())} (class {row}) is out of range: "
                                 f"the model's penultimate layer has {num_features} channels "
                                 f"(ids 0..{num_features - 1})")
        if k > num_features:
            raise IndexFileError(f"{source}: k = {k} exceeds the {num_features} channels")
    srt = np.sort(t, axis=1)
    dup = np.nonzero(np.any(srt[:, 1:] == srt[:, :-1], axis=1))[0] if k > 1 else []
    if len(dup):
        r = int(dup[0])
        vals, counts = np.unique(t[r], return_counts=True)
        raise IndexFileError(f"{source}: class {r} lists channel {int(vals[counts > 1][0])} more "
                             "than once; channel ids must be distinct within a class")
    return t.astype(np.int32)


def load_indices(path: str | Path, *, num_classes: int | None = None,
                 num_features: int | None = None) -> np.ndarray:
    """Read and validate an index JSON file → int32 (C, k).

    Refused, each with one line naming the file: a missing file or a folder, a file over
    ``MAX_INDEX_FILE_BYTES``, anything but one JSON object (a class key given twice included), and
    every table :func:`table_from_mapping` refuses.
    """
    path = Path(path)
    if path.is_dir():
        raise IndexFileError(f"{path} is a folder, not an index JSON file")
    if not path.is_file():
        raise IndexFileError(f"index file not found: {path}")
    try:
        size = path.stat().st_size
        if size > MAX_INDEX_FILE_BYTES:
            raise IndexFileError(f"{path}: {size / 2**20:.0f} MiB is too big for an index file "
                                 f"(the limit is {MAX_INDEX_FILE_BYTES // 2**20} MiB)")
        raw = path.read_bytes()
    except OSError as exc:
        raise IndexFileError(f"cannot read the index file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw, object_pairs_hook=_refuse_repeated_keys)
    except _RepeatedKey as exc:
        raise IndexFileError(f"{path}: class key {exc.args[0]!r} appears twice; each class needs "
                             "exactly one list") from None
    except (ValueError, RecursionError) as exc:  # bad JSON or encoding, 4300+ digit numbers, nesting
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise IndexFileError(f"{path}: not valid JSON ({reason})") from None
    return table_from_mapping(data, num_classes=num_classes, num_features=num_features,
                              source=str(path))


# Generous: the largest shipped file (ResNet-50, 1000 classes) is 0.3 MiB.
MAX_INDEX_FILE_BYTES = 64 * 2**20
_MAX_CHANNEL_ID = 2**31 - 1


class _RepeatedKey(Exception):
    """A JSON object names one key twice (json would silently keep the last)."""


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _RepeatedKey(key)
        out[key] = value
    return out


def indices_to_mapping(table: Any) -> dict[str, list[int]]:
    t = np.asarray(table)
    return {str(c): [int(v) for v in t[c]] for c in range(t.shape[0])}


def write_indices(path: str | Path, table: Any) -> Path:
    """Write the shipped JSON format (validated first, so only good tables are written)."""
    t = validate_table(table, source=str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(indices_to_mapping(t)))
    tmp.replace(path)
    return path


def full_table(num_classes: int, num_features: int) -> np.ndarray:
    """Every class keeps every channel: the decomposed head then equals the full head."""
    return np.tile(np.arange(num_features, dtype=np.int32), (num_classes, 1))


def overlap(a: Any, b: Any) -> int:
    """Number of shared (class, channel) pairs of two tables (set overlap per row, summed)."""
    a, b = np.asarray(a), np.asarray(b)
    return int(sum(len(set(map(int, ra)) & set(map(int, rb))) for ra, rb in zip(a, b, strict=True)))
