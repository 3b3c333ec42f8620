"""Loaders for a (model, source) pair: the right per-image and batch transforms chosen once."""

from __future__ import annotations

from typing import Any

from jaxnets.errors import DataError
from jaxnets.models.registry import ModelSpec


def _per_image_eval(spec: ModelSpec, source: Any) -> Any:
    from jaxnets.data import transforms

    shape = getattr(source, "image_shape", None)
    if spec.input_size >= 128 and (shape is None or shape[0] != spec.input_size):
        return transforms.imagenet_eval
    return None


def adapt_to_data(spec: ModelSpec, source: Any, num_classes: int) -> ModelSpec:
    """The spec with the data's channel count (first convs infer it; a checkpoint must still fit),
    after checking that the labels fit the head."""
    import dataclasses

    shape = getattr(source, "image_shape", None)
    if shape is not None and shape[-1] != spec.in_channels:
        # The model's RGB normalisation cannot apply: use the data's own (digits, else MNIST's).
        norm = "digits" if getattr(source, "name", "") == "digits" else ("mnist" if shape[-1] == 1 else "none")
        spec = dataclasses.replace(spec, in_channels=int(shape[-1]), normalization=norm)
    top = int(source.labels.max()) + 1 if len(source.labels) else 0
    if top > num_classes:
        raise DataError(f"the data has labels up to {top - 1} but {spec.name} has {num_classes} "
                        "classes (pass --num-classes or choose matching data)")
    return spec


def eval_loader(spec: ModelSpec, source: Any, batch_size: int, **kwargs: Any) -> Any:
    from jaxnets.data.loader import Loader

    return Loader(source, batch_size, shuffle=False, drop_last=False, pad_last=True,
                  per_image=_per_image_eval(spec, source), **kwargs)


def train_loader(spec: ModelSpec, source: Any, batch_size: int, *, seed: int, augment: bool = True,
                 shuffle: bool = True, **kwargs: Any) -> Any:
    from jaxnets.data import transforms
    from jaxnets.data.loader import Loader

    shape = getattr(source, "image_shape", None)
    per_image, batch_aug = None, None
    if spec.input_size >= 128 and (shape is None or shape[0] != spec.input_size):
        per_image = transforms.imagenet_train if augment else transforms.imagenet_eval
    elif augment and shape is not None and shape[0] == 32:
        batch_aug = transforms.cifar_augment
    return Loader(source, batch_size, shuffle=shuffle, seed=seed, drop_last=True, pad_last=False,
                  per_image=per_image, augment=batch_aug, **kwargs)
