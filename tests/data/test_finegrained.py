"""SeaM's five target data sets read from their official list files (synthetic copies in the exact
layout: finegrained_layouts.py), and ``shots`` (per-class few-shot sampling) on them and on digits."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from finegrained_layouts import WRITERS, Layout, write_cub200, write_mit67
from PIL import Image

import jaxnets
from jaxnets.data.finegrained import TARGET_SETS, ListedImageSource
from jaxnets.data.spec import VALID_FORMS, few_shot_indices, open_source, parse_data_spec
from jaxnets.errors import DataError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own decode cache (never the user's ~/.cache)."""
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(tmp_path / "jaxnets-cache"))
    return tmp_path / "jaxnets-cache" / "decoded"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Layout]:
    """All five data sets, written once, side by side under one parent folder."""
    base = tmp_path_factory.mktemp("targets")
    return {kind: write(base) for kind, write in WRITERS.items()}


EXPECTED_SIZES = {"cub200": (9, 3), "dogs120": (9, 6), "flowers102": (6, 6), "mit67": (9, 6),
                  "actions40": (9, 6)}


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("kind", TARGET_SETS)
def test_reader_gives_the_official_split(kind: str, split: str, layouts: dict[str, Layout]) -> None:
    layout = layouts[kind]
    data = jaxnets.open_data(f"{kind}:{layout.root}", split)  # the public API
    source = data.source
    assert isinstance(source, ListedImageSource) and source.name == kind and source.split == split
    assert len(data) == EXPECTED_SIZES[kind][0 if split == "train" else 1]
    expected = layout.split(split)
    assert [Path(p).relative_to(layout.root).as_posix() for p in source.paths] == [r for r, _ in expected]
    assert data.labels.tolist() == [label for _, label in expected]  # 0-based
    assert source.class_names == layout.class_names and data.num_classes == len(layout.class_names)
    last = len(source) - 1
    image, label = source[last]
    with Image.open(layout.root / expected[last][0]) as im:
        np.testing.assert_array_equal(image, np.asarray(im.convert("RGB")))
    assert label == expected[last][1] and image.shape == (6, 5, 3)


def test_spec_names_aliases_and_folders(layouts: dict[str, Layout]) -> None:
    assert {f"{kind}:DIR" for kind in TARGET_SETS} <= set(VALID_FORMS)
    parent = layouts["cub200"].root.parent
    for original, kind in (("cub200", "cub200"), ("dog120", "dogs120"), ("flower102", "flowers102"),
                           ("mit67", "mit67"), ("action40", "actions40")):
        spec = parse_data_spec(f"{original.upper()}:{parent}")
        assert spec.kind == kind
        # DIR may be the data set's folder or the parent holding it under the original's folder name
        from_parent = open_source(f"{original}:{parent}", "test", cache=False)
        from_folder = open_source(f"{original}:{layouts[kind].root}", "test", cache=False)
        assert from_parent.paths == from_folder.paths and from_parent.name == kind


def test_flowers_train_is_trnid_and_valid(layouts: dict[str, Layout]) -> None:
    root = layouts["flowers102"].root
    names = [Path(p).name for p in open_source(f"flowers102:{root}", "train").paths]
    assert names == [f"image_{i:05d}.jpg" for i in (2, 3, 4, 1, 5, 6)]
    with pytest.raises(DataError, match="flowers102 has no 'val' split .*part of 'train'"):
        open_source(f"flowers102:{root}", "val")


def test_mit67_classes_are_the_sorted_folders(tmp_path: Path) -> None:
    """The lists start with 'kitchen'; the ids still follow the sorted folder names (the documented
    deviation from the original's unsorted directory listing)."""
    layout = write_mit67(tmp_path)
    source = open_source(f"mit67:{layout.root}", "train")
    assert source.class_names == ["airport_inside", "bakery", "kitchen"]
    assert source.labels[:3].tolist() == [2, 2, 2]


def test_listed_images_use_the_decode_cache(tmp_path: Path, _private_cache: Path) -> None:
    layout = write_cub200(tmp_path)
    source = open_source(f"cub200:{layout.root}", "train")
    assert source.cache_path is not None and source.cache_path.parent == _private_cache
    assert source.in_memory and source.image_shape == (6, 5, 3)
    uncached = open_source(f"cub200:{layout.root}", "train", cache=False)
    np.testing.assert_array_equal(source.get_batch(np.arange(9)), uncached.get_batch(np.arange(9)))
    assert open_source(f"cub200:{layout.root}", "test").cache_path != source.cache_path


