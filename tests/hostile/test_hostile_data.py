"""Hostile data inputs through the real CLI (`jaxnets validate`): corrupt CIFAR batches, malicious
pickles, files that are not images, bad "Decomposing the Deep" index files, folders that are not
data sets. Each is refused with exit 2 and one ``error:`` line naming the file, no traceback, no
marker file, and neither the data nor an earlier run folder touched (tests/hostile_harness.py)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hostile_harness import TouchMarker, refuse
from PIL import Image

from jaxnets.data.spec import open_source

RECORD = 3073  # CIFAR-10 binary: 1 label byte + 3072 pixel bytes

# A case writes its hostile input under the folder it is given (and may reference the marker a
# malicious pickle would create); it returns the `validate` arguments, the fragments the error
# line must hold, and the input it wrote (kept byte-for-byte unchanged).
Case = Callable[[Path, Path], tuple[list[object], tuple[str, ...], Path]]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__.removeprefix("case_")] = function
    return function


def _records(labels: list[int], header: int = 1) -> bytes:
    """CIFAR binary records; with ``header=2`` (CIFAR-100) the coarse label is ``label % 20``."""
    rng = np.random.default_rng(0)
    rows = [bytes([lab % 20, lab][-header:]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes()
            for lab in labels]
    return b"".join(rows)


def _cifar_bin(root: Path, content: bytes, name: str = "test_batch.bin",
               folder: str = "cifar-10-batches-bin") -> Path:
    d = root / folder
    d.mkdir(parents=True)
    (d / name).write_bytes(content)
    return d


def _good_batch(n: int = 4) -> dict:
    rng = np.random.default_rng(0)
    return {b"batch_label": b"testing batch 1 of 1", b"labels": [i % 10 for i in range(n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def _cifar_py(root: Path, batch: object, *, meta: object | None = None, raw: bytes | None = None) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    (d / "test_batch").write_bytes(raw if raw is not None else pickle.dumps(batch, protocol=2))
    if meta is not None:
        (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return d


def _image_folder(root: Path, count: int = 3) -> Path:
    """DIR/test/{a,b}/N.png: tiny 8×8 RGB images."""
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        d = root / "ds" / "test" / cls
        d.mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root / "ds"


def _cifar_args(folder: Path, kind: str = "cifar10") -> list[object]:
    return ["digits_cnn", "--data", f"{kind}:{folder}"]


def _folder_args(folder: Path) -> list[object]:
    return ["digits_cnn", "--data", f"imagefolder:{folder}"]


def _index_args(path: Path) -> list[object]:
    # digits_cnn: 10 classes, 64 penultimate channels; digits are embedded, so only the index
    # file is hostile here.
    return ["digits_cnn", "--data", "digits", "--indices", path]


def _index_file(root: Path, content: object, name: str = "indices.json") -> Path:
    path = root / name
    path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return path


def _good_table(k: int = 3) -> dict[str, list[int]]:
    return {str(c): [(c + j) % 64 for j in range(k)] for c in range(10)}


# ---------------------------------------------------------------------------------------------
# CIFAR binary batches


@case
def case_cifar_bin_not_whole_records(tmp: Path, marker: Path):
    d = _cifar_bin(tmp, _records([1, 2]) + b"\0" * 5)
    return _cifar_args(d), ("test_batch.bin", "not a whole number of 3073-byte records"), d


@case
def case_cifar_bin_empty_file(tmp: Path, marker: Path):
    d = _cifar_bin(tmp, b"")
    return _cifar_args(d), ("test_batch.bin", "empty file"), d


@case
def case_cifar_bin_label_over_9(tmp: Path, marker: Path):
    d = _cifar_bin(tmp, _records([3, 10, 200]))
    return _cifar_args(d), ("test_batch.bin", "label 10 of record 1", "outside 0..9", "2 of 3"), d


@case
def case_cifar100_bin_label_over_99(tmp: Path, marker: Path):
    content = bytearray(_records([5, 7], header=2))
    content[3074 + 1] = 100  # the fine label of the second 3074-byte record
    d = _cifar_bin(tmp, bytes(content), "test.bin", "cifar-100-binary")
    return _cifar_args(d, "cifar100"), ("test.bin", "label 100", "outside 0..99"), d


@case
def case_cifar100_bin_cifar10_file(tmp: Path, marker: Path):
    d = _cifar_bin(tmp, _records([1, 2, 3]), "test.bin", "cifar-100-binary")  # 3073-byte records
    return _cifar_args(d, "cifar100"), ("test.bin", "3074-byte records"), d


# ---------------------------------------------------------------------------------------------
# CIFAR python pickles


@case
def case_cifar_py_malicious_value(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"labels"] = TouchMarker(marker)
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("refusing to load", "system", "test_batch"), d


@case
def case_cifar_py_malicious_whole_file(tmp: Path, marker: Path):
    d = _cifar_py(tmp, TouchMarker(marker))
    return _cifar_args(d, "cifar10-py"), ("refusing to load", "test_batch"), d


@case
def case_cifar_py_malicious_meta(tmp: Path, marker: Path):
    d = _cifar_py(tmp, _good_batch(), meta={b"label_names": TouchMarker(marker)})
    return _cifar_args(d), ("refusing to load", "batches.meta"), d


@case
def case_cifar_py_not_a_pickle(tmp: Path, marker: Path):
    d = _cifar_py(tmp, None, raw=b"this is a text file, not a pickle\n")
    return _cifar_args(d), ("test_batch", "cannot read pickle"), d


@case
def case_cifar_py_truncated_pickle(tmp: Path, marker: Path):
    whole = pickle.dumps(_good_batch(), protocol=2)
    d = _cifar_py(tmp, None, raw=whole[: len(whole) // 2])
    return _cifar_args(d), ("test_batch", "cannot read pickle"), d


@case
def case_cifar_py_not_a_dict(tmp: Path, marker: Path):
    d = _cifar_py(tmp, [1, 2, 3])
    return _cifar_args(d), ("test_batch", "not a cifar10 batch"), d


@case
def case_cifar_py_missing_labels(tmp: Path, marker: Path):
    batch = _good_batch()
    del batch[b"labels"]
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "expected a dict with 'data' and 'labels'"), d


@case
def case_cifar_py_wrong_shape(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"data"] = np.zeros((4, 1024), np.uint8)
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "(N, 3072) uint8", "(4, 1024)"), d


@case
def case_cifar_py_wrong_dtype(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"data"] = np.zeros((4, 3072), np.float32)
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "(N, 3072) uint8", "float32"), d


@case
def case_cifar_py_object_array(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"labels"] = np.array([0, "a", None, 1], dtype=object)
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "integer labels", "object"), d


@case
def case_cifar_py_text_labels(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"labels"] = ["cat", "dog", "cat", "dog"]
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "integer labels"), d


@case
def case_cifar_py_label_out_of_range(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"labels"] = [0, 1, 12, 3]
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "label 12 of record 2", "outside 0..9"), d


@case
def case_cifar_py_label_count(tmp: Path, marker: Path):
    batch = _good_batch()
    batch[b"labels"] = [0, 1]
    d = _cifar_py(tmp, batch)
    return _cifar_args(d), ("test_batch", "4 images but 2 labels"), d


# ---------------------------------------------------------------------------------------------
# Image folders


@case
def case_text_file_named_jpg(tmp: Path, marker: Path):
    d = _image_folder(tmp)
    (d / "test" / "b" / "notes.jpg").write_text("shopping list: milk, eggs\n")
    return _folder_args(d), ("notes.jpg", "1 of 7 image files cannot be read", "not an image"), d


@case
def case_truncated_jpeg(tmp: Path, marker: Path):
    d = _image_folder(tmp)
    rng = np.random.default_rng(1)
    jpg = d / "test" / "a" / "cut.jpg"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(jpg, quality=95)
    jpg.write_bytes(jpg.read_bytes()[:-60])
    return _folder_args(d), ("cut.jpg", "cannot be read"), d


@case
def case_zero_byte_image(tmp: Path, marker: Path):
    d = _image_folder(tmp)
    (d / "test" / "a" / "0.png").write_bytes(b"")
    (d / "test" / "b" / "2.png").write_bytes(b"")
    return _folder_args(d), ("0.png", "empty file", "2 of 6 image files"), d


@case
def case_folder_named_png_only(tmp: Path, marker: Path):
    d = _image_folder(tmp)
    (d / "test" / "c" / "x.png").mkdir(parents=True)  # class c holds no file at all
    return _folder_args(d), ("class folder without image files", "(c)"), d


@case
def case_float_tiff(tmp: Path, marker: Path):
    d = _image_folder(tmp)
    Image.fromarray(np.zeros((8, 8), np.float32)).save(d / "test" / "a" / "f.tif")
    return _folder_args(d), ("f.tif", "floating-point"), d


@case
def case_data_folder_is_a_file(tmp: Path, marker: Path):
    f = tmp / "data.tar"
    f.write_bytes(b"not a folder")
    return _folder_args(f), ("not a directory", "data.tar"), f


@case
def case_cifar_folder_is_a_file(tmp: Path, marker: Path):
    f = tmp / "cifar-10-batches-bin"
    f.write_bytes(_records([1]))
    return _cifar_args(f), ("not a directory", "cifar-10-batches-bin"), f


@case
def case_empty_class_folders(tmp: Path, marker: Path):
    d = tmp / "ds"
    for cls in ("a", "b"):
        (d / "test" / cls).mkdir(parents=True)
        (d / "test" / cls / "README.txt").write_text("images go here")
    return _folder_args(d), ("no image files", "test"), d


@case
def case_one_empty_class_folder(tmp: Path, marker: Path):
    d = _image_folder(tmp)
    (d / "test" / "aa").mkdir()
    return _folder_args(d), ("1 class folder without image files", "(aa)"), d


@case
def case_no_class_folders(tmp: Path, marker: Path):
    d = tmp / "ds"
    (d / "test").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(d / "test" / "loose.png")
    return _folder_args(d), ("has no class sub-folders", "one sub-folder per class"), d


# ---------------------------------------------------------------------------------------------
# "Decomposing the Deep" index files (--indices)


@case
def case_index_not_json(tmp: Path, marker: Path):
    p = _index_file(tmp, b'{"0": [1, 2,')
    return _index_args(p), ("indices.json", "not valid JSON"), p


@case
def case_index_not_utf8(tmp: Path, marker: Path):
    p = _index_file(tmp, b'{"0": [1, 2]}\xff\xfe')
    return _index_args(p), ("indices.json", "not valid JSON"), p


@case
def case_index_top_level_list(tmp: Path, marker: Path):
    p = _index_file(tmp, [[1, 2, 3]] * 10)
    return _index_args(p), ("indices.json", "expected a JSON object"), p


@case
def case_index_float_id(tmp: Path, marker: Path):
    table = _good_table()
    table["4"][1] = 2.5
    p = _index_file(tmp, table)
    return _index_args(p), ("indices.json", "class 4 holds 2.5, not an integer channel id"), p


@case
def case_index_negative_id(tmp: Path, marker: Path):
    table = _good_table()
    table["2"][0] = -3
    p = _index_file(tmp, table)
    return _index_args(p), ("indices.json", "negative channel id -3"), p


@case
def case_index_out_of_range(tmp: Path, marker: Path):
    table = _good_table()
    table["7"][2] = 64
    p = _index_file(tmp, table)
    return _index_args(p), ("indices.json", "channel id 64 (class 7) is out of range", "64 channels"), p


@case
def case_index_astronomic_id(tmp: Path, marker: Path):
    table = _good_table()
    table["1"][0] = 2**70
    p = _index_file(tmp, table)
    return _index_args(p), ("indices.json", "out of range"), p


@case
def case_index_too_many_digits(tmp: Path, marker: Path):
    p = _index_file(tmp, b'{"0": [' + b"9" * 5000 + b"]}")
    return _index_args(p), ("indices.json", "not valid JSON"), p


@case
def case_index_deep_nesting(tmp: Path, marker: Path):
    p = _index_file(tmp, b'{"0": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    return _index_args(p), ("indices.json", "not valid JSON"), p


@case
def case_index_wrong_class_count(tmp: Path, marker: Path):
    p = _index_file(tmp, {str(c): [c, c + 1] for c in range(3)})
    return _index_args(p), ("indices.json", "has 3 classes but the model has 10"), p


@case
def case_index_duplicate_id(tmp: Path, marker: Path):
    table = _good_table()
    table["5"] = [9, 9, 10]
    p = _index_file(tmp, table)
    return _index_args(p), ("indices.json", "class 5 lists channel 9 more than once"), p


@case
def case_index_repeated_class_key(tmp: Path, marker: Path):
    body = ", ".join(f'"{c}": [{c}, {c + 1}]' for c in range(10))
    p = _index_file(tmp, ("{" + body + ', "3": [40, 41]}').encode())
    return _index_args(p), ("indices.json", "class key '3' appears twice"), p


@case
def case_index_unequal_rows(tmp: Path, marker: Path):
    table = _good_table()
    table["8"] = [1]
    p = _index_file(tmp, table)
    return _index_args(p), ("indices.json", "unequal lengths"), p


@case
def case_index_huge_file(tmp: Path, marker: Path):
    p = tmp / "indices.json"
    with p.open("wb") as f:
        f.truncate(65 * 2**20)  # sparse: big to the reader, nothing on the disk
    return _index_args(p), ("indices.json", "too big for an index file"), p


@case
def case_index_is_a_folder(tmp: Path, marker: Path):
    p = tmp / "indices.json"
    p.mkdir()
    return _index_args(p), ("indices.json", "is a folder"), p


@case
def case_index_missing(tmp: Path, marker: Path):
    return _index_args(tmp / "nope.json"), ("index file not found", "nope.json"), tmp / "nope.json"


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private jaxnets cache for the module (never the user's ~/.cache). Shared, because the
    XLA compilation cache lives there too: a new one per case would recompile the model each time."""
    return tmp_path_factory.mktemp("jaxnets-cache")


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> tuple[Path, Path]:
    """(a folder for the hostile input, a finished earlier run holding results.json)."""
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(shared_cache))
    old_run = tmp_path / "runs" / "old"
    old_run.mkdir(parents=True)
    (old_run / "results.json").write_text('{"schema": "jaxnets.validate/1", "top1": 0.5}\n')
    (old_run / "config.yaml").write_text("model: digits_cnn\n")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    return inputs, old_run


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_data_is_refused(name: str, workspace: tuple[Path, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    inputs, old_run = workspace
    marker = tmp_path / "MARKER"
    args, fragments, hostile = CASES[name](inputs, marker)
    refuse(["validate", *args, "--out", tmp_path / "runs" / "new"], *fragments,
           protect=[old_run, hostile, inputs], marker=marker, capsys=capsys, monkeypatch=monkeypatch)


def test_the_well_formed_inputs_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases above break one thing each: their well-formed versions open fine."""
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(tmp_path / "cache"))
    binary = _cifar_bin(tmp_path / "bin", _records([1, 2, 9]))
    assert open_source(f"cifar10:{binary}").labels.tolist() == [1, 2, 9]
    binary100 = _cifar_bin(tmp_path / "bin100", _records([99, 0], header=2), "test.bin",
                           "cifar-100-binary")
    assert open_source(f"cifar100:{binary100}").labels.tolist() == [99, 0]
    python = _cifar_py(tmp_path / "py", _good_batch(), meta={b"label_names": [b"c%d" % i for i in range(10)]})
    src = open_source(f"cifar10:{python}")
    assert src.labels.tolist() == [0, 1, 2, 3] and src.class_names[0] == "c0"
    folder = _image_folder(tmp_path / "img")
    assert len(open_source(f"imagefolder:{folder}")) == 6
    from jaxnets.methods.decompose.indices import load_indices

    table = load_indices(_index_file(tmp_path, _good_table()), num_classes=10, num_features=64)
    assert table.shape == (10, 3)
