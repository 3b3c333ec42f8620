"""Data sources: random access to uint8 HWC images and integer labels.

Every source has the same small surface (:class:`Source`): ``len``, ``source[i] -> (image,
label)``, ``get_batch(indices)`` (the fast path, equal image sizes) and ``labels`` (all labels in
dataset order, without decoding images). Implementations:

* :class:`CifarBinarySource` — the official binary batches (``cifar-10-batches-bin``,
  ``cifar-100-binary``), read straight into memory.
* :class:`CifarPythonSource` — the official pickled batches (``cifar-10-batches-py``,
  ``cifar-100-python``), read with a restricted unpickler that refuses any global outside a
  short allow-list (a pickle can run code; a data file has no business doing that).
* :class:`ImageFolderSource` — ``DIR/<split>/<class>/*.jpg|png`` (also ImageNet's
  ``ILSVRC/Data/CLS-LOC`` layout). When every image has the same size the split is decoded once
  into a ``.npy`` cache and memory-mapped afterwards.
  SeaM's five target sets (CUB-200, Stanford Dogs, Flowers-102, MIT-67, Stanford-40) are image-folder
  sources over the files their official list files name (:mod:`jaxnets.data.finegrained`).
* :class:`DigitsSource` — scikit-learn's 8×8 digits, embedded, with a fixed stratified split.
* :class:`TfdsSource` — ``tfds.data_source`` (optional dependency).
* :class:`Subset` — a view (``--limit``, ``--classes``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import DataError
from jaxnets.safe_pickle import RestrictedUnpickler, latin1_encode, numpy_scalar

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff",
                    ".webp")


class Source:
    """Random access to a labelled image data set (uint8 HWC images, int labels).

    Attributes: ``name``, ``split``, ``num_classes``, ``class_names``, ``labels`` (int64, dataset
    order), ``image_shape`` (fixed ``(H, W, C)`` or ``None`` when sizes vary or are unknown) and
    ``in_memory`` (True when ``get_batch`` is a cheap gather; the loader otherwise fetches images
    one by one on worker threads).
    """

    name: str = "source"
    split: str = "test"
    num_classes: int = 0
    class_names: list[str]
    labels: np.ndarray
    image_shape: tuple[int, int, int] | None = None
    in_memory: bool = False
    spec: str = ""  # the data spec text it was opened from, when opened through open_source

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def get_images(self, idx: np.ndarray) -> list[np.ndarray]:
        """The images at ``idx`` as a list (sizes may differ)."""
        return [self[int(i)][0] for i in np.asarray(idx).reshape(-1)]

    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        """The images at ``idx`` stacked into ``(B, H, W, C)`` uint8; sizes must agree."""
        return _stack(self.get_images(idx), self)

    def shot_order(self) -> np.ndarray:
        """All positions in the order ``--shots N`` scans them: it keeps the first N of each class.

        Dataset order here (the original SeaM's rule for ImageNet folders: the first N files of a
        class in sorted order); a reader whose original samples instead overrides it."""
        return np.arange(len(self), dtype=np.int64)

    def describe(self) -> str:
        shape = "×".join(map(str, self.image_shape)) if self.image_shape else "varying size"
        return (f"{self.name} {self.split}: {len(self)} images ({shape}), "
                f"{self.num_classes} classes")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def _stack(images: Sequence[np.ndarray], source: Source) -> np.ndarray:
    if not images:
        shape = source.image_shape or (0, 0, 0)
        return np.zeros((0, *shape), np.uint8)
    first = images[0].shape
    for img in images:
        if img.shape != first:
            raise DataError(
                f"{source.name} {source.split}: images differ in size ({first} vs {img.shape}); "
                "resize them with a per-image transform (e.g. imagenet_eval) before batching")
    return np.stack(images)


def _check_split(split: str, allowed: Sequence[str], name: str, hint: str = "") -> None:
    if split not in allowed:
        raise DataError(f"{name} has no '{split}' split (it has {', '.join(allowed)}){hint}")


# --------------------------------------------------------------------------------------------
# In-memory arrays (CIFAR, digits)


class ArraySource(Source):
    """A source over an in-memory (or memory-mapped) ``(N, H, W, C)`` uint8 array."""

    in_memory = True

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, name: str, split: str,
                 class_names: Sequence[str]):
        if images.dtype != np.uint8 or images.ndim != 4:
            raise DataError(f"{name}: images must be (N, H, W, C) uint8, got {images.dtype} "
                            f"{images.shape}")
        if len(images) != len(labels):
            raise DataError(f"{name}: {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.name, self.split = name, split
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.image_shape = tuple(int(s) for s in images.shape[1:])  # type: ignore[assignment]
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise DataError(f"{name} {split}: labels outside 0..{self.num_classes - 1} "
                            f"(found {self.labels.min()}..{self.labels.max()}); the file is corrupt")

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return np.asarray(self.images[i]), int(self.labels[i])

    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.images[np.asarray(idx, dtype=np.int64)])


def _chw_to_hwc(flat: np.ndarray) -> np.ndarray:
    """CIFAR rows (N, 3072) = 1024 R, 1024 G, 1024 B → (N, 32, 32, 3)."""
    return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_names(path: Path, fallback: list[str] | None, count: int) -> list[str]:
    """Class names from a text file, one a line; the fallback when it is absent or unusable
    (names are cosmetic, so a broken names file warns instead of refusing the data)."""
    default = fallback if fallback is not None else [str(i) for i in range(count)]
    if not path.is_file():
        return default
    try:
        text = path.read_bytes()[:_MAX_NAMES_BYTES].decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        from jaxnets.ui import warn

        warn(f"ignoring the class names in {path}: not readable text ({type(exc).__name__})")
        return default
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names if len(names) == count else default


_MAX_NAMES_BYTES = 1 << 20  # far above 100 class names; a bigger "names file" is something else


def _check_labels(labels: np.ndarray, num_classes: int, path: Path, what: str = "label") -> None:
    """Refuse labels outside 0..num_classes-1, naming the file, the first bad record and how many."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        first = int(bad[0])
        raise DataError(f"{path}: {what} {int(labels[first])} of record {first} is outside "
                        f"0..{num_classes - 1} ({len(bad)} of {len(labels)} records); the file "
                        "is corrupt or of another data set")