def test_limit_and_classes_keep_working(layouts: dict[str, Layout]) -> None:
    text = f"dogs120:{layouts['dogs120'].root}"
    assert open_source(text, "train", limit=3).labels.tolist() == [0, 1, 2]  # round-robin: every class
    subset = open_source(text, "train", classes=[2, 0], relabel=True)
    assert subset.labels.tolist() == [1, 1, 1, 0, 0, 0]
    assert subset.class_names == ["n02085936-Maltese_dog", "n02085620-Chihuahua"]


# ---------------------------------------------------------------------------------------------
# shots


def test_shots_on_digits_take_each_class_first_images() -> None:
    full = open_source("digits", "train")
    shots = jaxnets.open_data("digits", "train", shots=5)
    assert len(shots) == 50
    assert np.bincount(shots.labels, minlength=10).tolist() == [5] * 10
    # the first five of each class, in the split's order (the original's rule for image folders)
    expected = np.sort(np.concatenate([np.flatnonzero(full.labels == c)[:5] for c in range(10)]))
    np.testing.assert_array_equal(shots.source.base_indices, expected)
    # with --classes the same images of those classes; --limit then cuts the few-shot set
    subset = open_source("digits", "train", shots=5, classes=[3, 7])
    assert np.bincount(subset.labels).tolist()[3::4] == [5, 5] and len(subset) == 10
    assert set(subset.base_indices) <= set(expected)
    assert len(open_source("digits", "train", shots=5, limit=7)) == 7
    with pytest.raises(DataError, match="--shots must be at least 1"):
        open_source("digits", "train", shots=0)


def _original_selection(kind: str, labels: list[int], num_classes: int, shots: int,
                        cub_all: tuple[list[int], list[int], list[int]] | None = None) -> set[int]:
    """The original loaders' few-shot rule, written out independently with Python's global
    generator: per class, ``random.seed(0)`` then ``random.shuffle`` of its positions and the first
    ``shots``; MIT-67 shuffles the whole list once; CUB shuffles all ids of a class (both splits)
    and keeps the first ``shots`` training ones. Returns positions in the split."""
    chosen: set[int] = set()
    if kind == "mit67":
        order = list(range(len(labels)))
        random.seed(0)
        random.shuffle(order)
        taken = [0] * num_classes
        for position in order:
            if taken[labels[position]] < shots:
                taken[labels[position]] += 1
                chosen.add(position)
        return chosen
    for c in range(num_classes):
        if cub_all is not None:
            all_ids, all_labels, split_ids = cub_all
            candidates = [i for i, label in zip(all_ids, all_labels, strict=True) if label == c]
        else:
            candidates = [p for p, label in enumerate(labels) if label == c]
        random.seed(0)
        random.shuffle(candidates)
        if cub_all is not None:
            candidates = [split_ids.index(i) for i in candidates if i in split_ids]
        chosen.update(candidates[:shots])
    return chosen


@pytest.mark.parametrize("kind", TARGET_SETS)
def test_shots_reproduce_the_original_sample(kind: str, layouts: dict[str, Layout]) -> None:
    layout = layouts[kind]
    full = open_source(f"{kind}:{layout.root}", "train", cache=False)
    few = open_source(f"{kind}:{layout.root}", "train", shots=2, cache=False)
    assert np.bincount(few.labels, minlength=3).tolist() == [2, 2, 2]
    cub_all = None
    if kind == "cub200":
        all_ids, split_ids = list(range(1, 13)), [i for i in range(1, 13) if (i - 1) % 4 != 1]
        cub_all = (all_ids, [(i - 1) // 4 for i in all_ids], split_ids)
    expected = _original_selection(kind, full.labels.tolist(), 3, 2, cub_all)
    assert set(few.base_indices.tolist()) == expected
    assert set(few_shot_indices(full, 2).tolist()) == expected
    # Python's global generator is left alone
    random.seed(123)
    state = random.getstate()
    open_source(f"{kind}:{layout.root}", "train", shots=1, cache=False)
    assert random.getstate() == state


def test_shots_larger_than_a_class_warn_and_keep_all(layouts: dict[str, Layout],
                                                     capsys: pytest.CaptureFixture) -> None:
    few = open_source(f"actions40:{layouts['actions40'].root}", "test", shots=3, cache=False)
    assert len(few) == 6  # two test images an action
    assert "--shots 3: 3 of 3 classes of actions40 test have fewer images" in capsys.readouterr().err
