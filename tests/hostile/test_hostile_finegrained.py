"""Hostile list and split files of SeaM's five target data sets through the real CLI
(`jaxnets validate digits_cnn --data cub200:DIR`, the test split): an entry that leaves the data set
folder (``..``, an absolute path), a missing image, a malformed line, an out-of-range label or id,
a .mat file without the expected variable or not a .mat at all. Each is refused with exit 2 and one
``error:`` line naming the list file and line (or .mat entry), nothing written, the data untouched
(tests/hostile_harness.py). The layouts are the exact official ones (tests/data/finegrained_layouts.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data.finegrained_layouts import (
    WRITERS,
    write_actions40,
    write_cub200,
    write_dogs120,
    write_flowers102,
    write_mit67,
)
from hostile_harness import refuse
from scipy.io import loadmat, savemat

from jaxnets.data.spec import open_source

# A case writes a data set under the folder it is given, breaks one thing and returns the data
# spec and the fragments the error line must hold.
Case = Callable[[Path], tuple[str, tuple[str, ...]]]
CASES: dict[str, Case] = {}


def case(function: Case) -> Case:
    CASES[function.__name__.removeprefix("case_")] = function
    return function


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _rewrite_mat(path: Path, **changes: object) -> None:
    """Rewrite a .mat file with some variables replaced (a value of None drops the variable)."""
    variables = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    for key, value in changes.items():
        if value is None:
            variables.pop(key)
        else:
            variables[key] = value
    savemat(path, variables)


# --- CUB-200-2011 (id 2 is the first test image) ------------------------------------------------


@case
def case_cub_entry_with_dotdot(tmp: Path):
    root = write_cub200(tmp).root
    _replace_line(root / "images.txt", 2, "2 ../../outside/secret.jpg")
    return f"cub200:{root}", ("images.txt:2", "contains '..'")


@case
def case_cub_absolute_entry(tmp: Path):
    root = write_cub200(tmp).root
    _replace_line(root / "images.txt", 2, "2 /etc/passwd")
    return f"cub200:{root}", ("images.txt:2", "is absolute")


@case
def case_cub_missing_image(tmp: Path):
    layout = write_cub200(tmp)
    (layout.root / layout.test[1][0]).unlink()  # image id 6
    return f"cub200:{layout.root}", ("images.txt:6", "not found", "1 of 3 listed images are missing")


@case
def case_cub_malformed_split_line(tmp: Path):
    root = write_cub200(tmp).root
    _replace_line(root / "train_test_split.txt", 5, "5")
    return f"cub200:{root}", ("train_test_split.txt:5", "malformed line", "<image id> <is training image>")


@case
def case_cub_non_integer_id(tmp: Path):
    root = write_cub200(tmp).root
    _replace_line(root / "image_class_labels.txt", 3, "three 1")
    return f"cub200:{root}", ("image_class_labels.txt:3", "not an integer")


@case
def case_cub_label_out_of_range(tmp: Path):
    root = write_cub200(tmp).root
    _replace_line(root / "image_class_labels.txt", 2, "2 4")
    return f"cub200:{root}", ("image_class_labels.txt:2", "class id 4 is outside 1..3")


@case
def case_cub_split_names_unknown_image(tmp: Path):
    root = write_cub200(tmp).root
    with (root / "train_test_split.txt").open("a") as f:
        f.write("13 0\n")
    return f"cub200:{root}", ("train_test_split.txt:13", "image id 13 has no line in images.txt")


@case
def case_cub_repeated_id(tmp: Path):
    root = write_cub200(tmp).root
    _replace_line(root / "images.txt", 4, "2 002.Laysan_Albatross/x.jpg")
    return f"cub200:{root}", ("images.txt:4", "image id 2 is listed twice")


@case
def case_cub_list_not_utf8(tmp: Path):
    root = write_cub200(tmp).root
    (root / "classes.txt").write_bytes(b"1 \xff\xfe\n")
    return f"cub200:{root}", ("classes.txt", "not UTF-8 text")


@case
def case_cub_folder_without_lists(tmp: Path):
    root = write_cub200(tmp).root
    (root / "images.txt").unlink()
    return f"cub200:{root}", ("no images.txt there or in CUB_200_2011/", "official layout")


# --- MIT Indoor 67 -----------------------------------------------------------------------------


@case
def case_mit67_absolute_entry(tmp: Path):
    root = write_mit67(tmp).root
    _replace_line(root / "TestImages.txt", 1, "/etc/kitchen/x.jpg")
    return f"mit67:{root}", ("TestImages.txt:1", "is absolute")


@case
def case_mit67_windows_drive_entry(tmp: Path):
    root = write_mit67(tmp).root
    _replace_line(root / "TestImages.txt", 2, "C:\\kitchen\\x.jpg")
    return f"mit67:{root}", ("TestImages.txt:2", "is absolute")


@case
def case_mit67_entry_with_dotdot(tmp: Path):
    root = write_mit67(tmp).root
    _replace_line(root / "TestImages.txt", 3, "kitchen/../../../outside.jpg")
    return f"mit67:{root}", ("TestImages.txt:3", "contains '..'")


@case
def case_mit67_unknown_class(tmp: Path):
    root = write_mit67(tmp).root
    _replace_line(root / "TestImages.txt", 4, "garage/garage_0001.jpg")
    return f"mit67:{root}", ("TestImages.txt:4", "class 'garage' has no folder")


@case
def case_mit67_line_without_class(tmp: Path):
    root = write_mit67(tmp).root
    _replace_line(root / "TestImages.txt", 1, "x.jpg")
    return f"mit67:{root}", ("TestImages.txt:1", "malformed line", "<class>/<file>")


# --- Stanford Dogs -----------------------------------------------------------------------------


@case
def case_dogs_mat_without_file_list(tmp: Path):
    root = write_dogs120(tmp).root
    _rewrite_mat(root / "test_list.mat", file_list=None)
    return f"dogs120:{root}", ("test_list.mat", "no 'file_list' variable", "annotation_list, labels")


@case
def case_dogs_mat_is_text(tmp: Path):
    root = write_dogs120(tmp).root
    (root / "test_list.mat").write_text("n02085620-Chihuahua/n02085620_1.jpg 1\n")
    return f"dog120:{root}", ("test_list.mat", "not a MATLAB file scipy can read")


@case
def case_dogs_entry_with_dotdot(tmp: Path):
    root = write_dogs120(tmp).root
    files = loadmat(root / "test_list.mat")["file_list"]
    files[1, 0] = np.array(["../../../etc/passwd"])
    _rewrite_mat(root / "test_list.mat", file_list=files)
    return f"dogs120:{root}", ("test_list.mat 'file_list' entry 2", "contains '..'")


@case
def case_dogs_label_zero(tmp: Path):
    root = write_dogs120(tmp).root
    labels = loadmat(root / "test_list.mat")["labels"]
    labels[0, 0] = 0
    _rewrite_mat(root / "test_list.mat", labels=labels)
    return f"dogs120:{root}", ("test_list.mat", "'labels' entry 1 is 0; expected 1..6")


@case
def case_dogs_counts_disagree(tmp: Path):
    root = write_dogs120(tmp).root
    _rewrite_mat(root / "test_list.mat", labels=np.ones((2, 1)))
    return f"dogs120:{root}", ("test_list.mat", "6 entries in 'file_list' but 2 in 'labels'")


@case
def case_dogs_file_list_of_numbers(tmp: Path):
    root = write_dogs120(tmp).root
    _rewrite_mat(root / "test_list.mat", file_list=np.arange(6.0).reshape(6, 1))
    return f"dogs120:{root}", ("test_list.mat", "'file_list' must be a cell array of file names")


@case
def case_dogs_cell_holding_a_number(tmp: Path):
    root = write_dogs120(tmp).root
    files = loadmat(root / "test_list.mat")["file_list"]
    files[2, 0] = np.array([[3.0]])
    _rewrite_mat(root / "test_list.mat", file_list=files)
    return f"dogs120:{root}", ("test_list.mat", "'file_list' entry 3 is not a file name")


# --- Oxford 102 Flowers ------------------------------------------------------------------------


@case
def case_flowers_setid_without_tstid(tmp: Path):
    root = write_flowers102(tmp).root
    _rewrite_mat(root / "setid.mat", tstid=None)
    return f"flowers102:{root}", ("setid.mat", "no 'tstid' variable", "trnid, valid")


@case
def case_flowers_id_out_of_range(tmp: Path):
    root = write_flowers102(tmp).root
    _rewrite_mat(root / "setid.mat", tstid=np.array([[7, 8, 99]]))
    return f"flower102:{root}", ("setid.mat", "'tstid' entry 3 is 99; expected 1..12")


@case
def case_flowers_fractional_label(tmp: Path):
    root = write_flowers102(tmp).root
    _rewrite_mat(root / "imagelabels.mat", labels=np.array([[1.5] + [1.0] * 11]))
    return f"flowers102:{root}", ("imagelabels.mat", "'labels' entry 1 is 1.5, not an integer")


@case
def case_flowers_missing_image(tmp: Path):
    root = write_flowers102(tmp).root
    (root / "jpg" / "image_00009.jpg").unlink()
    return f"flowers102:{root}", ("setid.mat 'tstid' entry 3 (image 9)", "not found")


# --- Stanford 40 Actions -----------------------------------------------------------------------


@case
def case_actions_entry_with_dotdot(tmp: Path):
    root = write_actions40(tmp).root
    _replace_line(root / "ImageSplits" / "applauding_test.txt", 2, "../ImageSplits/actions.txt")
    return f"actions40:{root}", ("applauding_test.txt:2", "contains '..'")


@case
def case_actions_missing_split_file(tmp: Path):
    root = write_actions40(tmp).root
    (root / "ImageSplits" / "blowing_bubbles_test.txt").unlink()
    return f"action40:{root}", ("missing list file", "blowing_bubbles_test.txt")


@case
def case_actions_name_with_path(tmp: Path):
    root = write_actions40(tmp).root
    _replace_line(root / "ImageSplits" / "actions.txt", 3, "../../etc\t5")
    return f"actions40:{root}", ("actions.txt:3", "is not a plain name")


@case
def case_actions_missing_image(tmp: Path):
    root = write_actions40(tmp).root
    (root / "JPEGImages" / "brushing_teeth_005.jpg").unlink()
    return f"actions40:{root}", ("brushing_teeth_test.txt:2", "not found")


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One private jaxnets cache for the module (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("jaxnets-cache")


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_list_files_are_refused(name: str, tmp_path: Path, shared_cache: Path, capsys: pytest.CaptureFixture,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(shared_cache))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    spec, fragments = CASES[name](inputs)
    refuse(["validate", "digits_cnn", "--data", spec, "--out", tmp_path / "runs" / "new"], *fragments,
           protect=[inputs], capsys=capsys, monkeypatch=monkeypatch)


def test_the_well_formed_layouts_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cases above break one thing each: the unbroken layouts open, both splits."""
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(tmp_path / "cache"))
    for kind, write in WRITERS.items():
        layout = write(tmp_path / kind)
        for split in ("train", "test"):
            assert len(open_source(f"{kind}:{layout.root}", split)) == len(layout.split(split))
