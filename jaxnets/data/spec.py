"""Data specs (``--data``): a short string that names a data set and where it lives.

Valid forms: ``digits``, ``tfds:NAME``, ``cifar10:DIR``, ``cifar100:DIR``, ``cifar10-py:DIR``,
``cifar100-py:DIR``, ``imagefolder:DIR``, and SeaM's five target sets from their official list
files, ``cub200:DIR``, ``dogs120:DIR``, ``flowers102:DIR``, ``mit67:DIR``, ``actions40:DIR`` (the
original's spellings ``dog120``, ``flower102``, ``action40`` too; :mod:`jaxnets.data.finegrained`).
``cifar10:DIR`` / ``cifar100:DIR`` accept the binary batches folder, its parent, or a pickled
(python) batches folder; the ``-py`` forms insist on the pickled format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxnets.data.finegrained import ALIASES, TARGET_SETS, open_target_set
from jaxnets.data.sources import (
    CifarBinarySource,
    CifarPythonSource,
    DigitsSource,
    ImageFolderSource,
    Source,
    Subset,
    TfdsSource,
)
from jaxnets.errors import DataError

VALID_FORMS = ("digits", "tfds:NAME", "cifar10:DIR", "cifar100:DIR", "cifar10-py:DIR",
               "cifar100-py:DIR", "imagefolder:DIR", *(f"{kind}:DIR" for kind in TARGET_SETS))
DIR_KINDS = ("cifar10", "cifar100", "cifar10-py", "cifar100-py", "imagefolder", *TARGET_SETS)
SPLITS = ("train", "test", "val")

_FORMS_TEXT = ", ".join(VALID_FORMS)


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec: ``kind`` plus a directory (``path``) or a tfds ``name``."""

    kind: str
    text: str
    path: Path | None = None
    name: str | None = None


def parse_data_spec(text: str) -> DataSpec:
    """Parse a ``--data`` string; a :class:`DataError` (one line, the valid forms) otherwise.

    Directory forms must name an existing directory.
    """
    raw = (text or "").strip()
    if raw.lower() == "digits":
        return DataSpec("digits", raw)
    kind, sep, rest = raw.partition(":")
    kind = ALIASES.get(kind.lower(), kind.lower())
    if not sep or (kind not in DIR_KINDS and kind != "tfds"):
        hint = ""
        if raw and not sep and Path(raw).expanduser().is_dir():
            hint = f" (for a directory, say which format: cifar10:{raw} or imagefolder:{raw})"
        raise DataError(f"unknown data spec '{raw}'{hint}; valid forms: {_FORMS_TEXT}")
    rest = rest.strip()
    if kind == "tfds":
        if not rest:
            raise DataError(f"data spec '{raw}' needs a dataset name, e.g. tfds:cifar10; "
                            f"valid forms: {_FORMS_TEXT}")
        return DataSpec("tfds", raw, name=rest)
    if not rest:
        raise DataError(f"data spec '{raw}' needs a directory ({kind}:DIR); "
                        f"valid forms: {_FORMS_TEXT}")
    path = Path(rest).expanduser()
    if not path.is_dir():
        what = "not a directory" if path.exists() else "directory not found"
        raise DataError(f"data {what}: {path} (from --data '{raw}')")
    return DataSpec(kind, raw, path=path)


# (binary folder name, a file that marks it) and the same for the pickled format.
_CIFAR_LAYOUT = {
    "cifar10": (("cifar-10-batches-bin", ("test_batch.bin", "data_batch_1.bin")),
                ("cifar-10-batches-py", ("test_batch", "data_batch_1"))),
    "cifar100": (("cifar-100-binary", ("test.bin", "train.bin")),
                 ("cifar-100-python", ("test", "train"))),
}


def _has_any(path: Path, names: Sequence[str]) -> bool:
    return any((path / n).is_file() for n in names)


def _find_cifar(path: Path, variant: str, python_only: bool) -> tuple[str, Path]:
    """('bin' | 'py', the folder holding the batch files) for a user-given directory."""
    (bin_dir, bin_marks), (py_dir, py_marks) = _CIFAR_LAYOUT[variant]
    candidates = [] if python_only else [("bin", path, bin_marks), ("bin", path / bin_dir,
                                                                      bin_marks)]
    candidates += [("py", path, py_marks), ("py", path / py_dir, py_marks)]
    for fmt, folder, marks in candidates:
        if folder.is_dir() and _has_any(folder, marks):
            return fmt, folder
    expected = (f"{py_dir} files ({', '.join(py_marks)})" if python_only else
                f"{bin_dir} files ({', '.join(bin_marks)}) or {py_dir} files "
                f"({', '.join(py_marks)})")
    raise DataError(f"no {variant} batch files in {path}: expected {expected} there or in a "
                    "sub-folder of that name")


