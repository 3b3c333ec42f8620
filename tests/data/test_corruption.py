"""Label noise and pixel shuffle (spec §4.3, §9 checks 17–18): exact legacy-numpy streams."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from jaxnets.data.corruption import (
    CorruptedSource,
    PixelPermutations,
    apply_pixel_shuffle,
    noisy_labels,
    pixel_shuffle_permutations,
)
from jaxnets.data.loader import Loader
from jaxnets.data.sources import ArraySource, Subset
from jaxnets.data.transforms import normalize
from jaxnets.errors import DataError, JaxnetsError

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


@pytest.fixture
def global_rng() -> Iterator[None]:
    """The ports below use numpy's global RNG, like the original: restore it afterwards."""
    state = np.random.get_state()
    yield
    np.random.set_state(state)


def original_noise(labels: np.ndarray, r: float, c: int, seed: int,
                   train_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A literal port of the original's corruption on the global RNG; also returns its mask."""
    labels = np.array(labels)
    np.random.seed(seed)
    labels_tr = labels[train_mask]
    corrupt = np.random.rand(len(labels_tr)) <= r
    offsets = np.random.choice(range(1, c), corrupt.sum())
    labels_tr[corrupt] = (labels_tr[corrupt] + offsets) % c
    labels[train_mask] = labels_tr
    return labels, corrupt


def original_perms(n: int, train_mask: np.ndarray, seed: int, hw: int) -> dict[int, np.ndarray]:
    """A literal port of the original's per-image permutation loop."""
    prng = np.random.RandomState(seed)
    return {i: prng.permutation(hw) for i in range(n) if train_mask[i]}


def _images(n: int, h: int = 6, w: int = 5, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Label noise


@pytest.mark.parametrize("seed", [0, 1, 42, 2020])
@pytest.mark.parametrize("ratio,c", [(0.1, 10), (0.2, 10), (0.5, 100), (0.8, 10), (1.0, 100)])
def test_noise_matches_original_stream(global_rng: None, seed: int, ratio: float, c: int) -> None:
    labels = np.random.default_rng(seed).integers(0, c, 3000)
    all_train = np.ones(len(labels), bool)
    expected, _ = original_noise(labels, ratio, c, seed, all_train)
    np.testing.assert_array_equal(noisy_labels(labels, ratio, c, seed), expected)
    # with a validation split: draws only for the training indices, in dataset order
    mask = np.random.default_rng(seed + 1).random(len(labels)) < 0.7
    expected, _ = original_noise(labels, ratio, c, seed, mask)
    got = noisy_labels(labels, ratio, c, seed, train_indices=mask)
    np.testing.assert_array_equal(got, expected)
    # indices in any order give the same result as the mask
    shuffled = np.random.default_rng(3).permutation(np.flatnonzero(mask))
    np.testing.assert_array_equal(noisy_labels(labels, ratio, c, seed, shuffled), expected)


def test_noise_golden_values() -> None:
    # RandomState(0).rand(20) <= 0.5 at 4, 6, 9, 14, 15, 16; offsets from choice(range(1, 10)).
    got = noisy_labels(np.arange(20) % 10, 0.5, 10, 0)
    assert got.tolist() == [0, 1, 2, 3, 7, 5, 0, 7, 8, 8, 0, 1, 2, 3, 6, 9, 0, 7, 8, 9]


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.4, 0.6, 0.8, 1.0])
def test_noise_rate_and_always_different(global_rng: None, ratio: float) -> None:
    labels = np.random.default_rng(7).integers(0, 10, 50_000)  # CIFAR-10 training-set size
    noisy = noisy_labels(labels, ratio, 10, 123)
    changed = noisy != labels
    rate = changed.mean()
    assert rate > ratio - 0.01 and abs(rate - ratio) <= 0.01
    _, corrupt = original_noise(labels, ratio, 10, 123, np.ones(len(labels), bool))
    # every corrupted entry changed (offsets 1..C-1), nothing else did
    np.testing.assert_array_equal(changed, corrupt)
    offsets = (noisy[changed] - labels[changed]) % 10
    assert set(offsets.tolist()) == set(range(1, 10))


