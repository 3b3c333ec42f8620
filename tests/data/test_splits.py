"""Validation splits and class subsampling (spec §4.4, §4.5, §9 check 19)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from jaxnets.data.loader import Loader
from jaxnets.data.sources import ArraySource
from jaxnets.data.splits import relabel, subsample_classes, validation_split
from jaxnets.errors import DataError, JaxnetsError

FRACTIONS = [0.1, 0.2, 0.25, 0.3, 0.33, 0.5, 0.7, 0.9, 0.95, 0.99]


@pytest.fixture
def global_rng() -> Iterator[None]:
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def original_split(n: int, fraction: float, shuffle: bool, seed: int | None) -> tuple[list, list]:
    """A literal port of the original's non-stratified split on the global RNG."""
    idx = list(range(n))
    if shuffle:
        if seed is not None:
            np.random.seed(seed)
        np.random.shuffle(idx)
    n_val = int(np.floor(fraction * n))
    return idx[:n - n_val], idx[n - n_val:]


# --------------------------------------------------------------------------------------------
# Non-stratified


@pytest.mark.parametrize("n", [60_000, 50_000])  # MNIST, CIFAR-10 training sets
def test_split_sizes(n: int) -> None:
    for f in FRACTIONS:
        tr, va = validation_split(n, None, f, shuffle=False, seed=None, stratified=False)
        assert len(va) == int(np.floor(n * f)) and len(tr) + len(va) == n
        np.testing.assert_array_equal(tr, np.arange(n - len(va)))  # first N - n_val
        np.testing.assert_array_equal(va, np.arange(n - len(va), n))  # last n_val


@pytest.mark.parametrize("n,f,n_train,n_val", [
    (60_000, 0.1, 54_000, 6_000), (60_000, 0.2, 48_000, 12_000), (60_000, 0.33, 40_200, 19_800),
    (60_000, 0.5, 30_000, 30_000), (60_000, 0.99, 600, 59_400), (50_000, 0.1, 45_000, 5_000),
    (50_000, 0.2, 40_000, 10_000), (50_000, 0.25, 37_500, 12_500), (50_000, 0.99, 500, 49_500),
])
def test_split_literal_counts(n: int, f: float, n_train: int, n_val: int) -> None:
    for shuffle in (False, True):
        tr, va = validation_split(n, None, f, shuffle=shuffle, seed=0, stratified=False)
        assert (len(tr), len(va)) == (n_train, n_val)


@pytest.mark.parametrize("seed", [0, 1, 1234])
@pytest.mark.parametrize("f", [0.1, 0.2, 0.9])
def test_split_shuffle_matches_original(global_rng: None, seed: int, f: float) -> None:
    n = 50_000
    exp_tr, exp_va = original_split(n, f, True, seed)
    tr, va = validation_split(n, None, f, shuffle=True, seed=seed, stratified=False)
    np.testing.assert_array_equal(tr, exp_tr)
    np.testing.assert_array_equal(va, exp_va)  # §9.19: the last floor(N*s) after the shuffle
    # shuffling an array draws the same stream as shuffling the original's list
    np.random.seed(seed)
    arr = np.arange(n)
    np.random.shuffle(arr)
    np.testing.assert_array_equal(np.concatenate([tr, va]), arr)
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(n))


def test_split_seed_none_and_no_shuffle_ignores_seed() -> None:
    tr, va = validation_split(1000, None, 0.1, shuffle=True, seed=None, stratified=False)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(1000))
    a = validation_split(1000, None, 0.1, shuffle=False, seed=5, stratified=False)
    b = validation_split(1000, None, 0.1, shuffle=False, seed=None, stratified=False)
    np.testing.assert_array_equal(a[1], b[1])


def test_split_errors() -> None:
    for f in (0.0, 1.0, -0.1, 1.5):
        for strat in (False, True):
            with pytest.raises(JaxnetsError):
                validation_split(100, np.arange(100) % 2, f, shuffle=True, seed=0, stratified=strat)
    with pytest.raises(DataError):  # floor(5 * 0.1) = 0 validation images
        validation_split(5, None, 0.1, shuffle=False, seed=0, stratified=False)


# --------------------------------------------------------------------------------------------
# Stratified (the fix)


