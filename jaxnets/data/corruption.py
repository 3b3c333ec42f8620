"""Training-set corruption for ``jaxnets train``: label noise and pixel shuffle (spec §4.3).

Both reproduce the original tool's numpy legacy ``RandomState`` streams draw for draw, so the
same ``--noise-seed`` gives bit-identical noisy labels / permutations. The original seeds the
*global* numpy RNG; a local ``np.random.RandomState(seed)`` produces the same stream without
touching global state.

Both are keyed by **dataset index** of the full training source and draw in increasing index
order over the training indices only (validation indices draw nothing). Compose them like this
so that a validation split sees clean labels and unshuffled pixels::

    noisy = noisy_labels(full.labels, r, C, seed, train_indices=tr)
    train = Subset(CorruptedSource(full, labels=noisy), tr)
    val = Subset(full, va)

Pixel shuffle: the original applies the permutation after augmentation, ToTensor and
normalisation. Per-channel normalisation ``(x - mean_c) / std_c`` acts on each element alone, so
it commutes with a permutation of pixel positions: shuffling the uint8 image first is exactly
equivalent. Spatial transforms (random crop, flip, resize) do *not* commute with it, so
:class:`CorruptedSource` (which shuffles at the source, before the loader's transforms) is
faithful only without augmentation/resizing; otherwise shuffle the loader's output with
:meth:`PixelPermutations.apply` using the batch's dataset indices and ``hw`` = H·W of the final
image.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from jaxnets.data.sources import Source
from jaxnets.errors import DataError, JaxnetsError

# Above this size the permutation table is not materialised; blocks are regenerated on demand.
DEFAULT_MAX_TABLE_BYTES = 512 * 2**20


def _train_mask(n: int, train: np.ndarray | Sequence[int] | None, what: str) -> np.ndarray:
    """A boolean mask of length ``n`` from a mask, an index array, or None (= all)."""
    if train is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(train)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise DataError(f"{what}: training mask has shape {arr.shape}, expected ({n},)")
        return arr.copy()
    idx = arr.astype(np.int64).reshape(-1)
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        raise DataError(f"{what}: training index out of range 0..{n - 1}")
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    return mask


# --------------------------------------------------------------------------------------------
# Label noise


def noisy_labels(labels: np.ndarray, ratio: float, num_classes: int, seed: int | None,
                 train_indices: np.ndarray | None = None) -> np.ndarray:
    """The labels with a fraction ``ratio`` of the training entries corrupted (spec §4.3).

    Draw order of the original: ``rand(n_train) <= ratio`` picks the corrupted entries, then
    ``choice(range(1, C), n_corrupt)`` draws an offset per corrupted entry, and the new label is
    ``(y + offset) % C``, so a corrupted label always differs from the true one. ``n_train`` and
    the order of the draws are the training entries in increasing dataset index, whatever order
    ``train_indices`` (indices or a boolean mask; None = all) comes in. Returns a new array of
    the input dtype; non-training entries are unchanged. ``seed=None`` is fresh entropy.
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if not 0 < ratio <= 1:
        raise JaxnetsError(f"label-noise ratio must lie in (0, 1], got {ratio}")
    if num_classes < 2:
        raise JaxnetsError(f"label noise needs at least 2 classes, got {num_classes}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"labels outside 0..{num_classes - 1} (found {y.min()}..{y.max()})")
    mask = _train_mask(len(y), train_indices, "label noise")
    prng = np.random.RandomState(seed)
    out = y.copy()
    y_tr = out[mask]  # a copy, in increasing index order, like labels[train_mask]
    corrupt = prng.rand(len(y_tr)) <= ratio
    offsets = prng.choice(range(1, num_classes), int(corrupt.sum()))
    y_tr[corrupt] = (y_tr[corrupt] + offsets) % num_classes
    out[mask] = y_tr
    return out


# --------------------------------------------------------------------------------------------
# Pixel shuffle


class PixelPermutations:
    """One fixed pixel permutation per training image, keyed by dataset index.

    Built by :func:`pixel_shuffle_permutations`. ``perms[i]`` is the permutation of image ``i``
    (length ``hw``, new pixel ``j`` = old pixel ``perm[j]``) or None for a non-training index.
    ``rank[i]`` is ``i``'s position among the training indices (``-1`` otherwise): image ``i``
    uses draw number ``rank[i]`` of ``RandomState(seed).permutation(hw)``.

    Small tables are kept in memory (uint16 when ``hw <= 65536``); larger ones keep the RNG
    state every ``block`` draws and regenerate blocks on demand (an LRU cache), so e.g.
    224×224 CIFAR does not need 5 GB. Building costs one pass over the stream either way
    (about 0.6 s for 50,000 CIFAR images at 32×32, about 30 s at 224×224). Thread-safe.
    """

    def __init__(self, n: int, train_mask: np.ndarray | Sequence[int] | None, hw: int,
                 seed: int | None, *, max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES,
                 block: int = 4, cache_blocks: int = 256):
        if n < 0 or hw < 1:
            raise DataError(f"pixel shuffle needs n >= 0 and hw >= 1 (got n={n}, hw={hw})")
        self.n, self.hw, self.seed = int(n), int(hw), seed
        self.train_mask = _train_mask(self.n, train_mask, "pixel shuffle")
        self.rank = np.full(self.n, -1, dtype=np.int64)
        self.num_train = int(self.train_mask.sum())
        self.rank[self.train_mask] = np.arange(self.num_train)
        self.dtype = np.dtype(np.uint16 if hw <= 2**16 else np.int64)
        self._lock = threading.Lock()
        prng = np.random.RandomState(seed)
        if self.num_train * hw * self.dtype.itemsize <= max_table_bytes:
            self._table: np.ndarray | None = np.empty((self.num_train, hw), self.dtype)
            for k in range(self.num_train):
                self._table[k] = prng.permutation(hw)
            self._states: list = []
        else:
            # One pass to record the stream's state at each block start (the legacy shuffle
            # uses rejection sampling, so the state after k draws cannot be computed directly).
            self._table = None
            self._block = int(block)
            self._cache_blocks = max(1, int(cache_blocks))
            self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
            self._states = []
            for k in range(self.num_train):
                if k % self._block == 0:
                    self._states.append(prng.get_state())
                prng.permutation(hw)

    @property
    def is_lazy(self) -> bool:
        return self._table is None

    def __len__(self) -> int:
        return self.n

    def _perm_by_rank(self, k: int) -> np.ndarray:
        if self._table is not None:
            return self._table[k]
        b, j = divmod(k, self._block)
        with self._lock:
            rows = self._cache.get(b)
            if rows is None:
                prng = np.random.RandomState()
                prng.set_state(self._states[b])
                count = min(self._block, self.num_train - b * self._block)
                rows = np.empty((count, self.hw), self.dtype)
                for r in range(count):
                    rows[r] = prng.permutation(self.hw)
                self._cache[b] = rows
                if len(self._cache) > self._cache_blocks:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(b)
        return rows[j]

    def __getitem__(self, i: int) -> np.ndarray | None:
        i = int(i)
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        k = int(self.rank[i])
        return None if k < 0 else self._perm_by_rank(k)

    def take(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """``(B, hw)`` permutations for ``indices``; the identity for non-training indices and
        for negative ones (the loader's padding rows carry index -1)."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and idx.max() >= self.n:
            raise IndexError(f"index {idx.max()} out of range for {self.n} images")
        out = np.broadcast_to(np.arange(self.hw, dtype=np.int64), (len(idx), self.hw)).copy()
        for row, i in enumerate(idx):
            if i >= 0 and self.rank[i] >= 0:
                out[row] = self._perm_by_rank(int(self.rank[i]))
        return out

    def apply(self, images: np.ndarray, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        """Shuffle a ``(B, H, W, C)`` batch whose rows are the images at dataset ``indices``."""
        return apply_pixel_shuffle(images, self.take(indices))


def pixel_shuffle_permutations(n: int, train_mask: np.ndarray | Sequence[int] | None, hw: int,
                               seed: int | None, **kwargs: int) -> PixelPermutations:
    """The original's per-image permutations (spec §4.3): ``prng = RandomState(seed)``; for
    every dataset index ``i`` in increasing order, a training index draws
    ``prng.permutation(hw)`` and any other index draws nothing.

    ``train_mask``: a boolean mask of length ``n``, an index array, or None (all training).
    ``hw`` is H·W of the image the shuffle is applied to (the original hard-codes 1024 and so
    fails on MNIST and upscaled CIFAR; using the real size is the recommended fix).
    """
    return PixelPermutations(n, train_mask, hw, seed, **kwargs)


def apply_pixel_shuffle(images: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Permute pixel positions, the same permutation for every channel.

    ``images``: ``(B, H, W, C)`` (or one ``(H, W, C)`` image) of any dtype; ``perms``:
    ``(B, H·W)`` (or ``(H·W,)``) integer permutations over the row-major ``(H, W)`` positions.
    Pixel ``j`` of the result is pixel ``perms[j]`` of the input, i.e. the original's
    ``x.view(C, H*W)[:, perm].view(C, H, W)`` in channel-last layout.
    """
    x = np.asarray(images)
    single = x.ndim == 3
    if single:
        x = x[None]
        perms = np.asarray(perms)[None]
    if x.ndim != 4:
        raise DataError(f"pixel shuffle expects (B, H, W, C) images, got shape {x.shape}")
    b, h, w, c = x.shape
    p = np.asarray(perms, dtype=np.intp)
    if p.shape != (b, h * w):
        raise DataError(f"pixel shuffle: permutations of shape {p.shape} do not fit images "
                        f"{x.shape} (expected ({b}, {h * w}))")
    flat = x.reshape(b, h * w, c)
    out = np.take_along_axis(flat, p[:, :, None], axis=1).reshape(b, h, w, c)
    return out[0] if single else out


# --------------------------------------------------------------------------------------------
# The wrapper the loader sees


class CorruptedSource(Source):
    """``source`` with replaced labels and/or per-image pixel permutations.

    ``labels``: the full label vector (e.g. from :func:`noisy_labels`), one per image of
    ``source``. ``pixel_perms``: a :class:`PixelPermutations` keyed by positions in ``source``.
    Same surface as any :class:`Source`, so :class:`~jaxnets.data.loader.Loader` and
    :class:`~jaxnets.data.sources.Subset` work unchanged; ``clean_labels`` keeps the originals.
    """

    def __init__(self, source: Source, labels: np.ndarray | None = None,
                 pixel_perms: PixelPermutations | None = None):
        n = len(source)
        self.source = source
        self.name, self.split, self.spec = source.name, source.split, source.spec
        self.num_classes, self.class_names = source.num_classes, list(source.class_names)
        self.image_shape, self.in_memory = source.image_shape, source.in_memory
        self.clean_labels = np.asarray(source.labels)
        if labels is None:
            self.labels = self.clean_labels
        else:
            lab = np.asarray(labels, dtype=np.int64).reshape(-1)
            if len(lab) != n:
                raise DataError(f"{source.name}: {len(lab)} labels for {n} images")
            if len(lab) and (lab.min() < 0 or lab.max() >= self.num_classes):
                raise DataError(f"{source.name}: corrupted labels outside 0..{self.num_classes - 1}")
            self.labels = lab
        if pixel_perms is not None:
            if len(pixel_perms) != n:
                raise DataError(f"{source.name}: pixel permutations for {len(pixel_perms)} images, "
                                f"the source has {n}")
            shape = source.image_shape
            if shape is not None and shape[0] * shape[1] != pixel_perms.hw:
                raise DataError(f"{source.name}: pixel permutations of length {pixel_perms.hw} do "
                                f"not fit {shape[0]}×{shape[1]} images")
        self.pixel_perms = pixel_perms

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        img, _ = self.source[i]
        if self.pixel_perms is not None:
            perm = self.pixel_perms[int(i)]
            if perm is not None:
                img = apply_pixel_shuffle(img, perm)
        return img, int(self.labels[i])

    def get_images(self, idx: np.ndarray) -> list[np.ndarray]:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        images = self.source.get_images(idx)
        if self.pixel_perms is None:
            return images
        perms = self.pixel_perms.take(np.where(idx < 0, idx + len(self), idx))
        return [apply_pixel_shuffle(img, p) for img, p in zip(images, perms, strict=True)]

    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        batch = self.source.get_batch(idx)
        if self.pixel_perms is None:
            return batch
        return apply_pixel_shuffle(batch, self.pixel_perms.take(np.where(idx < 0, idx + len(self), idx)))

    def describe(self) -> str:
        parts = []
        if self.labels is not self.clean_labels:
            changed = int((self.labels != self.clean_labels).sum())
            parts.append(f"{changed} noisy labels")
        if self.pixel_perms is not None:
            parts.append(f"pixel shuffle on {self.pixel_perms.num_train} images")
        return self.source.describe() + (f" — corrupted: {', '.join(parts)}" if parts else "")