def test_noise_leaves_non_train_and_input_alone() -> None:
    labels = np.random.default_rng(0).integers(0, 10, 1000)
    before = labels.copy()
    train = np.arange(0, 1000, 3)
    noisy = noisy_labels(labels, 1.0, 10, 5, train_indices=train)
    np.testing.assert_array_equal(labels, before)
    other = np.setdiff1d(np.arange(1000), train)
    np.testing.assert_array_equal(noisy[other], labels[other])
    assert (noisy[train] != labels[train]).all()
    # no draws for non-train indices: equal to corrupting the training labels alone
    np.testing.assert_array_equal(noisy[train], noisy_labels(labels[train], 1.0, 10, 5))
    assert noisy.dtype == labels.dtype


def test_noise_seed_none_and_errors() -> None:
    labels = np.arange(100) % 10
    noisy = noisy_labels(labels, 0.5, 10, None)
    assert noisy.min() >= 0 and noisy.max() < 10
    for bad in (0.0, -1.0, 1.5):
        with pytest.raises(JaxnetsError):
            noisy_labels(labels, bad, 10, 0)
    with pytest.raises(JaxnetsError):
        noisy_labels(np.zeros(5, int), 0.5, 1, 0)
    with pytest.raises(DataError):
        noisy_labels(labels, 0.5, 5, 0)  # labels up to 9
    with pytest.raises(DataError):
        noisy_labels(labels, 0.5, 10, 0, train_indices=np.array([100]))


# --------------------------------------------------------------------------------------------
# Pixel shuffle


def test_perms_follow_original_draw_order() -> None:
    n, hw = 200, 1024
    mask = np.random.default_rng(0).random(n) < 0.8
    perms = pixel_shuffle_permutations(n, mask, hw, 17)
    ref = original_perms(n, mask, 17, hw)
    ref_by_rank = [ref[i] for i in sorted(ref)]
    for i in range(n):
        if mask[i]:
            # §9.18: image i uses draw number k = its rank among the training indices
            k = int(np.count_nonzero(mask[:i]))
            assert perms.rank[i] == k
            np.testing.assert_array_equal(perms[i], ref_by_rank[k])
        else:
            assert perms[i] is None and perms.rank[i] == -1
    # indices instead of a mask: the same
    by_idx = pixel_shuffle_permutations(n, np.flatnonzero(mask)[::-1], hw, 17)
    np.testing.assert_array_equal(by_idx.take(np.arange(n)), perms.take(np.arange(n)))


def test_perms_golden_values() -> None:
    p = pixel_shuffle_permutations(3, np.array([True, False, True]), 9, 0)
    assert p[0].tolist() == [7, 2, 1, 4, 8, 6, 3, 0, 5]
    assert p[1] is None
    assert p[2].tolist() == [3, 1, 7, 6, 8, 0, 4, 2, 5]


def test_perms_reproducible_fixed_and_distinct() -> None:
    a = pixel_shuffle_permutations(60, None, 784, 3)  # MNIST 28x28 (the fix: real H*W)
    b = pixel_shuffle_permutations(60, None, 784, 3)
    c = pixel_shuffle_permutations(60, None, 784, 4)
    table = a.take(np.arange(60))
    np.testing.assert_array_equal(table, b.take(np.arange(60)))
    assert not np.array_equal(table, c.take(np.arange(60)))
    assert all(sorted(row) == list(range(784)) for row in table[:5])
    assert len({row.tobytes() for row in table}) == 60  # every image has its own permutation
    np.testing.assert_array_equal(a[10], a[10])  # fixed per image


def test_lazy_table_equals_eager() -> None:
    mask = np.random.default_rng(1).random(150) < 0.6
    eager = pixel_shuffle_permutations(150, mask, 64, 9)
    lazy = pixel_shuffle_permutations(150, mask, 64, 9, max_table_bytes=0, block=7, cache_blocks=2)
    assert lazy.is_lazy and not eager.is_lazy
    order = np.random.default_rng(2).permutation(150)
    for _ in range(2):  # second pass hits evicted and cached blocks
        np.testing.assert_array_equal(lazy.take(order), eager.take(order))


def test_take_identity_for_padding_and_non_train() -> None:
    perms = pixel_shuffle_permutations(4, np.array([True, False, True, True]), 6, 0)
    rows = perms.take([1, -1, 2])
    np.testing.assert_array_equal(rows[0], np.arange(6))
    np.testing.assert_array_equal(rows[1], np.arange(6))
    np.testing.assert_array_equal(rows[2], perms[2])
    with pytest.raises(IndexError):
        perms.take([4])


