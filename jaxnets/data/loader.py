"""Fixed-shape batches from a source: a seeded sampler, eval padding, background prefetch.

Position = (seed, epoch, step). The order of epoch ``e`` is
``np.random.default_rng([seed, e]).permutation(N)`` (or ``arange(N)`` without shuffling), and
the random draws of the augmentation for a batch come from
``np.random.default_rng([seed, e, step, 1])`` (batch augment) and
``np.random.default_rng([seed, e, step, 2, j])`` (per-image transform of row ``j``). So every
batch is a pure function of its position: resuming at ``(epoch, step)`` yields exactly the
remaining batches, pixel for pixel, whatever the number of worker threads.

Images stay uint8 on the host; the consumer normalises on the device inside its jitted step.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxnets.data.sources import Source, _stack
from jaxnets.errors import DataError

BatchAugment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
PerImage = Callable[[np.ndarray, np.random.Generator], np.ndarray]
# (augmented batch, the rows' positions in the source) -> batch: per-image work that must come
# after the augmentation, e.g. the original's pixel shuffle after cropping and flipping.
AfterAugment = Callable[[np.ndarray, np.ndarray], np.ndarray]

_AUGMENT_STREAM, _PER_IMAGE_STREAM = 1, 2


@dataclass
class Batch:
    """One batch. ``mask`` is False for padding rows (zeros, label 0, index -1)."""

    images: np.ndarray  # (B, H, W, C) uint8
    labels: np.ndarray  # (B,) int32
    mask: np.ndarray  # (B,) bool
    indices: np.ndarray  # (B,) int64 positions in the source, -1 for padding
    epoch: int = 0
    step: int = 0

    @property
    def num_valid(self) -> int:
        return int(self.mask.sum())


class Loader:
    """Batches of ``source`` in a seeded order.

    Training: ``shuffle=True``, ``drop_last=True`` (every batch full: static shapes).
    Evaluation: ``shuffle=False``, ``pad_last=True`` (the last batch padded to full size, mask
    False on the padding). Defaults follow ``shuffle``: ``drop_last = shuffle``,
    ``pad_last = not drop_last``. With neither, the last batch is simply shorter.

    ``augment(batch, rng)`` runs on the stacked uint8 batch; ``per_image(img, rng)`` on each
    image before stacking (e.g. ``imagenet_eval`` for images of varying size), on ``workers``
    threads. ``after_augment(batch, positions)`` runs last, on the augmented batch (before any
    padding). ``prefetch`` batches are prepared ahead on a background thread (0: none).
    """

    def __init__(self, source: Source, batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_last: bool | None = None, pad_last: bool | None = None,
                 augment: BatchAugment | None = None, per_image: PerImage | None = None,
                 after_augment: AfterAugment | None = None, prefetch: int = 2, workers: int | None = None):
        if batch_size < 1:
            raise DataError(f"batch size must be at least 1 (got {batch_size})")
        if seed < 0:
            raise DataError(f"seed must be non-negative (got {seed})")
        drop_last = shuffle if drop_last is None else drop_last
        pad_last = (not drop_last) if pad_last is None else pad_last
        if drop_last and pad_last:
            raise ValueError("drop_last and pad_last exclude each other")
        n = len(source)
        if n == 0:
            raise DataError(f"{source.name} {source.split}: the data set is empty")
        self.source = source
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.drop_last, self.pad_last = drop_last, pad_last
        self.augment, self.per_image, self.after_augment = augment, per_image, after_augment
        self.prefetch = max(0, prefetch)
        self.workers = workers if workers is not None else min(8, os.cpu_count() or 1)
        self.num_examples = n
        self.steps_per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        if self.steps_per_epoch == 0:
            raise DataError(f"batch size {batch_size} is larger than the data set ({n} images) "
                            "and incomplete batches are dropped; use a smaller --batch-size")
        self._labels = np.asarray(source.labels, dtype=np.int32)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        """The source positions of epoch ``epoch`` in visiting order."""
        if not self.shuffle:
            return np.arange(self.num_examples, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def batch_indices(self, epoch: int, step: int, order: np.ndarray | None = None) -> np.ndarray:
        order = self.order(epoch) if order is None else order
        return order[step * self.batch_size:(step + 1) * self.batch_size]

    def make_batch(self, epoch: int, step: int, order: np.ndarray | None = None,
                   pool: ThreadPoolExecutor | None = None) -> Batch:
        """Batch number ``step`` of epoch ``epoch`` (a pure function of its position)."""
        idx = self.batch_indices(epoch, step, order)
        images = self._images(idx, epoch, step, pool)
        if self.augment is not None:
            images = self.augment(images, np.random.default_rng(
                [self.seed, epoch, step, _AUGMENT_STREAM]))
        if self.after_augment is not None:
            images = self.after_augment(images, idx)
        labels = self._labels[idx]
        b = len(idx)
        mask = np.ones(b, dtype=bool)
        indices = idx.astype(np.int64)
        if self.pad_last and b < self.batch_size:
            pad = self.batch_size - b
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros(pad, np.int32)])
            mask = np.concatenate([mask, np.zeros(pad, dtype=bool)])
            indices = np.concatenate([indices, np.full(pad, -1, dtype=np.int64)])
        return Batch(np.ascontiguousarray(images), labels, mask, indices, epoch, step)

    def _images(self, idx: np.ndarray, epoch: int, step: int,
                pool: ThreadPoolExecutor | None) -> np.ndarray:
        src = self.source
        if self.per_image is None and src.in_memory:
            return src.get_batch(idx)
        fn = self.per_image

        def one(j: int) -> np.ndarray:
            img, _ = src[int(idx[j])]
            if fn is None:
                return img
            return fn(img, np.random.default_rng([self.seed, epoch, step, _PER_IMAGE_STREAM, j]))

        rows = list(pool.map(one, range(len(idx)))) if pool is not None else [
            one(j) for j in range(len(idx))]
        return _stack(rows, src)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` from ``start_step`` on (prefetched in the background).

        Close the iterator (or drop it) to stop the background thread early.
        """
        if not 0 <= start_step <= self.steps_per_epoch:
            raise DataError(f"start step {start_step} outside 0..{self.steps_per_epoch}")
        if self.prefetch == 0:
            return self._sync(epoch, start_step)
        return _PrefetchIterator(self, epoch, start_step)

    def _sync(self, epoch: int, start_step: int) -> Iterator[Batch]:
        order = self.order(epoch)
        with self._pool() as pool:
            for step in range(start_step, self.steps_per_epoch):
                yield self.make_batch(epoch, step, order, pool)

    def _pool(self) -> Any:
        import contextlib

        needs = self.workers > 1 and (self.per_image is not None or not self.source.in_memory)
        if not needs:
            return contextlib.nullcontext(None)
        return ThreadPoolExecutor(self.workers, thread_name_prefix="jaxnets-loader-worker")