def _build(spec: DataSpec, split: str, cache: bool | None) -> Source:
    if spec.kind == "digits":
        return DigitsSource(split)
    if spec.kind == "tfds":
        assert spec.name is not None
        return TfdsSource(spec.name, split)
    assert spec.path is not None
    if spec.kind == "imagefolder":
        return ImageFolderSource(spec.path, split, cache=cache)
    if spec.kind in TARGET_SETS:
        return open_target_set(spec.kind, spec.path, split, cache=cache)
    variant = spec.kind.removesuffix("-py")
    fmt, folder = _find_cifar(spec.path, variant, python_only=spec.kind.endswith("-py"))
    if fmt == "bin":
        return CifarBinarySource(folder, split, variant)
    return CifarPythonSource(folder, split, variant)


def _interleave_if_sorted(indices: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Round-robin over classes (keeping each class's own order) when labels are sorted."""
    if len(labels) < 2 or np.any(np.diff(labels) < 0) or labels[0] == labels[-1]:
        return indices
    rank = np.empty(len(labels), np.int64)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        rank[where] = np.arange(len(where))
    return indices[np.lexsort((labels, rank))]


def few_shot_indices(source: Source, shots: int) -> np.ndarray:
    """Positions (sorted) of the first ``shots`` images of each class in ``source.shot_order()``:
    the split's own order, or the original's seeded sample where its reader samples (the SeaM
    target sets, :mod:`jaxnets.data.finegrained`). A class with fewer images keeps all of them."""
    _check_shots(shots)
    order = np.asarray(source.shot_order(), dtype=np.int64)
    labels = np.asarray(source.labels)[order]
    by_class = np.argsort(labels, kind="stable")  # each class's positions, in shot order
    sorted_labels = labels[by_class]
    rank = np.arange(len(order)) - np.searchsorted(sorted_labels, sorted_labels, side="left")
    return np.sort(order[by_class[rank < shots]])


def _check_shots(shots: int) -> None:
    if shots < 1:
        raise DataError(f"--shots must be at least 1 (got {shots})")


def _warn_short_classes(source: Source, indices: np.ndarray, shots: int) -> None:
    counts = np.bincount(np.asarray(source.labels)[indices], minlength=source.num_classes)
    present = np.unique(np.asarray(source.labels)[indices])
    short = [int(c) for c in present if counts[c] < shots]
    if short:
        from jaxnets.ui import warn

        warn(f"--shots {shots}: {len(short)} of {len(present)} classes of {source.name} {source.split} have "
             f"fewer images (class {short[0]}: {counts[short[0]]}); they keep all of theirs")


def open_source(text: str, split: str = "test", *, limit: int | None = None,
                classes: Sequence[int] | None = None, relabel: bool = False,
                cache: bool | None = None, shots: int | None = None) -> Source:
    """Open the data set named by ``text`` at ``split`` ('train', 'test' or 'val').

    ``classes`` keeps only those class ids (original ids unless ``relabel``, which maps them to
    0..K-1 in the order given); ``shots`` then keeps N images of each class (few-shot sampling:
    :func:`few_shot_indices`, the original SeaM's rule per data set); ``limit`` then keeps the
    first N images in dataset order — except where the data set is stored class by class (image
    folders), where it keeps the first N of a round-robin over the classes, so a limited run still
    sees every class. ``cache`` is the image-folder decode cache switch (None = automatic).
    """
    spec = parse_data_spec(text)
    if split not in SPLITS:
        raise DataError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if shots is not None:
        _check_shots(shots)  # before the data set is read
    source = _build(spec, split, cache)
    source.spec = spec.text
    if classes is None and limit is None and shots is None:
        return source
    indices = np.arange(len(source), dtype=np.int64)
    kept: list[int] | None = None
    if classes is not None:
        kept = [int(c) for c in classes]
        bad = [c for c in kept if not 0 <= c < source.num_classes]
        if bad:
            raise DataError(f"--classes {','.join(map(str, bad))}: {source.name} has classes "
                            f"0..{source.num_classes - 1}")
        if len(set(kept)) != len(kept) or not kept:
            raise DataError("--classes must list distinct class ids")
        indices = np.flatnonzero(np.isin(source.labels, kept))
        if not len(indices):
            raise DataError(f"{source.name} {split} has no images of classes "
                            f"{','.join(map(str, kept))}")
    if shots is not None:
        indices = np.intersect1d(indices, few_shot_indices(source, shots))
        _warn_short_classes(source, indices, shots)
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be at least 1 (got {limit})")
        indices = _interleave_if_sorted(indices, np.asarray(source.labels)[indices])[:limit]
    subset = Subset(source, indices, classes=kept, relabel=relabel and kept is not None)
    subset.spec = spec.text
    return subset