def test_apply_same_permutation_every_channel() -> None:
    imgs = _images(4, 6, 5, 3)
    perms = pixel_shuffle_permutations(4, None, 30, 11)
    out = perms.apply(imgs, np.arange(4))
    for b in range(4):
        chw = imgs[b].transpose(2, 0, 1).reshape(3, 30)  # the original's (C, H*W) view
        expected = chw[:, perms[b]].reshape(3, 6, 5).transpose(1, 2, 0)
        np.testing.assert_array_equal(out[b], expected)
    # one image, and grayscale
    np.testing.assert_array_equal(apply_pixel_shuffle(imgs[1], perms[1]), out[1])
    gray = imgs[..., :1]
    np.testing.assert_array_equal(apply_pixel_shuffle(gray, perms.take(range(4))), out[..., :1])
    with pytest.raises(DataError):
        apply_pixel_shuffle(imgs, np.zeros((4, 29), int))


def test_shuffle_commutes_with_normalisation() -> None:
    # The original shuffles after Normalize; shuffling the uint8 image first is the same.
    imgs = _images(8, 32, 32, 3, seed=5)
    perms = pixel_shuffle_permutations(8, None, 1024, 0).take(np.arange(8))
    after = apply_pixel_shuffle(normalize(imgs, CIFAR_MEAN, CIFAR_STD), perms)
    before = normalize(apply_pixel_shuffle(imgs, perms), CIFAR_MEAN, CIFAR_STD)
    np.testing.assert_array_equal(after, before)  # bit-identical


# --------------------------------------------------------------------------------------------
# CorruptedSource


def _source(n: int = 40, hw: tuple[int, int] = (6, 5)) -> ArraySource:
    labels = np.arange(n) % 10
    return ArraySource(_images(n, *hw), labels, name="toy", split="train",
                       class_names=[str(i) for i in range(10)])


def test_corrupted_source_labels_and_pixels() -> None:
    src = _source()
    noisy = noisy_labels(src.labels, 0.5, 10, 0)
    mask = np.arange(40) % 4 != 0
    perms = pixel_shuffle_permutations(40, mask, 30, 1)
    cs = CorruptedSource(src, labels=noisy, pixel_perms=perms)
    assert (len(cs), cs.num_classes, cs.image_shape, cs.in_memory) == (40, 10, (6, 5, 3), True)
    np.testing.assert_array_equal(cs.labels, noisy)
    np.testing.assert_array_equal(cs.clean_labels, src.labels)
    idx = np.array([3, 0, 17, 4])
    batch = cs.get_batch(idx)
    np.testing.assert_array_equal(batch, perms.apply(src.images[idx], idx))
    np.testing.assert_array_equal(batch[1], src.images[0])  # index 0 is not a training index
    assert not np.array_equal(batch[0], src.images[3])
    np.testing.assert_array_equal(np.stack(cs.get_images(idx)), batch)
    img, label = cs[17]
    np.testing.assert_array_equal(img, batch[2])
    assert label == noisy[17]
    np.testing.assert_array_equal(cs.get_batch(idx), batch)  # fixed across fetches
    assert "noisy labels" in cs.describe() and "pixel shuffle" in cs.describe()


def test_corrupted_source_through_loader_and_subset() -> None:
    src = _source()
    noisy = noisy_labels(src.labels, 1.0, 10, 2)
    perms = pixel_shuffle_permutations(40, None, 30, 2)
    cs = CorruptedSource(src, labels=noisy, pixel_perms=perms)
    train = Subset(cs, np.arange(5, 37))
    loader = Loader(train, 8, shuffle=True, seed=0, prefetch=0)
    for batch in loader.epoch(0):
        base = train.base_indices[batch.indices]
        np.testing.assert_array_equal(batch.labels, noisy[base])
        np.testing.assert_array_equal(batch.images, perms.apply(src.images[base], base))


def test_corrupted_source_validation() -> None:
    src = _source()
    with pytest.raises(DataError):
        CorruptedSource(src, labels=np.zeros(39, int))
    with pytest.raises(DataError):
        CorruptedSource(src, labels=np.full(40, 10))
    with pytest.raises(DataError):
        CorruptedSource(src, pixel_perms=pixel_shuffle_permutations(40, None, 31, 0))
    with pytest.raises(DataError):
        CorruptedSource(src, pixel_perms=pixel_shuffle_permutations(41, None, 30, 0))
    plain = CorruptedSource(src)
    np.testing.assert_array_equal(plain.get_batch([1, 2]), src.images[[1, 2]])
    assert isinstance(pixel_shuffle_permutations(2, None, 4, 0), PixelPermutations)
