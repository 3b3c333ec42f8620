"""SeaM's data: how a split is opened and the one loader rule of `seam reengineer` and `seam finetune`.

Per-image ImageNet resize/crop for a 224-px model on other-sized or mixed-size images (spec §2.8),
CIFAR crop + flip on 32-px data; the last partial batch is kept (§2.6: padded to a fixed shape, the
padding masked out of the loss).
"""

from __future__ import annotations

from typing import NamedTuple

from jaxnets.api import Data
from jaxnets.data import transforms
from jaxnets.data.loader import Loader
from jaxnets.data.sources import Source
from jaxnets.data.spec import open_source
from jaxnets.errors import JaxnetsError
from jaxnets.models.registry import ModelSpec


def open_split(text: str, split: str, *, limit: int | None = None, partial: bool = False,
               shots: int | None = None) -> Data:
    """One split of ``--data`` as :class:`jaxnets.api.Data`; ``partial`` (a run that reads only
    part of it, e.g. a limited target problem) turns the image-folder decode cache off; ``shots``
    keeps that many images of each class (the original's ``--shots``, the data layer's rule)."""
    source = open_source(text, split, limit=limit, cache=False if partial or shots else None, shots=shots)
    return Data(source=source, text=text, split=split, limit=limit)


def open_target_split(text: str, split: str, target: str | None = None, *, limit: int | None = None,
                      shots: int | None = None) -> Data:
    """One split for indirect reuse: the whole data set (``limit``: its first N images), or —
    with ``target`` (``binary:T``, ``binary:A,B``, ``superclass:I``; non-original) — that SeaM
    target problem cut from it, relabelled 0..K−1, ``limit`` balanced over its parts as in
    ``seam reengineer``. ``shots``: N images per class of the data set first."""
    if target is None:
        return open_split(text, split, limit=limit, partial=bool(limit), shots=shots)
    from jaxnets.methods.seam.targets import parse_target, target_sources

    whole = open_split(text, split, partial=limit is not None, shots=shots)
    problem = parse_target(target, whole.num_classes)
    source, _ = target_sources(whole.source, problem, limit)
    return Data(source=source, text=text, split=split, limit=limit)


def check_same_classes(train: Data, test: Data) -> None:
    """The training and test data of a fine-tuning must have the same classes (a target problem cut
    from the one and not the other would not)."""
    if train.num_classes != test.num_classes:
        raise JaxnetsError(f"the training data has {train.num_classes} classes, the test data {test.num_classes} "
                           "(cut both to the same target: open_target_split, or pass test_data)")


def is_big_input(spec: ModelSpec, source: Source) -> bool:
    """A 224-px model on images of another or of varying size: per-image ImageNet transforms."""
    shape = getattr(source, "image_shape", None)
    return spec.input_size >= 128 and (shape is None or shape[0] != spec.input_size)


def test_loader(spec: ModelSpec, source: Source, batch_size: int) -> Loader:
    """In-order evaluation batches (resize-256/centre-crop-224 where :func:`is_big_input`)."""
    per_eval = transforms.imagenet_eval if is_big_input(spec, source) else None
    return Loader(source, batch_size, shuffle=False, pad_last=True, per_image=per_eval)


class Loaders(NamedTuple):
    train: Loader
    test: Loader
    original: Loader | None  # the test images with their original labels (acc_pre), when given


def target_loaders(spec: ModelSpec, train: Source, test: Source, *, batch_size: int, seed: int,
                   augment: bool, test_original: Source | None = None) -> Loaders:
    """Shuffled training loader (seeded per epoch) and in-order test loaders, as the original's."""
    shape = getattr(test, "image_shape", None)
    big = is_big_input(spec, test)
    per_train = (transforms.imagenet_train if augment else transforms.imagenet_eval) if big else None
    batch_aug = transforms.cifar_augment if (augment and not big and shape is not None
                                              and shape[0] == 32) else None
    train_l = Loader(train, batch_size, shuffle=True, seed=seed, drop_last=False, pad_last=True,
                     per_image=per_train, augment=batch_aug)
    orig_l = test_loader(spec, test_original, batch_size) if test_original is not None else None
    return Loaders(train_l, test_loader(spec, test, batch_size), orig_l)