class CifarBinarySource(ArraySource):
    """The official CIFAR binary format.

    CIFAR-10 (``cifar-10-batches-bin``): records of 1 label byte + 3072 pixel bytes in
    ``data_batch_1..5.bin`` (train) and ``test_batch.bin`` (test). CIFAR-100
    (``cifar-100-binary``): records of a coarse and a fine label byte + 3072 pixel bytes in
    ``train.bin`` / ``test.bin``; the label is the fine one (``coarse_labels`` keeps the other).
    A file whose size is not a whole number of records is refused as truncated.
    """

    def __init__(self, root: str | Path, split: str = "test", variant: str = "cifar10"):
        root = Path(root)
        _check_split(split, ("train", "test"), variant.upper(), _CIFAR_VAL_HINT)
        if variant == "cifar10":
            files = ([f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train"
                     else ["test_batch.bin"])
            header, num_classes = 1, 10
        elif variant == "cifar100":
            files, header, num_classes = [f"{split}.bin"], 2, 100
        else:
            raise ValueError(f"unknown CIFAR variant {variant!r}")
        record = header + 3072
        chunks = []
        for fname in files:
            path = root / fname
            if not path.is_file():
                raise DataError(f"{variant} {split}: missing file {path}")
            try:
                raw = np.fromfile(path, dtype=np.uint8)
            except OSError as exc:
                raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
            if raw.size == 0:
                raise DataError(f"{path}: empty file (0 bytes); expected {record}-byte {variant} "
                                "records")
            if raw.size % record:
                raise DataError(f"{path}: {raw.size} bytes is not a whole number of "
                                f"{record}-byte records (the file is truncated or not {variant})")
            rows_of_file = raw.reshape(-1, record)
            _check_labels(rows_of_file[:, header - 1], num_classes, path)
            if variant == "cifar100":
                _check_labels(rows_of_file[:, 0], 20, path, "coarse label")
            chunks.append(rows_of_file)
        rows = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        if variant == "cifar10":
            names = _read_names(root / "batches.meta.txt", CIFAR10_CLASSES, 10)
            self.coarse_labels = None
        else:
            names = _read_names(root / "fine_label_names.txt", None, 100)
            self.coarse_labels = rows[:, 0].astype(np.int64)
        super().__init__(_chw_to_hwc(rows[:, header:]), rows[:, header - 1],
                         name=variant, split=split, class_names=names[:num_classes])
        self.root = root


_CIFAR_VAL_HINT = ("; hold out part of 'train' for validation with the train command's "
                   "--val-split instead")


# --------------------------------------------------------------------------------------------
# Pickled CIFAR (restricted unpickler)


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # numpy's array pickles start from an empty array that __setstate__ (BUILD) then fills.
    # (An object array's items are unpickled by this same restricted unpickler, and the
    # batch checks below accept only integer arrays.)
    if subtype is not np.ndarray:
        raise DataError("refusing to load: the pickle reconstructs an ndarray subclass")
    return np.ndarray(shape, dtype=np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype))


def _np_frombuffer(buf: Any, dtype: np.dtype, shape: tuple, order: str) -> np.ndarray:
    # Protocol-5 array pickles: (buffer, dtype, shape, order). Only real bytes: bytes(int)
    # would allocate that many zero bytes.
    if not isinstance(buf, bytes | bytearray):
        raise DataError("refusing to load: an array buffer in the pickle is not bytes")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


