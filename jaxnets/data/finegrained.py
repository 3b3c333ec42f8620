"""The five target data sets of SeaM's indirect reuse, read from their official archives' list files.

Spec (the original's ``--dataset`` spelling is an alias), the original's folder name, classes, files:

* ``cub200:DIR`` (CUB-200-2011; ``CUB_200_2011``; 200): ``images.txt``, ``image_class_labels.txt``,
  ``train_test_split.txt`` (1 = train), ``classes.txt``; images under ``images/``.
* ``dogs120:DIR`` (alias ``dog120``; Stanford Dogs; ``stanford_dog``; 120): ``train_list.mat`` /
  ``test_list.mat`` (``file_list``, ``labels``); images under ``Images/``.
* ``flowers102:DIR`` (alias ``flower102``; Oxford 102; ``Flower_102``; 102): ``imagelabels.mat``
  (``labels``), ``setid.mat``: train = ``trnid`` ∪ ``valid`` (2,040 images), test = ``tstid``;
  images ``jpg/image_%05d.jpg``.
* ``mit67:DIR`` (MIT Indoor 67; ``MIT_67``; 67): ``TrainImages.txt`` / ``TestImages.txt``
  (``class/file.jpg``); images under ``Images/``.
* ``actions40:DIR`` (alias ``action40``; Stanford 40 Actions; ``stanford_40``; 40):
  ``ImageSplits/actions.txt`` (header line skipped), ``ImageSplits/<action>_{train,test}.txt``;
  images under ``JPEGImages/``.

``DIR`` is the data set's folder or its parent holding it under the original's folder name. Labels
are 0-based (every archive counts from 1). Splits are ``train`` and ``test``, in list-file order.
Class names: ``classes.txt`` (CUB), the image folders (Dogs, MIT-67), ``actions.txt`` (Stanford-40);
Flowers' archive has none, so its classes are named ``label_001`` … by the archive's label.

**Deviation (spec §7 pitfall 22):** the original numbers MIT-67's classes by their position in an
unsorted directory listing of ``Images/*`` (it depends on the file system); here the class folders
are sorted by name, so labels may be a permutation of the ones a given machine gave the original.

**Checks.** Every list entry is parsed and checked before any image is looked at: a malformed line,
an unknown id, a label outside the classes, an image path that is absolute or holds ``..`` (it
would leave ``DIR``), or a .mat file without the expected variable is refused with one line naming
the list file and line (or .mat entry). Then every listed image must exist; the error names the
first missing one's list line and counts them. Images decode as the image-folder source's do
(:class:`~jaxnets.data.sources.ImageFolderSource`, decode cache included).

**--shots N** (:func:`jaxnets.data.spec.open_source`): the original's per-class few-shot sample.
For these five sets the original loaders (SeaM's ``defect_inherit/dataset``, from ReMoS) shuffle
each class's images with Python's ``random.seed(0); random.shuffle`` and keep the first N (MIT-67
shuffles the whole list once instead); :meth:`ListedImageSource.shot_order` reproduces that order,
so the same images are kept. The original applies ``--shots`` to the training split only; applied
to ``test`` here, the same rule picks from the test images.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from jaxnets.data.sources import ImageFolderSource, _check_split, _scandir
from jaxnets.errors import DataError

TARGET_SETS = ("cub200", "dogs120", "flowers102", "mit67", "actions40")
# The original defect_inherit scripts' --dataset spellings.
ALIASES = {"dog120": "dogs120", "flower102": "flowers102", "action40": "actions40"}
SHOT_SEED = 0  # the originals' loaders take seed=0 and no script changes it

_MAX_LIST_BYTES = 64 * 2**20  # the largest official list file is under 1 MB; more is something else


@dataclass(frozen=True)
class Entry:
    """One image a list file names: its path under the images folder, its 0-based label and
    where it was listed (``file:line`` or a .mat entry), for error messages."""

    relative: str
    label: int
    where: str


@dataclass(frozen=True)
class Listing:
    """One split as its list files give it; ``shot_order`` is the original's --shots scan order."""

    images_dir: Path
    entries: list[Entry]
    class_names: list[str]
    shot_order: np.ndarray


class ListedImageSource(ImageFolderSource):
    """One split of a data set whose official list files name its images (see the module doc)."""

    def __init__(self, root: Path, split: str, listing: Listing, *, name: str, cache: bool | None = None):
        # No super().__init__: that scans class folders; these files come from the list files.
        paths = _existing_images(listing.images_dir, listing.entries)
        self._init_files(root, root, split, paths, [e.label for e in listing.entries], listing.class_names,
                         name=name, cache=cache, cache_dir=None, workers=None)
        self._shot_order = listing.shot_order

    def shot_order(self) -> np.ndarray:
        return self._shot_order


