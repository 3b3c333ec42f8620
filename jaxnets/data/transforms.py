"""Image transforms on the host (NumPy/Pillow) and normalisation (NumPy or JAX).

Randomness always comes from a ``np.random.Generator`` passed in, so the loader can make it a
pure function of (seed, epoch, step). Per-image transforms have the signature
``f(img, rng) -> img`` (eval transforms accept and ignore ``rng``); batch augmentations
``f(batch, rng) -> batch``. Images are uint8 HWC throughout; only :func:`normalize` makes floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxnets.errors import DataError

# ---------------------------------------------------------------------------------------------
# CIFAR: random flip + padded random crop, vectorised over the batch


def cifar_augment_params(rng: np.random.Generator, n: int,
                         padding: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The random draws of :func:`cifar_augment`, in order: ``flips`` (n,) bool (p = 0.5), then
    ``offsets`` (n, 2) int (row, column) of the crop in the padded image, uniform in
    0..2·padding."""
    flips = rng.random(n) < 0.5
    offsets = rng.integers(0, 2 * padding + 1, size=(n, 2))
    return flips, offsets


def apply_cifar_augment(batch: np.ndarray, flips: np.ndarray, offsets: np.ndarray,
                        padding: int = 4) -> np.ndarray:
    """Flip the images where ``flips``, zero-pad by ``padding`` and crop the original size at
    ``offsets``: one gather over the padded batch."""
    b, h, w, _ = batch.shape
    padded = np.pad(batch, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = offsets[:, 0, None] + np.arange(h)  # (B, H)
    cols = offsets[:, 1, None] + np.arange(w)  # (B, W)
    # Zero padding is symmetric, so pad(flip(x)) = flip(pad(x)): mirror the column index.
    cols = np.where(flips[:, None], (w + 2 * padding - 1) - cols, cols)
    return padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]


def cifar_augment(batch: np.ndarray, rng: np.random.Generator, *, padding: int = 4) -> np.ndarray:
    """Random horizontal flip (p = 0.5), then a random crop of the original size from the image
    zero-padded by ``padding`` px — torchvision's ``RandomHorizontalFlip`` +
    ``RandomCrop(32, padding=4)`` per image, for a whole ``(B, H, W, C)`` uint8 batch."""
    flips, offsets = cifar_augment_params(rng, len(batch), padding)
    return apply_cifar_augment(batch, flips, offsets, padding)


# ---------------------------------------------------------------------------------------------
# ImageNet-style per-image transforms (Pillow, bilinear — torchvision's behaviour on PIL images)


def _to_pil(img: np.ndarray) -> Any:
    from PIL import Image

    if img.ndim == 3 and img.shape[2] == 1:
        return Image.fromarray(img[:, :, 0], mode="L")
    return Image.fromarray(img)


def _from_pil(im: Any, channels: int) -> np.ndarray:
    arr = np.asarray(im)
    return arr[:, :, None] if channels == 1 and arr.ndim == 2 else arr


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if img.shape[:2] == (height, width):
        return img
    return _from_pil(_to_pil(img).resize((width, height), Image.BILINEAR), img.shape[2])


def resize_shorter(img: np.ndarray, size: int = 256) -> np.ndarray:
    """Resize so the shorter side is ``size`` (the longer one ``int(size · long / short)``),
    bilinear — torchvision's ``Resize(size)``."""
    h, w = img.shape[:2]
    if h <= w:
        nh, nw = size, int(size * w / h)
    else:
        nh, nw = int(size * h / w), size
    return _resize(img, nh, nw)


