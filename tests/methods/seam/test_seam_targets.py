"""SeaM spec §9 check 9: target data sets (binary, superclasses, rejections)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam import superclasses, targets


def _cifar_like_labels(n_classes: int, per_class: int) -> np.ndarray:
    # Dataset order interleaved like the real files (not sorted by class).
    rng = np.random.default_rng(0)
    return rng.permutation(np.repeat(np.arange(n_classes), per_class))


def test_seam_binary_cifar10_sizes_and_legacy_seed() -> None:
    t = targets.parse_target("binary:0", 10)
    for per_class, total in ((5000, 10_000), (1000, 2_000)):
        labels = _cifar_like_labels(10, per_class)
        idx, new = targets.target_indices(labels, t)
        assert len(idx) == total
        assert (new[: total // 2] == 0).all() and (new[total // 2:] == 1).all()
        assert (labels[idx[: total // 2]] == 0).all() and (labels[idx[total // 2:]] != 0).all()
        others = [i for i in range(len(labels)) if labels[i] != 0]
        np.random.seed(0)
        np.random.shuffle(others)  # the original: legacy global RNG, seed 0, list shuffle
        np.testing.assert_array_equal(idx[total // 2:], others[: total // 2])


def test_seam_binary_cifar100_sizes() -> None:
    t = targets.parse_target("binary:42", 100)
    for per_class, total in ((500, 1_000), (100, 200)):
        idx, new = targets.target_indices(_cifar_like_labels(100, per_class), t)
        assert len(idx) == total and new.sum() == total // 2


def test_seam_pair_and_limit() -> None:
    t = targets.parse_target("binary:3,5", 10)
    assert t.kind == "pair" and t.num_targets == 2
    labels = _cifar_like_labels(10, 100)
    idx, new = targets.target_indices(labels, t, limit=50)
    assert len(idx) == 50 and (labels[idx[:25]] == 3).all() and (labels[idx[25:]] == 5).all()
    # original-model correctness: positive iff argmax == 3
    ok = targets.original_correct(np.array([3, 1, 5, 3]), np.array([3, 3, 5, 5]), t)
    np.testing.assert_array_equal(ok, [True, False, True, False])


def test_seam_cifar100_superclass_0() -> None:
    t = targets.parse_target("superclass:0", 100)
    assert t.classes == (4, 30, 55, 72, 95) and t.num_targets == 5
    labels = _cifar_like_labels(100, 500)
    idx, new = targets.target_indices(labels, t)
    assert len(idx) == 2_500 and sorted(set(new.tolist())) == [0, 1, 2, 3, 4]
    for k, c in enumerate(t.classes):
        assert (labels[idx[new == k]] == c).all()
    assert len(targets.target_indices(_cifar_like_labels(100, 100), t)[0]) == 500
    all_fine = sorted(c for v in superclasses.CIFAR100_SUPERCLASSES.values() for c in v)
    assert all_fine == list(range(100))


def test_seam_imagenet_superclasses() -> None:
    idx2sc, scn2c, synsets = superclasses.imagenet_tables()
    assert len(idx2sc) == 67 and len(synsets) == 1000 == len(set(synsets))
    name, syn, classes = superclasses.imagenet_superclass(0)
    assert name == "fish" and syn == ["n01440764", "n01443537", "n01496331", "n01498041", "n01751748",
                                      "n01910747", "n02514041", "n02526121", "n02607072", "n02640242",
                                      "n02641379", "n02643566", "n02655020"]
    assert classes == sorted(classes) and classes[:2] == [0, 1]
    assert idx2sc[19] == "marine mammals"
    assert [len(scn2c[idx2sc[i]]) for i in (2, 20, 42)] == [59, 119, 49]
    t = targets.parse_target("superclass:0", 1000)
    assert t.num_targets == 13
    for bad in (8, 10, 34):
        with pytest.raises(JaxnetsError, match="single class"):
            targets.parse_target(f"superclass:{bad}", 1000)
    # CRLF files parse the same
    crlf = superclasses.IMAGENET_SCN2C_CSV.replace("\n", "\r\n")
    assert superclasses.parse_scn2c(crlf) == scn2c


@pytest.mark.parametrize("text,classes,match", [
    ("superclass:20", 100, "0..19"), ("superclass:67", 1000, "0..66"), ("binary:10", 10, "out of range"),
    ("binary:-1", 10, "out of range"), ("binary:3,3", 10, "different"), ("multi:1", 10, "unknown --target"),
    ("superclass:0", 10, "random"), ("binary:x", 10, "integers"),
])
def test_seam_bad_targets(text: str, classes: int, match: str) -> None:
    with pytest.raises(JaxnetsError, match=match):
        targets.parse_target(text, classes)


def test_seam_random_superclass() -> None:
    t = targets.parse_target("superclass:0", 100, superclass_type="random", n_classes=7, seed=3)
    import random

    order = list(range(100))
    random.seed(3)
    random.shuffle(order)
    assert t.classes == tuple(order[:7])
    with pytest.raises(JaxnetsError, match="n-classes"):
        targets.parse_target("superclass:0", 100, superclass_type="random")