def open_target_set(kind: str, path: Path, split: str, *, cache: bool | None = None) -> ListedImageSource:
    """``kind`` (one of ``TARGET_SETS``) at ``path`` (its folder or the parent of the original's
    folder name), split ``train`` or ``test``."""
    reader = _READERS[kind]
    _check_split(split, ("train", "test"), kind, reader.split_hint)
    root = _dataset_folder(path, reader.marker(split), reader.folder, kind, reader.layout)
    return ListedImageSource(root, split, reader.read(root, split), name=kind, cache=cache)


# --------------------------------------------------------------------------------------------
# Reading list files: every problem is one DataError naming the file and line


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of each non-blank line of a UTF-8 list file."""
    if not path.is_file():
        raise DataError(f"missing list file {path}" + (" (a folder is in its place)" if path.exists() else ""))
    try:
        size = path.stat().st_size
        if size > _MAX_LIST_BYTES:
            raise DataError(f"{path}: {size} bytes is far too large for a list file")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); is it the right file?") from None
    if "\0" in text:
        raise DataError(f"{path}: holds NUL bytes; a list file is text")
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _fields(path: Path, number: int, line: str, names: tuple[str, ...]) -> list[str]:
    """The line's whitespace-separated fields, one per name (the last may hold spaces)."""
    fields = line.split(maxsplit=len(names) - 1)
    if len(fields) != len(names):
        shape = " ".join(f"<{name}>" for name in names)
        raise DataError(f"{path}:{number}: malformed line {line[:80]!r}; expected '{shape}'")
    return fields


def _integer(text: str, path: Path, number: int, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataError(f"{path}:{number}: {what} {text[:40]!r} is not an integer") from None


def _id_table(path: Path, names: tuple[str, str]) -> dict[int, tuple[str, int]]:
    """``<id> <value>`` lines → {id: (value, line number)}; repeated ids are refused."""
    table: dict[int, tuple[str, int]] = {}
    for number, line in _read_lines(path):
        key_text, value = _fields(path, number, line, names)
        key = _integer(key_text, path, number, names[0])
        if key in table:
            raise DataError(f"{path}:{number}: {names[0]} {key} is listed twice (first on line {table[key][1]})")
        table[key] = (value, number)
    return table


def _check_relative(relative: str, where: str) -> str:
    """``relative`` as a POSIX path that stays inside the images folder (checked as text, before
    any file is touched): no absolute path, drive letter, ``..`` component or NUL."""
    parts = relative.replace("\\", "/").split("/")
    drive = len(relative) > 1 and relative[0].isalpha() and relative[1] == ":"  # C:\x.jpg, C:x.jpg
    if not relative or relative.startswith(("/", "\\")) or drive:
        raise DataError(f"{where}: image path {relative[:80]!r} is absolute; list entries must be relative "
                        "to the data set folder")
    if ".." in parts:
        raise DataError(f"{where}: image path {relative[:80]!r} contains '..'; list entries must stay inside "
                        "the data set folder")
    if "\0" in relative or all(p in ("", ".") for p in parts):
        raise DataError(f"{where}: {relative[:80]!r} is not an image path")
    return str(PurePosixPath(*[p for p in parts if p not in ("", ".")]))


def _existing_images(images_dir: Path, entries: Sequence[Entry]) -> list[str]:
    """The entries' file paths, after checking each exists (one error: the first missing one and
    how many are)."""
    paths = [os.path.join(images_dir, e.relative) for e in entries]
    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        first = entries[missing[0]]
        raise DataError(f"{first.where}: listed image {first.relative} not found in {images_dir} "
                        f"({len(missing)} of {len(entries)} listed images are missing)")
    if not entries:
        raise DataError(f"the list files name no images under {images_dir}")
    return paths


def _load_mat(path: Path, keys: Sequence[str], what: str) -> dict[str, np.ndarray]:
    """The named variables of a MATLAB file (``scipy.io.loadmat``; scipy comes with scikit-learn)."""
    if not path.is_file():
        raise DataError(f"missing {what} {path}" + (" (a folder is in its place)" if path.exists() else ""))
    if path.stat().st_size > _MAX_LIST_BYTES:
        raise DataError(f"{path}: {path.stat().st_size} bytes is far too large for {what}")
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as exc:  # not a .mat, truncated, v7.3 (HDF5): one line, no traceback
        text = (str(exc).strip().splitlines() or [""])[0][:120]
        raise DataError(f"{path}: not a MATLAB file scipy can read ({type(exc).__name__}: {text})") from None
    present = sorted(k for k in mat if not k.startswith("__"))
    for key in keys:
        if key not in mat:
            raise DataError(f"{path}: no '{key}' variable (it holds: {', '.join(present) or 'nothing'}); "
                            f"expected {what}")
    return {key: np.asarray(mat[key]) for key in keys}


def _mat_integers(values: np.ndarray, path: Path, key: str, low: int, high: int | None = None) -> np.ndarray:
    """A .mat numeric vector (1×N or N×1) as int64, each in low..high."""
    flat = values.reshape(-1)
    if flat.dtype.kind not in "iuf" or flat.size == 0:  # MATLAB stores them as double or uint
        raise DataError(f"{path}: '{key}' must be a non-empty numeric vector, got {values.dtype} {values.shape}")
    if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)):
        bad = int(np.flatnonzero(~np.isfinite(flat) | (flat != np.round(flat)))[0])
        raise DataError(f"{path}: '{key}' entry {bad + 1} is {flat[bad].item()!r}, not an integer")
    ints = flat.astype(np.int64)
    out = (ints < low) | (ints > high if high is not None else False)
    if np.any(out):
        bad = int(np.flatnonzero(out)[0])
        expected = f"{low}..{high}" if high is not None else f"at least {low}"
        raise DataError(f"{path}: '{key}' entry {bad + 1} is {ints[bad]}; expected {expected} (1-based)")
    return ints