# Plain containers and numbers need no globals at all; these are the only ones a CIFAR
# pickle (Python 2 or 3, numpy 1 or 2, protocols 2–5) names.
_PICKLE_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy.core.multiarray", "scalar"): numpy_scalar,
    ("numpy._core.multiarray", "scalar"): numpy_scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): latin1_encode,
}


class _SafeUnpickler(RestrictedUnpickler):
    allowed = _PICKLE_ALLOWED
    error = DataError
    refusal_hint = "for data files; the file may be malicious"


def load_data_pickle(path: str | Path) -> Any:
    """Unpickle a data file allowing only builtins and numpy array reconstruction.

    Byte strings stay ``bytes`` (``encoding='bytes'``: the official files were written by
    Python 2), so dict keys come back as ``b'data'``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file {path}")
    try:
        with path.open("rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except DataError as exc:  # a refused global or buffer: say which file
        raise DataError(f"{path}: {exc}") from None
    except Exception as exc:  # any malformed pickle: one clear line, no traceback
        raise DataError(f"{path}: cannot read pickle ({type(exc).__name__}: {exc})") from None


def _key(d: dict, *names: str) -> Any:
    for n in names:
        for k in (n, n.encode()):
            if k in d:
                return d[k]
    return None


def _integer_labels(labels: Any, path: Path, key: str) -> np.ndarray:
    """A pickle's label list as int64, refusing anything but a flat sequence of integers."""
    arr = None
    if isinstance(labels, list | tuple | np.ndarray):
        try:
            arr = np.asarray(labels)
        except (ValueError, TypeError):  # ragged or otherwise not an array
            arr = None
        if arr is not None and arr.size == 0:  # [] is float64 to numpy; the count check reports it
            arr = arr.astype(np.int64)
    if arr is None or arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        got = f"{type(labels).__name__}" + (f" of {arr.dtype} {arr.shape}" if arr is not None
                                            else "")
        raise DataError(f"{path}: '{key}' must be a flat list of integer labels, got {got}")
    return arr.astype(np.int64)


def _as_str(x: Any) -> str:
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)


class CifarPythonSource(ArraySource):
    """The official pickled CIFAR batches (``cifar-10-batches-py``, ``cifar-100-python``).

    Each batch file is a dict with ``b'data'`` ((N, 3072) uint8, channel-major rows) and
    ``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100).
    """

    def __init__(self, root: str | Path, split: str = "test", variant: str = "cifar10"):
        root = Path(root)
        _check_split(split, ("train", "test"), variant.upper(), _CIFAR_VAL_HINT)
        if variant == "cifar10":
            files = ([f"data_batch_{i}" for i in range(1, 6)] if split == "train"
                     else ["test_batch"])
            meta_file, meta_key, label_key, fallback = ("batches.meta", "label_names", "labels",
                                                        CIFAR10_CLASSES)
        elif variant == "cifar100":
            files, meta_file, meta_key, label_key, fallback = (
                [split], "meta", "fine_label_names", "fine_labels", None)
        else:
            raise ValueError(f"unknown CIFAR variant {variant!r}")
        num_classes = 10 if variant == "cifar10" else 100
        datas, labels = [], []
        for fname in files:
            path = root / fname
            d = load_data_pickle(path)
            data, lab = (_key(d, "data"), _key(d, label_key)) if isinstance(d, dict) else (None,
                                                                                          None)
            if not isinstance(data, np.ndarray) or lab is None:
                raise DataError(f"{path}: not a {variant} batch (expected a dict with 'data' and "
                                f"'{label_key}')")
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(f"{path}: 'data' must be (N, 3072) uint8, got {data.dtype} "
                                f"{data.shape}")
            if len(data) == 0:
                raise DataError(f"{path}: the batch holds no images")
            lab = _integer_labels(lab, path, label_key)
            if len(lab) != len(data):
                raise DataError(f"{path}: {len(data)} images but {len(lab)} labels")
            _check_labels(lab, num_classes, path)
            datas.append(data)
            labels.append(lab)
        names = fallback or [str(i) for i in range(num_classes)]
        if (root / meta_file).is_file():
            meta = load_data_pickle(root / meta_file)
            found = _key(meta, meta_key) if isinstance(meta, dict) else None
            # Names are cosmetic: a meta file without a usable list keeps the default names.
            if (isinstance(found, list | tuple) and len(found) == num_classes
                    and all(isinstance(n, str | bytes) for n in found)):
                names = [_as_str(n) for n in found]
        super().__init__(_chw_to_hwc(np.concatenate(datas)), np.concatenate(labels),
                         name=variant, split=split, class_names=names)
        self.root = root


