"""Loaders for a (model, source) pair: the right per-image and batch transforms chosen once.

One rule decides the size the model sees (:func:`fed_size`): a 224-px model (input size ≥ 128)
gets the ImageNet resize/crop on images of another or of varying size, unless the source is a
:class:`~jaxnets.data.resize.FixedSizeSource` (``jaxnets train``, with or without
``--upscale``); every other model sees the data's own size. :func:`adapt_to_data`, which every
command calls, refuses a size below the model's ``min_input_size``.
"""

from __future__ import annotations

from typing import Any

from jaxnets.data import transforms
from jaxnets.data.loader import Loader
from jaxnets.data.resize import FixedSizeSource
from jaxnets.errors import DataError
from jaxnets.models.registry import ModelSpec

# imagenet_train / imagenet_eval end in a 224×224 crop.
IMAGENET_CROP = 224


def _upscale_of(source: Any) -> Any:
    return source.upscale if isinstance(source, FixedSizeSource) else None


def _imagenet_resize(spec: ModelSpec, source: Any) -> bool:
    """Whether the loaders bring each image to the model with the ImageNet resize/crop."""
    shape = getattr(source, "image_shape", None)
    return (spec.input_size >= 128 and not isinstance(source, FixedSizeSource)
            and (shape is None or shape[0] != spec.input_size))


def fed_size(spec: ModelSpec, source: Any) -> tuple[int, int] | None:
    """(H, W) of the images the model will see; None when they vary (and are fed as they are)."""
    if _imagenet_resize(spec, source):
        return IMAGENET_CROP, IMAGENET_CROP
    shape = getattr(source, "image_shape", None)
    return (int(shape[0]), int(shape[1])) if shape is not None else None


def check_input_size(spec: ModelSpec, source: Any) -> None:
    """A one-line error when the images are smaller than the model supports (its last feature
    map would be empty: NaN or input-independent logits), or of another size than a model with a
    fixed input size takes (a shape error deep in the first forward pass otherwise)."""
    size = fed_size(spec, source)
    if size is None:
        return
    upscale = _upscale_of(source)
    given = f" with {upscale.describe()}" if upscale is not None else ""
    side = spec.input_size
    if spec.fixed_input_size and size != (side, side):
        raise DataError(f"{spec.name} takes {side}×{side} px inputs only (its parameter shapes depend on the "
                        f"input size) but the data's are {size[0]}×{size[1]}{given}; resize them to {side} px "
                        f"(`jaxnets train … --upscale {side}`) or use data of that size")
    least = spec.min_input_size
    if least is None or min(size) >= least:
        return
    raise DataError(f"{spec.name} needs input images of at least {least}×{least} px but the data's are "
                    f"{size[0]}×{size[1]}{given} (its last feature map would be empty: NaN logits); use "
                    f"larger images, or upscale them with `jaxnets train … --upscale N` (N ≥ {least})")


def adapt_to_data(spec: ModelSpec, source: Any, num_classes: int) -> ModelSpec:
    """The spec with the data's channel count (first convs infer it; a checkpoint must still fit),
    after checking that the labels fit the head and the images are large enough for the model."""
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
    check_input_size(spec, source)
    return spec


def eval_loader(spec: ModelSpec, source: Any, batch_size: int, *, eval_resize: str = "crop",
                **kwargs: Any) -> Any:
    """Batches in dataset order; ``eval_resize`` names the ImageNet eval transform where one
    applies (``crop``: resize 256 + centre 224; ``squash``: resize to 224×224)."""
    if eval_resize not in transforms.IMAGENET_EVAL_RESIZES:
        raise DataError(f"unknown eval resize '{eval_resize}'; use one of "
                        f"{', '.join(transforms.IMAGENET_EVAL_RESIZES)}")
    per_image = transforms.IMAGENET_EVAL_RESIZES[eval_resize] if _imagenet_resize(spec, source) else None
    return Loader(source, batch_size, shuffle=False, drop_last=False, pad_last=True,
                  per_image=per_image, **kwargs)


def train_loader(spec: ModelSpec, source: Any, batch_size: int, *, seed: int, augment: bool = True,
                 shuffle: bool = True, **kwargs: Any) -> Any:
    shape = getattr(source, "image_shape", None)
    per_image, batch_aug = None, None
    if _imagenet_resize(spec, source):
        per_image = transforms.imagenet_train if augment else transforms.imagenet_eval
    elif augment and shape is not None and (shape[0] == 32 or _upscale_of(source) is not None):
        # CIFAR's pad-4 crop + flip; on upscaled CIFAR the same at the new size, after the
        # resize (specs/hyperplane-arrangements.md §5.2).
        batch_aug = transforms.cifar_augment
    return Loader(source, batch_size, shuffle=shuffle, seed=seed, drop_last=True, pad_last=False,
                  per_image=per_image, augment=batch_aug, **kwargs)