def _mat_strings(values: np.ndarray, path: Path, key: str) -> list[str]:
    """A .mat cell array of strings (N×1; scipy gives each cell as a 1-element char array)."""
    if values.dtype != object:
        raise DataError(f"{path}: '{key}' must be a cell array of file names, got {values.dtype} {values.shape}")
    out = []
    for k, cell in enumerate(values.reshape(-1)):
        item = cell
        while isinstance(item, np.ndarray) and item.size == 1:  # cell → char array → str
            item = item.reshape(-1)[0]
        if not isinstance(item, str):
            raise DataError(f"{path}: '{key}' entry {k + 1} is not a file name ({type(item).__name__})")
        out.append(item)
    return out


# --------------------------------------------------------------------------------------------
# --shots: the originals' sampling order


def python_shuffled(items: Sequence[int] | np.ndarray, seed: int = SHOT_SEED) -> np.ndarray:
    """``random.seed(seed); random.shuffle(items)`` as the originals do it, without touching
    Python's global generator (a private ``random.Random(seed)`` draws the same swaps)."""
    out = np.array(items, dtype=np.int64)
    random.Random(seed).shuffle(out)  # type: ignore[arg-type]  (swaps work on a 1-D array as on a list)
    return out


def per_class_shuffled(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class 0's positions shuffled, then class 1's, …; the generator re-seeded for each class, as
    the originals' loops do (``for c in range(num_classes): ids = np.where(labels == c)[0];
    random.seed(seed); random.shuffle(ids)``)."""
    parts = [python_shuffled(np.flatnonzero(labels == c)) for c in range(num_classes)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


# --------------------------------------------------------------------------------------------
# The five readers


@dataclass(frozen=True)
class _Reader:
    read: Callable[[Path, str], Listing]
    marker: Callable[[str], str]  # a file of the split that marks the data set's folder
    folder: str  # the folder name the original's data root uses
    layout: str  # what the folder must hold, for the error when it does not
    split_hint: str = ""


def _dataset_folder(path: Path, marker: str, folder: str, kind: str, layout: str) -> Path:
    for candidate in (path, path / folder):
        if (candidate / marker).exists():
            return candidate
    raise DataError(f"{path}: no {marker} there or in {folder}/; {kind}:DIR wants the official layout ({layout})")


def read_cub200(root: Path, split: str) -> Listing:
    """CUB-200-2011: ``<id> <path>`` in images.txt, ``<id> <label>`` (1-based) in
    image_class_labels.txt, ``<id> <1 = train, 0 = test>`` in train_test_split.txt and
    ``<label> <name>`` in classes.txt; the split keeps train_test_split.txt's order."""
    classes_file, images_file = root / "classes.txt", root / "images.txt"
    labels_file, split_file = root / "image_class_labels.txt", root / "train_test_split.txt"
    classes = _id_table(classes_file, ("class id", "name"))
    class_names = []
    for k in range(1, len(classes) + 1):
        if k not in classes:
            raise DataError(f"{classes_file}: class ids must run 1..{len(classes)}, but {k} is missing")
        class_names.append(classes[k][0])
    images = _id_table(images_file, ("image id", "path"))
    label_of: dict[int, int] = {}
    for image_id, (text, number) in _id_table(labels_file, ("image id", "class id")).items():
        label = _integer(text, labels_file, number, "class id")
        if not 1 <= label <= len(class_names):
            raise DataError(f"{labels_file}:{number}: class id {label} is outside 1..{len(class_names)} "
                            f"(classes.txt has {len(class_names)})")
        label_of[image_id] = label - 1
    want = 1 if split == "train" else 0
    entries: list[Entry] = []
    ids: list[int] = []
    for image_id, (text, number) in _id_table(split_file, ("image id", "is training image")).items():
        flag = _integer(text, split_file, number, "is-training flag")
        where = f"{split_file}:{number}"
        if flag not in (0, 1):
            raise DataError(f"{where}: is-training flag {flag} must be 1 (train) or 0 (test)")
        if image_id not in images or image_id not in label_of:
            lacking = images_file.name if image_id not in images else labels_file.name
            raise DataError(f"{where}: image id {image_id} has no line in {lacking}")
        if flag != want:
            continue
        relative, image_line = images[image_id]
        image_where = f"{images_file}:{image_line}"
        entries.append(Entry(_check_relative(relative, image_where), label_of[image_id], image_where))
        ids.append(image_id)
    # The original shuffles each class's ids among ALL images (both splits, ascending ids) and
    # keeps the first ones of this split: rank this split's positions the same way.
    all_ids = np.array(sorted(label_of), dtype=np.int64)
    all_labels = np.array([label_of[i] for i in all_ids], dtype=np.int64)
    position = {image_id: k for k, image_id in enumerate(ids)}
    ranked = all_ids[per_class_shuffled(all_labels, len(class_names))]
    order = np.array([position[i] for i in ranked.tolist() if i in position], dtype=np.int64)
    return Listing(root / "images", entries, class_names, order)