# --------------------------------------------------------------------------------------------
# Image folders
#
# The decoding rule: every image becomes (H, W, 3) uint8 RGB, the pixels torchvision's default
# loader (``Image.convert("RGB")``) gives a PyTorch pipeline, except where that conversion is
# silently wrong (16-bit images, which it clips at 255):
# * 8-bit RGB as stored; grayscale (L) and bilevel (1) repeated into three channels; palette (P)
#   images through their palette; CMYK and YCbCr by Pillow's conversion (no colour management:
#   ICC profiles are ignored);
# * alpha is dropped, not composited (RGBA, LA, PA, palette transparency): a pixel keeps the
#   colour stored under it however transparent it is;
# * 16-bit samples keep their high byte, ``v >> 8`` (65535 → 255, 32896 → 128, 255 → 0): the rule
#   Pillow itself applies to 16-bit colour PNGs, so 16-bit gray and colour agree. 32-bit integer
#   images are read as 16-bit and refused outside 0..65535; floating-point images are refused;
# * animations give their first frame; EXIF orientation is not applied (as torchvision).

_UINT16_MAX = 65535


def _to_rgb(im: Any) -> np.ndarray:
    """A loaded Pillow image as (H, W, 3) uint8, by the rule above."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im)
    if mode == "F":
        raise ValueError("floating-point pixels have no defined 8-bit scale; save the image with "
                         "8 or 16 bits per sample")
    if mode == "I" or mode.startswith("I;16"):
        values = np.asarray(im).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > _UINT16_MAX):
            raise ValueError(f"{mode} pixel values {values.min()}..{values.max()} are outside "
                             f"the 16-bit range 0..{_UINT16_MAX}")
        gray = (values >> 8).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def _decode_image(path: str | Path) -> np.ndarray:
    """Decode one image file to (H, W, 3) uint8 RGB (the rule above)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode inside the ``with``: a truncated file fails here
        return _to_rgb(im)


def _probe_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    from PIL import Image

    with Image.open(path) as im:
        return im.size[1], im.size[0]


