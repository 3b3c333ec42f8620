"""Data sources and data specs: CIFAR binary/pickles, image folders (+ decode cache), digits."""

from __future__ import annotations

import os
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxnets.data import sources
from jaxnets.data.loader import Loader
from jaxnets.data.sources import (
    CIFAR10_CLASSES,
    CifarBinarySource,
    CifarPythonSource,
    DigitsSource,
    ImageFolderSource,
    Subset,
    digits_split,
    load_data_pickle,
)
from jaxnets.data.spec import VALID_FORMS, open_source, parse_data_spec
from jaxnets.data.transforms import imagenet_eval
from jaxnets.errors import DataError

# The official CIFAR-10 test set starts cat, ship, ship, airplane, frog, frog, automobile, ...
FIRST_TEST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own decode cache (never the user's ~/.cache)."""
    root = tmp_path / "jaxnets-cache"
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(root))
    return root / "decoded"


def _records(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint8).reshape(-1, 3073)


def _explicit_decode(record: np.ndarray) -> np.ndarray:
    """One CIFAR record's pixels, decoded the slow, obvious way."""
    img = np.zeros((32, 32, 3), np.uint8)
    for c in range(3):
        for y in range(32):
            for x in range(32):
                img[y, x, c] = record[1 + c * 1024 + y * 32 + x]
    return img


# ---------------------------------------------------------------------------------------------
# CIFAR binary (the exact shared subset)


def test_cifar_binary_test_split(cifar_exact: Path) -> None:
    src = CifarBinarySource(cifar_exact, "test")
    raw = _records(cifar_exact / "test_batch.bin")
    assert len(src) == 846 == len(raw)
    assert src.image_shape == (32, 32, 3) and src.num_classes == 10
    assert src.class_names == CIFAR10_CLASSES
    assert src.labels.dtype == np.int64
    assert src.labels[:10].tolist() == FIRST_TEST_LABELS
    np.testing.assert_array_equal(src.labels, raw[:, 0])
    for i in (0, 417, 845):
        img, label = src[i]
        assert img.dtype == np.uint8 and label == raw[i, 0]
        np.testing.assert_array_equal(img, _explicit_decode(raw[i]))
    batch = src.get_batch(np.array([845, 0, 3]))
    assert batch.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(batch[1], src[0][0])
    # A spot pixel: row 7, column 19, green channel of image 3.
    assert src[3][0][7, 19, 1] == raw[3, 1 + 1024 + 7 * 32 + 19]


def test_cifar_binary_train_concatenates_batches(cifar_exact: Path) -> None:
    src = CifarBinarySource(cifar_exact, "train")
    assert len(src) == 4660
    for k in range(5):
        raw = _records(cifar_exact / f"data_batch_{k + 1}.bin")
        assert len(raw) == 932
        np.testing.assert_array_equal(src.labels[932 * k:932 * (k + 1)], raw[:, 0])
        np.testing.assert_array_equal(src[932 * k][0], _explicit_decode(raw[0]))


def test_cifar_spec_accepts_folder_or_parent(cifar_exact: Path) -> None:
    a = open_source(f"cifar10:{cifar_exact}")
    b = open_source(f"cifar10:{cifar_exact.parent}")
    assert isinstance(a, CifarBinarySource) and len(a) == len(b) == 846
    assert a.spec == f"cifar10:{cifar_exact}"
    with pytest.raises(DataError, match="val-split"):
        open_source(f"cifar10:{cifar_exact}", "val")


def _write_cifar10_bin(folder: Path, counts: dict[str, int], seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in counts.items():
        rec = rng.integers(0, 256, size=(n, 3073), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, size=n)
        rec.tofile(folder / name)
        out[name] = rec
    return out


def test_cifar_binary_errors_name_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    _write_cifar10_bin(folder, {"test_batch.bin": 3})
    assert len(open_source(f"cifar10:{tmp_path}")) == 3
    with pytest.raises(DataError, match="data_batch_1.bin"):
        open_source(f"cifar10:{folder}", "train")
    with (folder / "test_batch.bin").open("ab") as f:
        f.write(b"\0" * 5)  # truncated record
    with pytest.raises(DataError, match="whole number"):
        CifarBinarySource(folder, "test")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=str(empty)):
        open_source(f"cifar10:{empty}")