def read_dogs120(root: Path, split: str) -> Listing:
    """Stanford Dogs: ``<split>_list.mat`` with ``file_list`` (N×1 cell of ``breed/file.jpg``) and
    ``labels`` (N×1, 1-based); class names are the breed folders (``n02085620-Chihuahua``)."""
    path = root / f"{split}_list.mat"
    mat = _load_mat(path, ("file_list", "labels"), f"Stanford Dogs' {path.name}")
    files = _mat_strings(mat["file_list"], path, "file_list")
    # More classes than listed images means a corrupt file (the bound also caps the name list).
    labels = _mat_integers(mat["labels"], path, "labels", 1, mat["labels"].size) - 1
    if len(files) != len(labels):
        raise DataError(f"{path}: {len(files)} entries in 'file_list' but {len(labels)} in 'labels'")
    entries = []
    for k, (relative, label) in enumerate(zip(files, labels.tolist(), strict=True)):
        where = f"{path} 'file_list' entry {k + 1}"
        entries.append(Entry(_check_relative(relative, where), label, where))
    num_classes = int(labels.max()) + 1
    class_names = [f"label_{k + 1:03d}" for k in range(num_classes)]
    for entry in reversed(entries):  # a class is named by its images' folder (the first one's wins)
        folder = PurePosixPath(entry.relative).parent.name
        if folder:
            class_names[entry.label] = folder
    return Listing(root / "Images", entries, class_names, per_class_shuffled(labels, num_classes))


def read_flowers102(root: Path, split: str) -> Listing:
    """Oxford 102 Flowers: ``imagelabels.mat`` (``labels``, 1-based, one per image) and ``setid.mat``
    (1-based image ids ``trnid``, ``valid``, ``tstid``); train = trnid then valid (2,040 images),
    test = tstid; image i is ``jpg/image_%05d.jpg``."""
    labels_path, setid_path = root / "imagelabels.mat", root / "setid.mat"
    image_labels = _load_mat(labels_path, ("labels",), "Oxford 102's imagelabels.mat")["labels"]
    labels = _mat_integers(image_labels, labels_path, "labels", 1, image_labels.size) - 1  # as for Dogs
    keys = ("trnid", "valid") if split == "train" else ("tstid",)
    setid = _load_mat(setid_path, keys, "Oxford 102's setid.mat")
    entries: list[Entry] = []
    for key in keys:
        for k, image_id in enumerate(_mat_integers(setid[key], setid_path, key, 1, len(labels)).tolist()):
            # The path is built from an integer id: it cannot leave the folder.
            entries.append(Entry(f"image_{image_id:05d}.jpg", int(labels[image_id - 1]),
                                 f"{setid_path} '{key}' entry {k + 1} (image {image_id})"))
    num_classes = int(labels.max()) + 1
    class_names = [f"label_{k + 1:03d}" for k in range(num_classes)]
    split_labels = np.array([e.label for e in entries], dtype=np.int64)
    return Listing(root / "jpg", entries, class_names, per_class_shuffled(split_labels, num_classes))


