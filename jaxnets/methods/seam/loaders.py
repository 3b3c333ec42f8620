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
from jaxnets.models.registry import ModelSpec


def open_split(text: str, split: str, *, limit: int | None = None, partial: bool = False) -> Data:
    """One split of ``--data`` as :class:`jaxnets.api.Data`; ``partial`` (a run that reads only
    part of it, e.g. a limited target problem) turns the image-folder decode cache off."""
    source = open_source(text, split, limit=limit, cache=False if partial else None)
    return Data(source=source, text=text, split=split, limit=limit)


class Loaders(NamedTuple):
    train: Loader
    test: Loader
    original: Loader | None  # the test images with their original labels (acc_pre), when given


def target_loaders(spec: ModelSpec, train: Source, test: Source, *, batch_size: int, seed: int,
                   augment: bool, test_original: Source | None = None) -> Loaders:
    """Shuffled training loader (seeded per epoch) and in-order test loaders, as the original's."""
    shape = getattr(test, "image_shape", None)
    big = spec.input_size >= 128 and (shape is None or shape[0] != spec.input_size)
    per_train = (transforms.imagenet_train if augment else transforms.imagenet_eval) if big else None
    per_eval = transforms.imagenet_eval if big else None
    batch_aug = transforms.cifar_augment if (augment and not big and shape is not None
                                              and shape[0] == 32) else None
    train_l = Loader(train, batch_size, shuffle=True, seed=seed, drop_last=False, pad_last=True,
                     per_image=per_train, augment=batch_aug)
    test_l = Loader(test, batch_size, shuffle=False, pad_last=True, per_image=per_eval)
    orig_l = (Loader(test_original, batch_size, shuffle=False, pad_last=True, per_image=per_eval)
              if test_original is not None else None)
    return Loaders(train_l, test_l, orig_l)