_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _produce(loader: Loader, epoch: int, start_step: int, out: queue.Queue,
             stop: threading.Event) -> None:
    """The prefetch thread: it holds no reference to the iterator, so dropping the iterator
    lets it be collected (and its finaliser stop this thread)."""

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    try:
        order = loader.order(epoch)
        with loader._pool() as pool:
            for step in range(start_step, loader.steps_per_epoch):
                if stop.is_set():
                    return
                if not put(loader.make_batch(epoch, step, order, pool)):
                    return
        put(_DONE)
    except BaseException as exc:  # re-raised in the consumer
        put(_Failure(exc))


def _shutdown(stop: threading.Event, out: queue.Queue, thread: threading.Thread) -> None:
    stop.set()
    while True:  # unblock a producer waiting on a full queue
        try:
            out.get_nowait()
        except queue.Empty:
            break
    if thread.is_alive() and thread is not threading.current_thread():
        thread.join()


class _PrefetchIterator:
    """Iterator over batches prepared by a background thread into a bounded queue."""

    def __init__(self, loader: Loader, epoch: int, start_step: int):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, loader.prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce, args=(loader, epoch, start_step, self._queue, self._stop),
            name=f"jaxnets-prefetch-e{epoch}", daemon=True)
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._queue, self._thread)
        self._finished = False
        self._thread.start()

    def __iter__(self) -> _PrefetchIterator:
        return self

    def __next__(self) -> Batch:
        if self._finished:
            raise StopIteration
        while True:
            try:
                item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    self.close()  # the producer died without a word (should not happen)
                    raise StopIteration from None
        if item is _DONE:
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self.close()
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the background thread and wait for it."""
        self._finished = True
        self._finalizer()

    def __enter__(self) -> _PrefetchIterator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