def read_mit67(root: Path, split: str) -> Listing:
    """MIT Indoor 67: ``TrainImages.txt`` / ``TestImages.txt``, one ``class/file.jpg`` per line under
    ``Images/``; class ids are the SORTED class folders of ``Images/`` (see the module doc)."""
    path = root / ("TrainImages.txt" if split == "train" else "TestImages.txt")
    listed: list[tuple[str, str]] = []  # (relative path, where), all checked before Images/ is listed
    for number, line in _read_lines(path):
        where = f"{path}:{number}"
        relative = _check_relative(line, where)
        if len(PurePosixPath(relative).parts) < 2:
            raise DataError(f"{where}: malformed line {line[:80]!r}; expected '<class>/<file>'")
        listed.append((relative, where))
    images_dir = root / "Images"
    if not images_dir.is_dir():
        raise DataError(f"{root}: no Images/ folder; mit67:DIR wants Images/<class>/<file>")
    class_names = [e.name for e in _scandir(str(images_dir)) if e.is_dir()]
    index = {name: k for k, name in enumerate(class_names)}
    entries = []
    for relative, where in listed:
        folder = PurePosixPath(relative).parent.name  # the original's line.split('/')[-2]
        if folder not in index:
            raise DataError(f"{where}: class '{folder[:60]}' has no folder in {images_dir}")
        entries.append(Entry(relative, index[folder], where))
    # The original shuffles the whole list once (random.seed(0)), then takes each class's first N.
    return Listing(images_dir, entries, class_names, python_shuffled(np.arange(len(entries))))


def read_actions40(root: Path, split: str) -> Listing:
    """Stanford 40 Actions: ``ImageSplits/actions.txt`` (a header line, then the action name in the
    first column), ``ImageSplits/<action>_<split>.txt`` (file names under ``JPEGImages/``); the split
    is class by class in actions.txt's order."""
    splits_dir = root / "ImageSplits"
    actions_file = splits_dir / "actions.txt"
    class_names: list[str] = []
    for number, line in _read_lines(actions_file)[1:]:
        name = line.split()[0]
        if "/" in name or "\\" in name or name in (".", ".."):
            raise DataError(f"{actions_file}:{number}: action name {name[:60]!r} is not a plain name")
        if name in class_names:
            raise DataError(f"{actions_file}:{number}: action '{name}' is listed twice")
        class_names.append(name)
    if not class_names:
        raise DataError(f"{actions_file}: lists no actions (the first line is a header)")
    entries = []
    for label, name in enumerate(class_names):
        list_file = splits_dir / f"{name}_{split}.txt"
        for number, line in _read_lines(list_file):
            where = f"{list_file}:{number}"
            entries.append(Entry(_check_relative(line, where), label, where))
    labels = np.array([e.label for e in entries], dtype=np.int64)
    return Listing(root / "JPEGImages", entries, class_names, per_class_shuffled(labels, len(class_names)))


_READERS: dict[str, _Reader] = {
    "cub200": _Reader(read_cub200, lambda split: "images.txt", "CUB_200_2011",
                      "images.txt, image_class_labels.txt, train_test_split.txt, classes.txt, images/"),
    "dogs120": _Reader(read_dogs120, lambda split: f"{split}_list.mat", "stanford_dog",
                       "train_list.mat, test_list.mat, Images/"),
    "flowers102": _Reader(read_flowers102, lambda split: "setid.mat", "Flower_102",
                          "imagelabels.mat, setid.mat, jpg/",
                          "; the official validation ids are part of 'train', as in the original"),
    "mit67": _Reader(read_mit67, lambda split: f"{split.capitalize()}Images.txt", "MIT_67",
                     "TrainImages.txt, TestImages.txt, Images/"),
    "actions40": _Reader(read_actions40, lambda split: "ImageSplits/actions.txt", "stanford_40",
                         "ImageSplits/actions.txt, ImageSplits/<action>_{train,test}.txt, JPEGImages/"),
}


def canonical(kind: str) -> str:
    """A spec kind with the original's spellings (``dog120``, …) mapped to the names used here."""
    return ALIASES.get(kind, kind)
