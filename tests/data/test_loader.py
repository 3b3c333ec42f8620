"""The loader: sampler order, eval padding, exact resume (augmented pixels too), prefetch."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

from jaxnets.data.loader import Batch, Loader
from jaxnets.data.sources import ArraySource, Source, Subset
from jaxnets.data.transforms import cifar_augment
from jaxnets.errors import DataError

N = 103


def _source(n: int = N, size: int = 8) -> ArraySource:
    """Image i is filled with (i % 251) + 1 except a random corner, so rows identify indices."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    images[:, 2:, 2:, :] = (np.arange(n) % 251 + 1)[:, None, None, None]
    return ArraySource(images, np.arange(n) % 10, name="toy", split="train",
                       class_names=[str(i) for i in range(10)])


class _LazySource(Source):
    """Not in memory: the loader fetches images one at a time (worker threads)."""

    def __init__(self, base: ArraySource):
        self.base, self.labels = base, base.labels
        self.name, self.split, self.num_classes = "lazy", "train", 10
        self.class_names, self.image_shape, self.in_memory = base.class_names, None, False

    def __getitem__(self, i: int):
        return self.base[i]


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("jaxnets-")]


def _wait_no_threads(timeout: float = 5.0) -> list[threading.Thread]:
    deadline = time.monotonic() + timeout
    while _prefetch_threads() and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    return _prefetch_threads()


def _all(loader: Loader, epoch: int, start: int = 0) -> list[Batch]:
    return list(loader.epoch(epoch, start))


def test_every_index_once_per_epoch() -> None:
    src = _source()
    loader = Loader(src, 16, shuffle=True, seed=3, drop_last=False, pad_last=False)
    assert loader.steps_per_epoch == 7
    batches = _all(loader, 0)
    seen = np.concatenate([b.indices for b in batches])
    assert sorted(seen.tolist()) == list(range(N))
    assert [len(b.indices) for b in batches] == [16] * 6 + [7]
    for b in batches:
        assert b.images.dtype == np.uint8 and b.labels.dtype == np.int32
        assert b.indices.dtype == np.int64 and b.mask.dtype == np.bool_
        np.testing.assert_array_equal(b.images, src.images[b.indices])
        np.testing.assert_array_equal(b.labels, src.labels[b.indices])
    # Training default: drop the incomplete batch, each index at most once, all batches full.
    train = Loader(src, 16, shuffle=True, seed=3)
    batches = _all(train, 5)
    assert train.steps_per_epoch == 6 and all(b.images.shape[0] == 16 for b in batches)
    seen = np.concatenate([b.indices for b in batches])
    assert len(set(seen.tolist())) == 96
    np.testing.assert_array_equal(seen, np.random.default_rng([3, 5]).permutation(N)[:96])


def test_eval_padding_and_mask() -> None:
    src = _source()
    loader = Loader(src, 16, shuffle=False)
    assert loader.pad_last and not loader.drop_last and loader.steps_per_epoch == 7
    batches = _all(loader, 0)
    assert all(b.images.shape == (16, 8, 8, 3) for b in batches)
    last = batches[-1]
    assert last.mask.tolist() == [True] * 7 + [False] * 9 and last.num_valid == 7
    assert last.indices[7:].tolist() == [-1] * 9 and last.labels[7:].tolist() == [0] * 9
    assert not last.images[7:].any()
    valid = np.concatenate([b.indices[b.mask] for b in batches])
    np.testing.assert_array_equal(valid, np.arange(N))


def test_epochs_and_seeds() -> None:
    src = _source()
    a = Loader(src, 10, shuffle=True, seed=1)
    b = Loader(src, 10, shuffle=True, seed=1)
    c = Loader(src, 10, shuffle=True, seed=2)
    e0 = np.concatenate([x.indices for x in _all(a, 0)])
    assert not np.array_equal(e0, np.concatenate([x.indices for x in _all(a, 1)]))
    np.testing.assert_array_equal(e0, np.concatenate([x.indices for x in _all(b, 0)]))
    assert not np.array_equal(e0, np.concatenate([x.indices for x in _all(c, 0)]))