def center_crop(img: np.ndarray, size: int | tuple[int, int] = 224) -> np.ndarray:
    """The central ``size`` crop (offsets rounded like torchvision); zero-pads images smaller
    than the crop first."""
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = img.shape[:2]
    if ch > h or cw > w:
        pt, pl = max(0, (ch - h) // 2), max(0, (cw - w) // 2)
        pb, pr = max(0, (ch - h + 1) // 2), max(0, (cw - w + 1) // 2)
        img = np.pad(img, ((pt, pb), (pl, pr), (0, 0)))
        h, w = img.shape[:2]
    top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
    return img[top:top + ch, left:left + cw]


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                           scale: tuple[float, float] = (0.08, 1.0),
                           ratio: tuple[float, float] = (3 / 4, 4 / 3)
                           ) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of torchvision's ``RandomResizedCrop``: up to 10
    tries for a box with area fraction uniform in ``scale`` and log-uniform aspect ratio in
    ``ratio`` that fits; else the largest centred box with the ratio clamped."""
    area = height * width
    log_lo, log_hi = np.log(ratio[0]), np.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_lo, log_hi)))
        cw = int(round(np.sqrt(target * aspect)))
        ch = int(round(np.sqrt(target / aspect)))
        if 0 < cw <= width and 0 < ch <= height:
            top = int(rng.integers(0, height - ch + 1))
            left = int(rng.integers(0, width - cw + 1))
            return top, left, ch, cw
    in_ratio = width / height
    if in_ratio < min(ratio):
        cw, ch = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = height, int(round(height * max(ratio)))
    else:
        cw, ch = width, height
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def random_resized_crop(img: np.ndarray, rng: np.random.Generator, size: int = 224,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """torchvision's ``RandomResizedCrop``: a random box (:func:`random_resized_crop_box`)
    resized (bilinear) to ``size``×``size``."""
    top, left, ch, cw = random_resized_crop_box(img.shape[0], img.shape[1], rng, scale, ratio)
    return _resize(img[top:top + ch, left:left + cw], size, size)


def imagenet_eval(img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Resize the shorter side to 256 (bilinear), then the central 224×224 crop."""
    return center_crop(resize_shorter(img, 256), 224)


def imagenet_eval_squash(img: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Resize both sides to 224 (bilinear, aspect ratio not kept), no crop — torchvision's
    ``Resize((224, 224))``, the ImageNet eval transform of "Decomposing the Deep" (spec P12)."""
    return _resize(img, 224, 224)


# ImageNet eval transforms by name (``--eval-resize``): the standard resize-256/centre-crop-224
# and the squash to 224×224; both give 224×224 images.
IMAGENET_EVAL_RESIZES = {"crop": imagenet_eval, "squash": imagenet_eval_squash}


def imagenet_train(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``RandomResizedCrop(224)`` then a horizontal flip with p = 0.5 (drawn after the crop)."""
    out = random_resized_crop(img, rng, 224)
    return out[:, ::-1] if rng.random() < 0.5 else out


# ---------------------------------------------------------------------------------------------
# Normalisation


def normalize(x: Any, mean: Any, std: Any) -> Any:
    """``(x / 255 - mean) / std`` as float32, broadcast over the last (channel) axis.

    ``x`` holds pixel values 0..255 (uint8, or a float array in the same units). NumPy in,
    NumPy out; a JAX array (or a tracer inside ``jit``) gives a JAX array. A one-entry
    ``mean``/``std`` applies to every channel (grayscale). The operation order matches
    torchvision's ``ToTensor`` + ``Normalize`` so float32 results agree bit for bit.
    """
    if isinstance(x, (np.ndarray, np.generic)):
        xp: Any = np
    else:
        import jax.numpy as jnp

        xp = jnp
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    channels = x.shape[-1]
    if m.shape != s.shape or m.shape[0] not in (1, channels):
        raise DataError(f"normalisation with {m.shape[0]} mean / {s.shape[0]} std entries does "
                        f"not fit images with {channels} channel(s)")
    return (x.astype(xp.float32) / xp.float32(255.0) - m) / s


def parse_normalization(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """A registered name (``imagenet``, ``cifar``, …) or explicit ``m1,m2,m3/s1,s2,s3``."""
    from jaxnets.models.registry import NORMALIZATIONS

    key = text.strip().lower()
    if key in NORMALIZATIONS:
        return NORMALIZATIONS[key]
    if "/" in key:
        left, _, right = key.partition("/")
        try:
            mean = tuple(float(v) for v in left.split(","))
            std = tuple(float(v) for v in right.split(","))
        except ValueError:
            mean, std = (), ()
        if mean and len(mean) == len(std) and all(v > 0 for v in std):
            return mean, std
    raise DataError(f"unknown normalisation '{text}'; use one of {', '.join(NORMALIZATIONS)} "
                    "or explicit values like 0.5,0.5,0.5/0.25,0.25,0.25")


def normalization_for(model_spec: Any, override: str | None = None
                      ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for a model: ``override`` (``--normalize``) if given, else the registry's.

    ``model_spec`` is a ``ModelSpec`` or a registered model name.
    """
    if override:
        return parse_normalization(override)
    from jaxnets.models.registry import NORMALIZATIONS, get_spec

    spec = get_spec(model_spec) if isinstance(model_spec, str) else model_spec
    return NORMALIZATIONS[spec.normalization]
