"""Validation splits and class subsampling for ``jaxnets train`` (spec §4.4, §4.5).

The original seeds numpy's *global* legacy RNG and shuffles with it; a local
``np.random.RandomState(seed).shuffle`` draws the same stream (for a list or an array alike), so
the same seeds select the same images and classes without touching global state.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxnets.data.sources import Source, Subset
from jaxnets.errors import DataError, JaxnetsError


def validation_split(n: int, labels: np.ndarray | Sequence[int] | None, fraction: float, *,
                     shuffle: bool, seed: int | None,
                     stratified: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: positions in a training set of ``n`` images.

    Non-stratified (the original): ``idx = 0..n-1``, shuffled with ``RandomState(seed)`` only
    when ``shuffle``; ``n_val = floor(n·fraction)``; train = the first ``n - n_val`` entries,
    validation = the last ``n_val`` (both in that possibly shuffled order).

    Stratified (a fix: the original always raises, see spec §7 #11): sklearn's
    ``StratifiedShuffleSplit(test_size=fraction, random_state=seed)`` on the per-sample
    ``labels``, which is what the original's ``train_test_split(..., stratify=...)`` call meant.
    It always shuffles (``shuffle`` is ignored) and sizes the validation part as
    ``ceil(n·fraction)`` (sklearn's rule); each class's share is within one image of exact.
    """
    if not 0 < fraction < 1:
        raise JaxnetsError(f"the validation fraction must lie in (0, 1), got {fraction}")
    n = int(n)
    if stratified:
        return _stratified(n, labels, fraction, seed)
    n_val = int(np.floor(n * fraction))
    if n_val < 1:
        raise DataError(f"a validation fraction of {fraction} of {n} images leaves no validation "
                        "images")
    return holdout_split(n, n_val, shuffle=shuffle, seed=seed)


def holdout_split(n: int, n_val: int, *, shuffle: bool, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` holding out ``n_val`` of ``n`` images: ``idx = 0..n-1``, shuffled
    with ``RandomState(seed)`` when ``shuffle``; train = the first ``n - n_val``, validation = the
    last ``n_val`` (a count: WFN's 45k/5k CIFAR-10 split is ``holdout_split(50000, 5000, …)``)."""
    n, n_val = int(n), int(n_val)
    if not 1 <= n_val < n:
        raise DataError(f"cannot hold out {n_val} of {n} images for validation (need 1 ≤ count < {n})")
    idx = np.arange(n, dtype=np.int64)
    if shuffle:
        np.random.RandomState(seed).shuffle(idx)
    return idx[:n - n_val], idx[n - n_val:]


def _stratified(n: int, labels: np.ndarray | Sequence[int] | None, fraction: float,
                seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedShuffleSplit

    if labels is None:
        raise JaxnetsError("a stratified split needs the per-image labels")
    y = np.asarray(labels).reshape(-1)
    if len(y) != n:
        raise DataError(f"stratified split: {len(y)} labels for {n} images")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    try:
        train_idx, val_idx = next(splitter.split(np.zeros((n, 1)), y))
    except ValueError as exc:  # e.g. a class with a single image, or fewer val images than classes
        raise DataError(f"stratified split impossible: {exc}") from None
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def subsample_classes(class_ids: Sequence[int], n: int, *, shuffle: bool,
                      seed: int | None) -> list[int]:
    """The ``n`` classes to keep, in their new label order (spec §4.5).

    ``sorted(class_ids)``, shuffled in place with ``RandomState(seed)`` when ``shuffle``, then
    the first ``n``. (ImageNet's class ids are the ranks of its sorted wnids, so sorting ids is
    sorting wnids, as the original does.) Store the result in the snapshot metadata and reuse
    it, rather than sampling again (spec §7 #9).
    """
    classes = sorted(int(c) for c in class_ids)
    if len(set(classes)) != len(classes):
        raise JaxnetsError("class subsampling: duplicate class ids")
    if not 1 <= n <= len(classes):
        raise JaxnetsError(f"cannot keep {n} of {len(classes)} classes "
                           f"(choose 1..{len(classes)})")
    if shuffle:
        np.random.RandomState(seed).shuffle(classes)
    return classes[:n]


def relabel(source: Source, kept_classes: Sequence[int]) -> Subset:
    """The images of ``kept_classes`` only, labels mapped to their position in that list
    (0..N-1), for any data set (the original did this for ImageNet only, spec §7 #10).

    The images keep dataset order; the returned view's ``classes`` attribute is the kept class
    list (original ids), for the snapshot metadata.
    """
    kept = [int(c) for c in kept_classes]
    if not kept:
        raise JaxnetsError("relabel: no classes to keep")
    if len(set(kept)) != len(kept):
        raise JaxnetsError("relabel: duplicate class ids")
    bad = [c for c in kept if not 0 <= c < source.num_classes]
    if bad:
        raise DataError(f"{source.name}: class ids {bad} outside 0..{source.num_classes - 1}")
    idx = np.flatnonzero(np.isin(source.labels, kept))
    return Subset(source, idx, classes=kept, relabel=True)