def test_cifar100_binary(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    rec = rng.integers(0, 256, size=(6, 3074), dtype=np.uint8)
    rec[:, 0] = rng.integers(0, 20, 6)
    rec[:, 1] = rng.integers(0, 100, 6)
    rec.tofile(folder / "test.bin")
    src = open_source(f"cifar100:{tmp_path}")
    assert isinstance(src, CifarBinarySource) and src.num_classes == 100 and len(src) == 6
    np.testing.assert_array_equal(src.labels, rec[:, 1])
    np.testing.assert_array_equal(src.coarse_labels, rec[:, 0])
    np.testing.assert_array_equal(src[2][0], rec[2, 2:].reshape(3, 32, 32).transpose(1, 2, 0))


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles


def _write_cifar10_py(folder: Path, protocol: int, n: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(protocol)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).tolist()
        with (folder / name).open("wb") as f:
            pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data,
                         b"filenames": [b"a.png"] * n}, f, protocol=protocol)
        arrays[name] = (data, labels)
    with (folder / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": [n.encode() for n in CIFAR10_CLASSES],
                     b"num_vis": 3072}, f, protocol=protocol)
    return arrays


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_python_pickles_roundtrip(tmp_path: Path, protocol: int) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    arrays = _write_cifar10_py(folder, protocol)
    src = open_source(f"cifar10-py:{tmp_path}")
    assert isinstance(src, CifarPythonSource)
    data, labels = arrays["test_batch"]
    assert src.labels.tolist() == labels and src.class_names == CIFAR10_CLASSES
    np.testing.assert_array_equal(src.get_batch(np.arange(5)),
                                  data.reshape(5, 3, 32, 32).transpose(0, 2, 3, 1))
    train = CifarPythonSource(folder, "train")
    assert len(train) == 25
    assert train.labels[5:10].tolist() == arrays["data_batch_2"][1]
    # cifar10:DIR finds the pickled format too when there are no binary batches.
    assert isinstance(open_source(f"cifar10:{folder}"), CifarPythonSource)


def test_cifar100_python(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    with (folder / "test").open("wb") as f:
        pickle.dump({b"data": data, b"fine_labels": [99, 7], b"coarse_labels": [1, 2]}, f,
                    protocol=2)
    src = open_source(f"cifar100-py:{tmp_path}")
    assert src.num_classes == 100 and src.labels.tolist() == [99, 7]


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


def test_pickle_with_forbidden_global_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = tmp_path / "pwned"
    with (folder / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [0],
                     b"x": _Evil(marker)}, f, protocol=2)
    with pytest.raises(DataError, match=r"refusing to load.*mkdir") as info:
        open_source(f"cifar10-py:{folder}")
    assert "\n" not in str(info.value)
    assert not marker.exists()
    # A class that is not an ndarray (e.g. collections.Counter) is refused as well.
    import collections

    (tmp_path / "c.pkl").write_bytes(pickle.dumps(collections.Counter("ab"), protocol=2))
    with pytest.raises(DataError, match="collections.Counter"):
        load_data_pickle(tmp_path / "c.pkl")


# ---------------------------------------------------------------------------------------------
# Image folders


def _make_folder(root: Path, split: str = "test", size: tuple[int, int] = (12, 10),
                 seed: int = 0) -> dict[str, np.ndarray]:
    """3 classes (created out of order), PNG and JPEG; returns the PNG pixels by path."""
    rng = np.random.default_rng(seed)
    pngs = {}
    for cls, n in (("cat", 3), ("ant", 2), ("bee", 4)):
        d = root / split / cls
        d.mkdir(parents=True)
        for i in range(n):
            img = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            if i % 2:
                Image.fromarray(img).save(d / f"{i:02d}.jpg", quality=95)
            else:
                Image.fromarray(img).save(d / f"{i:02d}.png")
                pngs[str(d / f"{i:02d}.png")] = img
        (d / "notes.txt").write_text("not an image")
    return pngs