def _failure_reason(path: str, exc: BaseException) -> str:
    """Why ``path`` is not a usable image, in a few words on one line."""
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file Pillow can read"
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def default_cache_dir() -> Path:
    """``$JAXNETS_CACHE_DIR/decoded`` (default ``~/.cache/jaxnets/decoded``)."""
    root = os.environ.get("JAXNETS_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "jaxnets"
    return base / "decoded"


# Beyond this the decoded array would not be a sensible cache (ImageNet-sized folders vary in
# size anyway and are decoded per batch).
MAX_CACHE_BYTES = 16 * 2**30
# v2: 16-bit images scale by v >> 8 (v1 clipped them), keys hold the resolved path and content.
_CACHE_VERSION = "jaxnets-decoded-v2-rgb"
_PROBE_COUNT = 32
_CHUNK = 64  # files per worker task when hashing or decoding a folder


def _imagenet_root(root: Path) -> Path:
    """ImageNet's ``ILSVRC/Data/CLS-LOC`` when ``root`` is (or holds) an ILSVRC tree."""
    for candidate in (root / "ILSVRC" / "Data" / "CLS-LOC", root / "Data" / "CLS-LOC"):
        if candidate.is_dir():
            return candidate
    return root


def _scandir(path: str) -> list[os.DirEntry]:
    """The entries of a folder, sorted by name, hidden ones (``.DS_Store``, macOS ``._x.jpg``
    resource forks) left out."""
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise DataError(f"cannot list the folder {path}: {exc.strerror or exc}") from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


class ImageFolderSource(Source):
    """``ROOT/<split>/<class>/<image>``: class folders sorted by name give labels 0..K-1.

    Files inside a class folder are taken in sorted order; dataset order is class by class.
    ImageNet's ``ILSVRC/Data/CLS-LOC`` layout works when its ``val`` folder has been sorted into
    class sub-folders (the usual ``valprep.sh``). Images decode to RGB with Pillow by the rule at
    the top of this section (16-bit images by their high byte, alpha dropped).

    What counts as an image: a file whose name ends in one of ``IMAGE_EXTENSIONS``. Hidden
    entries (names starting with ".") and files with other endings (``notes.txt``) are ignored;
    an entry with an image name that is not a file (a folder ``x.png``, a broken link) is ignored
    with a warning. A class folder without images is refused (its label would have no examples),
    as is a file with an image name that does not decode: the error names the first such file and
    counts them.

    Decode cache (``cache=None`` = automatic): when the image headers of a sample agree on one
    size and the whole split fits in ``MAX_CACHE_BYTES``, the split is decoded once (thread pool,
    progress bar after 1 s) into ``<cache_dir>/<key>.npy`` and memory-mapped from then on. The key
    hashes the split folder's resolved path and every file's relative name, size and bytes (one
    read of the folder per opening, about 1.5 s for CIFAR-10's 50,000 JPEGs), so a changed file, or
    another folder with the same names, sizes and times, decodes again. The cache is written to a
    temporary file renamed into place; an unreadable one is decoded again. ``cache=False`` always
    decodes per access; ``cache=True`` insists.
    """

    def __init__(self, root: str | Path, split: str = "test", *, cache: bool | None = None,
                 cache_dir: str | Path | None = None, workers: int | None = None,
                 name: str | None = None):
        root = _imagenet_root(Path(root).expanduser())
        split_dir = root / split
        if not split_dir.is_dir():
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            found = f" (it has: {', '.join(present)})" if present else ""
            raise DataError(f"no '{split}' folder in {root}{found}; expected "
                            f"{root}/{split}/<class>/<image files>")
        top = _scandir(str(split_dir))
        class_dirs = [e for e in top if e.is_dir()]
        if not class_dirs:
            loose = any(e.name.lower().endswith(IMAGE_EXTENSIONS) for e in top)
            why = (" — the images sit directly in it; sort them into one sub-folder per class "
                   "(for ImageNet's val, the usual valprep.sh)") if loose else ""
            raise DataError(f"{split_dir} has no class sub-folders{why}")
        paths: list[str] = []
        labels: list[int] = []
        not_files: list[str] = []
        empty: list[str] = []
        for label, cdir in enumerate(class_dirs):
            found_any = False
            for e in _scandir(cdir.path):
                if not e.name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                if not e.is_file():  # a folder named x.png, a broken link, a pipe
                    not_files.append(e.path)
                    continue
                paths.append(e.path)
                labels.append(label)
                found_any = True
            if not found_any:
                empty.append(cdir.name)
        if not paths:
            raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) under {split_dir}")
        if not_files:
            from jaxnets.ui import warn

            warn(f"ignoring {_plural(len(not_files), 'entry')} with an image name that "
                 f"{'is' if len(not_files) == 1 else 'are'} not a file under {split_dir}, e.g. "
                 f"{not_files[0]}")
        if empty:
            shown = ", ".join(empty[:5]) + (" …" if len(empty) > 5 else "")
            raise DataError(f"{split_dir}: {_plural(len(empty), 'class folder')} without image "
                            f"files ({shown}); every class folder needs images — add them or "
                            "remove the folder (labels are the sorted folder names)")
        self._init_files(root, split_dir, split, paths, labels, [c.name for c in class_dirs],
                         name=name or root.name, cache=cache, cache_dir=cache_dir, workers=workers)

    def _init_files(self, root: Path, split_dir: Path, split: str, paths: list[str],
                    labels: Sequence[int] | np.ndarray, class_names: list[str], *, name: str,
                    cache: bool | None, cache_dir: str | Path | None, workers: int | None) -> None:
        """Take ``paths[i]`` with label ``labels[i]`` (files the caller has checked), then open or
        build the decode cache. A data set whose own list files name its images (the SeaM target
        sets, :mod:`jaxnets.data.finegrained`) calls this instead of scanning class folders;
        ``split_dir`` is then its folder (the cache key and error messages name it)."""
        self.root, self.split_dir = root, split_dir
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names
        self.num_classes = len(self.class_names)
        self.name = name
        self.split = split
        self.cache_key: str | None = None  # set when the cache is used (it reads every file)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.workers = workers or min(16, (os.cpu_count() or 1) + 2)
        self._array: np.ndarray | None = None
        self.image_shape = None
        self.in_memory = False
        self.cache_path: Path | None = None
        if cache is not False:
            self._open_or_build_cache(force=bool(cache))

    # -- bad files ---------------------------------------------------------------------------

    def _unreadable(self, failures: list[tuple[int, str]]) -> DataError:
        """The one error for files that are not images: the first (in dataset order), the count."""
        failures = sorted(failures)
        first, reason = failures[0]
        also = f"; also {self.paths[failures[1][0]]}" if len(failures) > 1 else ""
        also += " and others" if len(failures) > 2 else ""
        return DataError(f"{self.split_dir}: {len(failures)} of {len(self.paths)} image files "
                         f"cannot be read — {self.paths[first]}: {reason}{also}; remove or "
                         "replace them")

    def _map_chunks(self, work: Any) -> list[Any]:
        """``work(start, stop)`` over chunks of the file list on the worker threads, in order."""
        n = len(self.paths)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="jaxnets-scan") as pool:
            return list(pool.map(lambda s: work(s, min(n, s + _CHUNK)), range(0, n, _CHUNK)))

    def _header_failures(self) -> list[tuple[int, str]]:
        """Every file whose header Pillow cannot read (a probe failed: count them all)."""
        def work(start: int, stop: int) -> list[tuple[int, str]]:
            bad = []
            for i in range(start, stop):
                try:
                    _probe_size(self.paths[i])
                except Exception as exc:  # any Pillow failure means: not a usable image
                    bad.append((i, _failure_reason(self.paths[i], exc)))
            return bad

        return [f for chunk in self._map_chunks(work) for f in chunk]

    # -- cache -------------------------------------------------------------------------------

    def _content_key(self) -> str:
        """Hash of the resolved split folder and each file's relative name, size and bytes."""
        def work(start: int, stop: int) -> list[bytes | tuple[int, str]]:
            out: list[bytes | tuple[int, str]] = []
            for i in range(start, stop):
                try:
                    with open(self.paths[i], "rb") as f:
                        out.append(hashlib.file_digest(f, "sha256").digest())
                except OSError as exc:
                    out.append((i, f"unreadable ({exc.strerror or exc})"))
            return out

        digests = [d for chunk in self._map_chunks(work) for d in chunk]
        failures = [d for d in digests if isinstance(d, tuple)]
        if failures:
            raise self._unreadable(failures)
        h = hashlib.sha256(f"{_CACHE_VERSION}\0{self.split_dir.resolve()}\0".encode())
        for path, label, digest in zip(self.paths, self.labels, digests, strict=True):
            rel = f"{self.class_names[label]}/{os.path.basename(path)}"
            h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            h.update(digest)  # type: ignore[arg-type]
        return h.hexdigest()[:32]

    def _cache_file(self) -> Path:
        assert self.cache_key is not None
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)[:40]
        return self.cache_dir / f"{safe}-{self.split}-{self.cache_key}.npy"

    def _use_array(self, array: np.ndarray) -> None:
        self._array = array
        self.image_shape = tuple(int(s) for s in array.shape[1:])  # type: ignore[assignment]
        self.in_memory = True

    def _open_or_build_cache(self, force: bool) -> None:
        shape = self._uniform_shape()
        if shape is None:
            if force:
                raise DataError(f"{self.split_dir}: images differ in size, so they cannot be "
                                "cached as one array")
            return
        nbytes = len(self.paths) * int(np.prod(shape))
        if nbytes > MAX_CACHE_BYTES and not force:
            return
        self.cache_key = self._content_key()
        path = self._cache_file()
        cached = self._load_cache(path, shape)
        if cached is not None:
            self.cache_path = path
            self._use_array(cached)
            return
        self._build_cache(path, shape)

    def _load_cache(self, path: Path, shape: tuple[int, int, int]) -> np.ndarray | None:
        """The cached array, or None when there is none or it is unusable (then rebuilt)."""
        if not path.exists():
            return None
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception:  # empty, truncated, a bad header, not .npy at all: decode again
            arr = None
        if (isinstance(arr, np.ndarray) and arr.dtype == np.uint8
                and arr.shape == (len(self.paths), *shape)):
            return arr
        from jaxnets.ui import warn

        warn(f"the decode cache {path} is unreadable or does not fit; decoding again")
        return None

    def _uniform_shape(self) -> tuple[int, int, int] | None:
        """(H, W, 3) when a sample of headers agrees on one size (the decode verifies all)."""
        n = len(self.paths)
        picks = sorted(set(np.linspace(0, n - 1, min(n, _PROBE_COUNT)).astype(int).tolist()))
        sizes = set()
        for i in picks:
            try:
                sizes.add(_probe_size(self.paths[i]))
            except Exception as exc:  # a bad file: find and count all of them for the error
                failures = self._header_failures() or [(i, _failure_reason(self.paths[i], exc))]
                raise self._unreadable(failures) from None
        if len(sizes) != 1:
            return None
        hh, ww = sizes.pop()
        return hh, ww, 3

    def _build_cache(self, path: Path, shape: tuple[int, int, int]) -> None:
        n = len(self.paths)
        target: np.ndarray
        tmp: Path | None = None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=self.cache_dir)
            os.close(fd)
            tmp = Path(name)
            target = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, *shape))
        except OSError as exc:
            # No writable cache dir: decode into memory this time.
            from jaxnets.ui import warn

            warn(f"cannot write the decode cache in {self.cache_dir} ({exc}); decoding into memory")
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            tmp = None
            target = np.empty((n, *shape), np.uint8)
        try:
            ok = self._decode_all(target, shape)
        except BaseException:
            if tmp is not None:
                del target
                tmp.unlink(missing_ok=True)
            raise
        if not ok:  # a file disagreed with the probed size: no cache, per-image decoding
            if tmp is not None:
                del target
                tmp.unlink(missing_ok=True)
            return
        if tmp is None:
            self._use_array(target)
            return
        target.flush()
        del target
        try:
            os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
        except OSError as exc:  # e.g. a folder sits at the cache's name: use it for this run only
            from jaxnets.ui import warn

            warn(f"cannot store the decode cache at {path} ({exc.strerror or exc}); keeping it in "
                 "memory for this run")
            self._use_array(np.array(np.load(tmp)))
            tmp.unlink(missing_ok=True)
            return
        self.cache_path = path
        self._use_array(np.load(path, mmap_mode="r"))

    def _decode_all(self, out: np.ndarray, shape: tuple[int, int, int]) -> bool:
        """Decode every file into ``out``; False as soon as one has another size. Files that do
        not decode are all collected, then refused in one error."""
        n = len(self.paths)
        starts = list(range(0, n, _CHUNK))
        mismatch: list[str] = []
        failures: list[tuple[int, str]] = []

        def work(start: int) -> int:
            stop = min(n, start + _CHUNK)
            for i in range(start, stop):
                if mismatch:
                    break
                try:
                    img = _decode_image(self.paths[i])
                except Exception as exc:  # any Pillow failure means: not a usable image
                    failures.append((i, _failure_reason(self.paths[i], exc)))
                    continue
                if img.shape != shape:
                    mismatch.append(self.paths[i])
                    break
                out[i] = img
            return stop - start

        t0 = time.perf_counter()
        bar: Any = None
        task: Any = None
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="jaxnets-decode")
        try:
            futures = [pool.submit(work, s) for s in starts]
            done = 0
            for fut in as_completed(futures):
                done += fut.result()
                if (bar is None and done < n and time.perf_counter() - t0 > 1.0
                        and _show_progress()):
                    bar, task = _start_bar(f"decoding {self.split_dir} (once; then cached)", n)
                if bar is not None:
                    bar.update(task, completed=done)
                if mismatch:
                    break
        except Exception as exc:
            raise DataError(f"cannot decode images under {self.split_dir}: "
                            f"{type(exc).__name__}: {exc}") from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.stop()
        if failures:
            raise self._unreadable(failures)
        return not mismatch

    # -- access ------------------------------------------------------------------------------

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        label = int(self.labels[i])
        if self._array is not None:
            return np.asarray(self._array[i]), label
        try:
            return _decode_image(self.paths[i]), label
        except Exception as exc:
            raise DataError(f"cannot decode {self.paths[i]}: "
                            f"{_failure_reason(self.paths[i], exc)}") from None

    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        if self._array is not None:
            return np.asarray(self._array[np.asarray(idx, dtype=np.int64)])
        return super().get_batch(idx)


