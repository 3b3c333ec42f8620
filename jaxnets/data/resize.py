"""``--upscale N [--upscale-padding P]``: every image resized to N×N, then zero-padded by P px.

The hyperplane code's ``--upscale`` is N = 224 and its ``--upscale-padding`` is N = 112, P = 56
(specs/hyperplane-arrangements.md §4.1, §5.2): PIL bilinear on the uint8 image, in the host
pipeline. :class:`FixedSizeSource` marks a source whose images reach the model at exactly their
size (resized or not): the loaders then add no ImageNet resize/crop of their own, so the model
sees the data's size, as in the original ``train.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from jaxnets.data.sources import Source
from jaxnets.errors import DataError


@dataclass(frozen=True)
class Upscale:
    """Resize to ``size``×``size`` px (bilinear), then zero-pad ``padding`` px on every side."""

    size: int
    padding: int = 0

    @property
    def output_size(self) -> int:
        return self.size + 2 * self.padding

    def describe(self) -> str:
        """The options that give it, e.g. ``--upscale 112 --upscale-padding 56``."""
        return f"--upscale {self.size}" + (f" --upscale-padding {self.padding}" if self.padding else "")


def parse_upscale(size: int | None, padding: int | None = None) -> Upscale | None:
    """The checked options; None when ``--upscale`` is not given."""
    if size is None:
        if padding:
            raise DataError("--upscale-padding needs --upscale N (the size before padding), e.g. "
                            "--upscale 112 --upscale-padding 56")
        return None
    if int(size) < 1:
        raise DataError(f"--upscale must be a size in px ≥ 1 (got {size})")
    if padding is not None and int(padding) < 0:
        raise DataError(f"--upscale-padding must be ≥ 0 px (got {padding})")
    return Upscale(int(size), int(padding or 0))


def resize_and_pad(image: np.ndarray, upscale: Upscale) -> np.ndarray:
    """One uint8 HWC image resized (PIL bilinear, as torchvision's Resize) and zero-padded."""
    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(pil.resize((upscale.size, upscale.size), Image.BILINEAR), dtype=np.uint8)
    out = out.reshape(upscale.size, upscale.size, channels)
    p = upscale.padding
    return np.pad(out, ((p, p), (p, p), (0, 0))) if p else out


class FixedSizeSource(Source):
    """``source`` whose images are fed to the model as they are here: resized by ``upscale``
    when given, else untouched (then ``source`` must have one image size)."""

    def __init__(self, source: Source, upscale: Upscale | None = None):
        self.source, self.upscale = source, upscale
        self.name, self.split, self.spec = source.name, source.split, source.spec
        self.num_classes, self.class_names = source.num_classes, list(source.class_names)
        self.labels = source.labels
        if upscale is None:
            self.image_shape, self.in_memory = source.image_shape, source.in_memory
        else:
            channels = source.image_shape[-1] if source.image_shape is not None else 3
            side = upscale.output_size
            self.image_shape = (side, side, channels)
            # Resizing is per image: the loader fetches images one by one on its worker threads.
            self.in_memory = False

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image, label = self.source[i]
        return (image if self.upscale is None else resize_and_pad(image, self.upscale)), label

    def get_images(self, idx: np.ndarray) -> list[np.ndarray]:
        images = self.source.get_images(idx)
        return images if self.upscale is None else [resize_and_pad(im, self.upscale) for im in images]

    def get_batch(self, idx: np.ndarray) -> np.ndarray:
        if self.upscale is None:
            return self.source.get_batch(idx)
        return super().get_batch(idx)

    def describe(self) -> str:
        if self.upscale is None:
            return self.source.describe()
        side = self.upscale.output_size
        return f"{self.source.describe()} — {self.upscale.describe()}: fed at {side}×{side}"