def _random_per_image(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.roll(img, int(rng.integers(0, 8)), axis=1)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_gives_exactly_the_remaining_batches(prefetch: int) -> None:
    src = _source(size=32)
    loader = Loader(src, 8, shuffle=True, seed=11, augment=cifar_augment, prefetch=prefetch)
    full = _all(loader, 4)
    assert len(full) == 12
    for start in (0, 5, 11, 12):
        resumed = _all(Loader(src, 8, shuffle=True, seed=11, augment=cifar_augment), 4, start)
        assert [b.step for b in resumed] == list(range(start, 12))
        for x, y in zip(full[start:], resumed, strict=True):
            np.testing.assert_array_equal(x.indices, y.indices)
            np.testing.assert_array_equal(x.images, y.images)  # augmented pixels identical
            np.testing.assert_array_equal(x.labels, y.labels)
    # The augmentation really changed the pixels (and differs between epochs).
    assert any(not np.array_equal(b.images, src.images[b.indices]) for b in full)
    other = _all(loader, 5)
    assert not np.array_equal(full[0].images, other[0].images)


def test_per_image_randomness_independent_of_workers() -> None:
    lazy = _LazySource(_source())
    runs = [_all(Loader(lazy, 9, shuffle=True, seed=4, per_image=_random_per_image,
                        workers=w), 2, 3) for w in (1, 3)]
    for x, y in zip(*runs, strict=True):
        np.testing.assert_array_equal(x.images, y.images)
    plain = _all(Loader(lazy, 9, shuffle=True, seed=4, workers=3), 2, 3)
    np.testing.assert_array_equal(plain[0].images, lazy.base.images[plain[0].indices])
    assert not all(np.array_equal(p.images, r.images) for p, r in zip(plain, runs[0],
                                                                      strict=True))


def test_prefetch_thread_stops_after_break() -> None:
    assert not _wait_no_threads()
    loader = Loader(_source(), 4, shuffle=True, prefetch=2)
    for batch in loader.epoch(0):
        assert _prefetch_threads()
        assert batch.images.shape[0] == 4
        break
    assert not _wait_no_threads(), "prefetch thread still alive after breaking out"
    it = loader.epoch(1)
    next(it)
    it.close()
    assert not [t for t in _prefetch_threads() if t.is_alive()]
    with pytest.raises(StopIteration):
        next(it)
    with loader.epoch(2) as it2:
        next(it2)
    assert not _wait_no_threads()
    # Per-image worker pools end with the epoch too.
    lazy = Loader(_LazySource(_source()), 4, shuffle=False, workers=3)
    for _ in lazy.epoch(0):
        break
    assert not _wait_no_threads()


class _Exploding(ArraySource):
    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        if 50 in idx:
            raise RuntimeError("disk on fire")
        return super().get_batch(idx)


def test_producer_exception_is_reraised() -> None:
    base = _source()
    src = _Exploding(base.images, base.labels, name="x", split="train",
                     class_names=base.class_names)
    got = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for b in Loader(src, 10, shuffle=False).epoch(0):
            got.append(b.step)
    assert got == [0, 1, 2, 3, 4]
    assert not _wait_no_threads()


def test_subset_and_errors() -> None:
    src = _source()
    sub = Subset(src, np.arange(40, 60))
    batches = _all(Loader(sub, 8, shuffle=False), 0)
    assert np.concatenate([b.indices[b.mask] for b in batches]).tolist() == list(range(20))
    np.testing.assert_array_equal(batches[0].images, src.images[40:48])
    with pytest.raises(DataError, match="larger than the data set"):
        Loader(sub, 32, shuffle=True)
    with pytest.raises(DataError, match="start step"):
        Loader(sub, 8, shuffle=True).epoch(0, 3)