def _show_progress() -> bool:
    from jaxnets.ui import show_progress

    return show_progress()


def _start_bar(description: str, total: int) -> tuple[Any, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    bar.start()
    return bar, bar.add_task(description, total=total)


# --------------------------------------------------------------------------------------------
# scikit-learn digits


DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


def digits_split(labels: np.ndarray, test_size: int = DIGITS_TEST_SIZE,
                 seed: int = DIGITS_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified train/test split of the digits (sorted index arrays).

    Each class gives ``test_size * n_c / N`` test images, rounded by largest remainder (ties
    to the smaller class id) so the total is exactly ``test_size``; which images is a
    ``np.random.default_rng(seed)`` permutation within the class, classes in increasing order.
    Implemented here rather than with scikit-learn's splitter so it cannot change with its
    version.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * test_size / counts.sum()
    quota = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda k: (-(exact[k] - quota[k]), k))
    for k in order[: test_size - int(quota.sum())]:
        quota[k] += 1
    rng = np.random.default_rng(seed)
    test = []
    for c, q in zip(classes, quota, strict=True):
        members = np.flatnonzero(labels == c)
        test.append(members[rng.permutation(len(members))[:q]])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


class DigitsSource(ArraySource):
    """scikit-learn's digits: 1,797 8×8 grayscale images, pixel values 0..16.

    Pixels become uint8 as ``min(16 · v, 255)`` with shape (8, 8, 1). Splits: 'train' 1,437 /
    'test' 360 images from :func:`digits_split` (stratified, seed 0), each in dataset order.
    """

    def __init__(self, split: str = "test"):
        _check_split(split, ("train", "test"), "digits")
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.clip(np.asarray(bunch.images) * 16, 0, 255).astype(np.uint8)[..., None]
        labels = np.asarray(bunch.target, dtype=np.int64)
        train_idx, test_idx = digits_split(labels)
        idx = train_idx if split == "train" else test_idx
        super().__init__(images[idx], labels[idx], name="digits", split=split,
                         class_names=[str(i) for i in range(10)])
        self.original_indices = idx


# --------------------------------------------------------------------------------------------
# TensorFlow Datasets


_TFDS_HELP = ("pip install 'jaxnets[tfds]' and prepare it once with `tfds build {name}` (needs "
              "the network), or point at a local copy with cifar10:DIR / imagefolder:DIR")


class TfdsSource(Source):
    """``tfds.data_source(name, split=…)``: random access, no TensorFlow at run time.

    'val' maps to tfds's 'validation'. The image and label features are ``image`` and ``label``.
    """

    def __init__(self, name: str, split: str = "test", *, data_dir: str | None = None):
        try:
            import tensorflow_datasets as tfds
        except ImportError:
            raise DataError(f"tfds:{name} needs tensorflow-datasets: "
                            + _TFDS_HELP.format(name=name)) from None
        tfds_split = {"val": "validation"}.get(split, split)
        try:
            ds = tfds.data_source(name, split=tfds_split, data_dir=data_dir)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise DataError(f"tfds:{name} split '{tfds_split}' is not available ({first}): "
                            + _TFDS_HELP.format(name=name)) from None
        self._tfds = tfds
        self._ds = ds
        self._data_dir = data_dir
        self.name, self.split = name, split
        self._tfds_split = tfds_split
        features = ds.dataset_info.features
        label = features["label"]
        self.class_names = list(getattr(label, "names", None) or [])
        self.num_classes = int(getattr(label, "num_classes", len(self.class_names)))
        if not self.class_names:
            self.class_names = [str(i) for i in range(self.num_classes)]
        shape = tuple(features["image"].shape)
        self.image_shape = shape if all(s is not None for s in shape) else None  # type: ignore
        self._labels: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:  # type: ignore[override]
        if self._labels is None:
            # A second reader that skips image decoding: labels of the whole split are cheap.
            skip = self._tfds.data_source(
                self.name, split=self._tfds_split, data_dir=self._data_dir,
                decoders={"image": self._tfds.decode.SkipDecoding()})
            n = len(skip)
            out = np.empty(n, dtype=np.int64)
            for start in range(0, n, 4096):
                keys = list(range(start, min(n, start + 4096)))
                out[start:start + len(keys)] = [int(ex["label"]) for ex in _get_many(skip, keys)]
            self._labels = out
        return self._labels

    def __len__(self) -> int:
        return len(self._ds)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        ex = self._ds[int(i)]
        return self._image(ex), int(ex["label"])

    def get_images(self, idx: np.ndarray) -> list[np.ndarray]:
        keys = [int(i) for i in np.asarray(idx).reshape(-1)]
        return [self._image(ex) for ex in _get_many(self._ds, keys)]

    @staticmethod
    def _image(ex: Any) -> np.ndarray:
        img = np.asarray(ex["image"], dtype=np.uint8)
        return img[..., None] if img.ndim == 2 else img


def _get_many(ds: Any, keys: list[int]) -> list[Any]:
    """Batched random access where the data source has it (array_record reads in parallel)."""
    if hasattr(ds, "__getitems__"):
        return list(ds.__getitems__(keys))
    return [ds[k] for k in keys]


# --------------------------------------------------------------------------------------------
# Views


class Subset(Source):
    """A view of ``source`` at ``indices`` (dataset order kept as given).

    With ``classes`` and ``relabel=True`` the kept classes become 0..K-1 in the order given
    (``class_names`` follows); otherwise the original class ids are kept. ``base_indices`` are
    the positions in ``source``.
    """

    def __init__(self, source: Source, indices: Sequence[int] | np.ndarray, *,
                 classes: Sequence[int] | None = None, relabel: bool = False):
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(source)
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise DataError(f"subset index out of range for {len(source)} images")
        self.source = source
        self.base_indices = np.where(idx < 0, idx + n, idx)
        self.name, self.split, self.spec = source.name, source.split, source.spec
        self.image_shape, self.in_memory = source.image_shape, source.in_memory
        self.classes = list(classes) if classes is not None else None
        labels = source.labels[self.base_indices]
        self.label_map: np.ndarray | None = None
        if relabel:
            if self.classes is None:
                raise ValueError("relabel=True needs classes")
            lut = np.full(source.num_classes, -1, dtype=np.int64)
            lut[np.asarray(self.classes)] = np.arange(len(self.classes))
            self.label_map = lut
            labels = lut[labels]
            if len(labels) and labels.min() < 0:
                raise DataError("relabelled subset contains images outside the kept classes")
            self.class_names = [source.class_names[c] for c in self.classes]
            self.num_classes = len(self.classes)
        else:
            self.class_names, self.num_classes = source.class_names, source.num_classes
        self.labels = labels

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        img, _ = self.source[int(self.base_indices[i])]
        return img, int(self.labels[i])

    def get_images(self, idx: np.ndarray) -> list[np.ndarray]:
        return self.source.get_images(self.base_indices[np.asarray(idx, dtype=np.int64)])

    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        return self.source.get_batch(self.base_indices[np.asarray(idx, dtype=np.int64)])

    def describe(self) -> str:
        parts = []
        if self.classes is not None:
            ids = ",".join(map(str, self.classes))
            parts.append(f"classes {ids}" + (f" relabelled 0..{len(self.classes) - 1}"
                                             if self.label_map is not None
                                             else " (original ids kept)"))
        if len(self) != len(self.source):
            parts.append(f"{len(self)} of {len(self.source)} images")
        return self.source.describe() + (f" — subset: {'; '.join(parts)}" if parts else "")