def test_image_folder_labels_and_cache(tmp_path: Path, _private_cache: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pngs = _make_folder(tmp_path / "ds")
    src = open_source(f"imagefolder:{tmp_path / 'ds'}")
    assert isinstance(src, ImageFolderSource)
    assert src.class_names == ["ant", "bee", "cat"]
    assert src.labels.tolist() == [0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert src.image_shape == (12, 10, 3) and src.in_memory
    assert src.cache_path is not None and src.cache_path.parent == _private_cache
    assert src.cache_path.is_file()
    for i, p in enumerate(src.paths):
        if p in pngs:
            np.testing.assert_array_equal(src[i][0], pngs[p])  # PNG is lossless
    first = src.get_batch(np.arange(len(src)))

    def no_decoding(path):
        raise AssertionError(f"decoded {path} although the cache exists")

    monkeypatch.setattr(sources, "_decode_image", no_decoding)
    again = open_source(f"imagefolder:{tmp_path / 'ds'}")
    assert again.cache_path == src.cache_path
    assert isinstance(again._array, np.memmap)
    np.testing.assert_array_equal(again.get_batch(np.arange(len(again))), first)
    # Touching a file keeps the key (it hashes contents, not times) ...
    target = Path(src.paths[0])
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert open_source(f"imagefolder:{tmp_path / 'ds'}").cache_path == src.cache_path
    # ... a changed byte changes it: the folder is decoded again (here: refused loudly).
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match="decoded"):
        open_source(f"imagefolder:{tmp_path / 'ds'}")


def test_image_folder_without_cache(tmp_path: Path, _private_cache: Path) -> None:
    _make_folder(tmp_path / "ds", "train")
    src = ImageFolderSource(tmp_path / "ds", "train", cache=False)
    assert src.image_shape is None and not src.in_memory and not _private_cache.exists()
    cached = ImageFolderSource(tmp_path / "ds", "train")
    np.testing.assert_array_equal(src.get_batch(np.arange(9)), cached.get_batch(np.arange(9)))
    with pytest.raises(DataError, match="no 'val' folder.*it has: train"):
        open_source(f"imagefolder:{tmp_path / 'ds'}", "val")


def test_imagenet_layout_varying_sizes(tmp_path: Path, _private_cache: Path) -> None:
    rng = np.random.default_rng(3)
    base = tmp_path / "imagenet" / "ILSVRC" / "Data" / "CLS-LOC"
    sizes = [(300, 400), (375, 500), (260, 260), (500, 333), (64, 80)]
    for split in ("train", "val"):
        for c, wnid in enumerate(("n01440764", "n01443537")):
            d = base / split / wnid
            d.mkdir(parents=True)
            for i, (h, w) in enumerate(sizes[c:c + 3]):
                img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                Image.fromarray(img).save(d / f"{wnid}_{i}.JPEG")
    src = open_source(f"imagefolder:{tmp_path / 'imagenet'}", "val")
    assert src.class_names == ["n01440764", "n01443537"] and len(src) == 6
    assert src.image_shape is None and not _private_cache.exists()
    with pytest.raises(DataError, match="differ in size"):
        src.get_batch(np.arange(3))
    loader = Loader(src, 4, shuffle=False, per_image=imagenet_eval, workers=2)
    batches = list(loader.epoch(0))
    assert [b.images.shape for b in batches] == [(4, 224, 224, 3)] * 2
    assert batches[1].mask.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(batches[0].images[1], imagenet_eval(src[1][0]))
    # A flat val folder (not yet sorted into classes) gets a helpful message.
    flat = tmp_path / "flat" / "val"
    flat.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(flat / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="one sub-folder per class"):
        open_source(f"imagefolder:{tmp_path / 'flat'}", "val")


@pytest.fixture(scope="session")
def jpeg_cifar_subset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 12 JPEG test images of each class, streamed out of the shared tarball."""
    archive = shared_data / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    root = tmp_path_factory.mktemp("cifar10-jpeg")
    wanted = {f"{i:04d}.jpg" for i in range(12)}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and parts[-3] == "test" and parts[-1] in wanted:
                dest = root / "test" / parts[-2] / parts[-1]
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(member).read())
    return root


def test_jpeg_cifar_folder_matches_exact_pixels(jpeg_cifar_subset: Path,
                                                cifar_exact: Path) -> None:
    src = open_source(f"imagefolder:{jpeg_cifar_subset}")
    assert len(src) == 120 and src.class_names == CIFAR10_CLASSES
    assert src.image_shape == (32, 32, 3) and src.cache_path is not None
    # test/<class>/NNNN.jpg is the NNNN-th image of that class in the official test order.
    exact = CifarBinarySource(cifar_exact, "test")
    seen: dict[int, int] = {}
    for i in range(10):
        label = int(exact.labels[i])
        k = seen.setdefault(label, 0)
        seen[label] += 1
        j = src[label * 12 + k][0].astype(int)
        assert np.abs(j - exact[i][0]).mean() < 15  # JPEG q75 error; unrelated images ≈ 60


# ---------------------------------------------------------------------------------------------
# Digits


def test_digits_split() -> None:
    train, test = DigitsSource("train"), DigitsSource("test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.image_shape == (8, 8, 1) and train.images.dtype == np.uint8
    assert test.images.max() == 255 and test.images.min() == 0
    assert not set(train.original_indices) & set(test.original_indices)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    i = int(test.original_indices[7])
    np.testing.assert_array_equal(test[7][0][..., 0],
                                  np.minimum(bunch.images[i] * 16, 255).astype(np.uint8))
    assert test[7][1] == bunch.target[i]
    # Stratified: every class's share of the test split is within one image of proportional.
    counts = np.bincount(bunch.target)
    expected = counts * 360 / counts.sum()
    assert np.all(np.abs(np.bincount(test.labels, minlength=10) - expected) < 1)
    # Deterministic.
    np.testing.assert_array_equal(DigitsSource("test").original_indices, test.original_indices)
    a, b = digits_split(bunch.target)
    np.testing.assert_array_equal(b, test.original_indices)
    with pytest.raises(DataError, match="no 'val' split"):
        open_source("digits", "val")


# ---------------------------------------------------------------------------------------------
# Specs, --limit, --classes


def test_parse_every_valid_form(tmp_path: Path) -> None:
    assert parse_data_spec("digits").kind == "digits"
    spec = parse_data_spec("tfds:cifar10")
    assert (spec.kind, spec.name) == ("tfds", "cifar10")
    for kind in ("cifar10", "cifar100", "cifar10-py", "cifar100-py", "imagefolder"):
        spec = parse_data_spec(f"{kind}:{tmp_path}")
        assert (spec.kind, spec.path) == (kind, tmp_path)
    assert len(VALID_FORMS) == 12  # + cub200, dogs120, flowers102, mit67, actions40


@pytest.mark.parametrize("text", ["foo", "cifar10:", "imagefolder:/nonexistent", "", "tfds:",
                                  "digits:x", "cifar11:/tmp"])
def test_bad_specs_give_one_line(text: str) -> None:
    with pytest.raises(DataError) as info:
        parse_data_spec(text)
    message = str(info.value)
    assert "\n" not in message and message
    if text in ("foo", "cifar10:"):
        assert "imagefolder:DIR" in message and "tfds:NAME" in message
    if "nonexistent" in text:
        assert "/nonexistent" in message


def test_bad_split() -> None:
    with pytest.raises(DataError, match="unknown split"):
        open_source("digits", "validation")


def test_limit_and_classes() -> None:
    full = open_source("digits", "test")
    first = open_source("digits", "test", limit=25)
    assert isinstance(first, Subset) and len(first) == 25
    np.testing.assert_array_equal(first.labels, full.labels[:25])
    np.testing.assert_array_equal(first.get_batch(np.arange(25)), full.images[:25])
    kept = open_source("digits", "test", classes=[7, 2])
    assert set(kept.labels.tolist()) == {2, 7} and kept.num_classes == 10
    assert len(kept) == int(np.isin(full.labels, [2, 7]).sum())
    both = open_source("digits", "test", classes=[7, 2], limit=5, relabel=True)
    assert both.num_classes == 2 and both.class_names == ["7", "2"]
    np.testing.assert_array_equal(both.labels, (full.labels[both.base_indices] == 2).astype(int))
    assert "relabelled" in both.describe()
    img, label = both[0]
    np.testing.assert_array_equal(img, full[int(both.base_indices[0])][0])
    with pytest.raises(DataError, match="0..9"):
        open_source("digits", classes=[10])
    with pytest.raises(DataError, match="--limit"):
        open_source("digits", limit=0)


def test_tfds_missing_tells_how_to_prepare(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import fails
    with pytest.raises(DataError) as info:
        open_source("tfds:cifar10")
    message = str(info.value)
    assert "tfds build cifar10" in message and "jaxnets[tfds]" in message
    assert "cifar10:DIR" in message and "\n" not in message