def test_stratified_keeps_class_proportions() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(10, 20_000, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    for f in (0.1, 0.25, 0.5):
        tr, va = validation_split(len(labels), labels, f, shuffle=False, seed=3, stratified=True)
        assert len(va) == int(np.ceil(f * len(labels))) and len(tr) + len(va) == len(labels)
        assert np.intersect1d(tr, va).size == 0
        counts = np.bincount(labels, minlength=10)
        val_counts = np.bincount(labels[va], minlength=10)
        assert np.all(np.abs(val_counts - counts * len(va) / len(labels)) <= 1)


def test_stratified_equals_intended_sklearn_call() -> None:
    from sklearn.model_selection import train_test_split

    labels = np.random.default_rng(1).integers(0, 10, 5000)
    idx = np.arange(len(labels))
    exp_tr, exp_va = train_test_split(idx, test_size=0.2, random_state=7, shuffle=True,
                                      stratify=labels)
    tr, va = validation_split(len(labels), labels, 0.2, shuffle=False, seed=7, stratified=True)
    np.testing.assert_array_equal(tr, exp_tr)
    np.testing.assert_array_equal(va, exp_va)
    again = validation_split(len(labels), labels, 0.2, shuffle=True, seed=7, stratified=True)
    np.testing.assert_array_equal(again[1], va)


def test_stratified_errors() -> None:
    with pytest.raises(DataError):  # class 2 has a single image
        validation_split(7, [0, 0, 0, 1, 1, 1, 2], 0.3, shuffle=True, seed=0, stratified=True)
    with pytest.raises(DataError):
        validation_split(10, [0, 1], 0.3, shuffle=True, seed=0, stratified=True)
    with pytest.raises(JaxnetsError):
        validation_split(10, None, 0.3, shuffle=True, seed=0, stratified=True)


# --------------------------------------------------------------------------------------------
# Class subsampling


def test_subsample_without_shuffle_keeps_first_sorted() -> None:
    assert subsample_classes([5, 3, 9, 0, 7], 3, shuffle=False, seed=123) == [0, 3, 5]
    assert subsample_classes(range(1000), 100, shuffle=False, seed=None) == list(range(100))


@pytest.mark.parametrize("seed", [0, 7, 99])
def test_subsample_with_shuffle_matches_original(global_rng: None, seed: int) -> None:
    # The original shuffles the sorted ImageNet wnids (strings) on the global RNG; class ids are
    # the ranks of the sorted wnids, so the kept ids must be the ranks of the kept wnids.
    wnids = sorted(f"n{v:08d}" for v in np.random.default_rng(seed).choice(10**8, 1000, replace=False))
    classes = sorted(wnids)
    np.random.seed(seed)
    np.random.shuffle(classes)
    expected = [wnids.index(w) for w in classes[:100]]
    got = subsample_classes(list(range(1000))[::-1], 100, shuffle=True, seed=seed)
    assert got == expected
    assert got == subsample_classes(range(1000), 100, shuffle=True, seed=seed)
    assert got != subsample_classes(range(1000), 100, shuffle=True, seed=seed + 1)
    assert all(isinstance(c, int) for c in got)


def test_subsample_errors() -> None:
    for n in (0, 6, -1):
        with pytest.raises(JaxnetsError):
            subsample_classes(range(5), n, shuffle=False, seed=0)
    with pytest.raises(JaxnetsError):
        subsample_classes([1, 1, 2], 2, shuffle=False, seed=0)


def _source() -> ArraySource:
    labels = np.array([3, 0, 7, 3, 1, 7, 9, 0, 3, 2])
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 1), np.uint8)
    return ArraySource(images, labels, name="toy", split="train",
                       class_names=[f"c{i}" for i in range(10)])


def test_relabel_maps_to_positions_in_kept_list() -> None:
    src = _source()
    sub = relabel(src, [7, 3])  # the kept order, not sorted
    np.testing.assert_array_equal(sub.base_indices, [0, 2, 3, 5, 8])  # dataset order kept
    np.testing.assert_array_equal(sub.labels, [1, 0, 1, 0, 1])
    assert sub.classes == [7, 3] and sub.num_classes == 2 and sub.class_names == ["c7", "c3"]
    img, label = sub[1]
    assert label == 0 and img[0, 0, 0] == 2
    np.testing.assert_array_equal(sub.get_batch(np.array([0, 4]))[:, 0, 0, 0], [0, 8])
    batch = next(iter(Loader(sub, 5, shuffle=False, prefetch=0).epoch(0)))
    np.testing.assert_array_equal(batch.labels, [1, 0, 1, 0, 1])


def test_relabel_with_subsample_and_errors() -> None:
    src = _source()
    kept = subsample_classes(np.unique(src.labels), 3, shuffle=False, seed=None)
    sub = relabel(src, kept)
    assert kept == [0, 1, 2] and sorted(set(sub.labels.tolist())) == [0, 1, 2]
    np.testing.assert_array_equal(sub.base_indices, [1, 4, 7, 9])
    with pytest.raises(DataError):
        relabel(src, [10])
    with pytest.raises(JaxnetsError):
        relabel(src, [])
    with pytest.raises(JaxnetsError):
        relabel(src, [3, 3])
