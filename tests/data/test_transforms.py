"""Host transforms (CIFAR augmentation, ImageNet resize/crop) and normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from jaxnets.data.transforms import (
    center_crop,
    cifar_augment,
    cifar_augment_params,
    imagenet_eval,
    imagenet_train,
    normalization_for,
    normalize,
    random_resized_crop,
    random_resized_crop_box,
    resize_shorter,
)
from jaxnets.errors import DataError
from jaxnets.models.registry import NORMALIZATIONS


def _per_image_reference(img: np.ndarray, flip: bool, dy: int, dx: int) -> np.ndarray:
    """RandomHorizontalFlip then RandomCrop(32, padding=4), one image, written out plainly."""
    if flip:
        img = img[:, ::-1]
    padded = np.zeros((img.shape[0] + 8, img.shape[1] + 8, img.shape[2]), img.dtype)
    padded[4:-4, 4:-4] = img
    return padded[dy:dy + img.shape[0], dx:dx + img.shape[1]]


def test_cifar_augment_matches_per_image_reference() -> None:
    batch = np.random.default_rng(0).integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
    out = cifar_augment(batch, np.random.default_rng(42))
    assert out.shape == batch.shape and out.dtype == np.uint8
    # The same draws, in the documented order: 64 flips, then 64 (row, column) offsets.
    rng = np.random.default_rng(42)
    flips = rng.random(64) < 0.5
    offsets = rng.integers(0, 9, size=(64, 2))
    for i in range(64):
        np.testing.assert_array_equal(
            out[i], _per_image_reference(batch[i], flips[i], *offsets[i]))
    assert 10 < flips.sum() < 54  # both branches exercised


def test_cifar_augment_offsets_cover_range() -> None:
    flips, offsets = cifar_augment_params(np.random.default_rng(1), 4000)
    assert set(offsets[:, 0].tolist()) == set(range(9))
    assert set(offsets[:, 1].tolist()) == set(range(9))
    assert 0.45 < flips.mean() < 0.55
    # Offset (4, 4) without a flip is the identity; (0, 0) shifts the image down-right by 4.
    batch = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1) + 1
    from jaxnets.data.transforms import apply_cifar_augment

    out = apply_cifar_augment(batch, np.array([False, False]), np.array([[4, 4], [0, 0]]))
    np.testing.assert_array_equal(out[0], batch[0])
    assert not out[1, :4].any() and not out[1, :, :4].any()  # 4 ≥ image size: all padding
    out = apply_cifar_augment(batch, np.array([True, False]), np.array([[4, 4], [4, 4]]),
                              padding=4)
    np.testing.assert_array_equal(out[0], batch[0, :, ::-1])


def test_resize_shorter_and_center_crop() -> None:
    img = np.random.default_rng(0).integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    out = resize_shorter(img, 256)
    assert out.shape == (256, 341, 3)
    expected = np.asarray(Image.fromarray(img).resize((341, 256), Image.BILINEAR))
    np.testing.assert_array_equal(out, expected)
    assert resize_shorter(img.transpose(1, 0, 2), 256).shape == (341, 256, 3)
    assert resize_shorter(img[:256, :300], 256).shape == (256, 300, 3)  # already the size
    crop = center_crop(out, 224)
    # torchvision: top = round((256 - 224) / 2) = 16, left = round((341 - 224) / 2) = 58.
    np.testing.assert_array_equal(crop, out[16:240, 58:282])
    small = center_crop(np.ones((10, 20, 1), np.uint8), 16)
    assert small.shape == (16, 16, 1) and small[:3].sum() == 0 and small[3:13, :].all()


def test_imagenet_eval_and_grayscale() -> None:
    img = np.random.default_rng(1).integers(0, 256, size=(500, 375, 3), dtype=np.uint8)
    out = imagenet_eval(img)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    resized = np.asarray(Image.fromarray(img).resize((256, 341), Image.BILINEAR))
    np.testing.assert_array_equal(out, resized[58:282, 16:240])
    gray = imagenet_eval(img[..., :1])
    assert gray.shape == (224, 224, 1)
    np.testing.assert_array_equal(gray[..., 0], np.asarray(
        Image.fromarray(img[..., 0]).resize((256, 341), Image.BILINEAR))[58:282, 16:240])


def test_random_resized_crop() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(20, 400, size=2))
        top, left, ch, cw = random_resized_crop_box(h, w, rng)
        assert top >= 0 and top + ch <= h and left >= 0 and left + cw <= w and ch > 0 < cw
    # Boxes that succeed keep area ∈ scale and aspect ∈ ratio (up to rounding).
    for _ in range(200):
        top, left, ch, cw = random_resized_crop_box(400, 400, rng)
        assert 0.08 * 160000 * 0.9 <= ch * cw <= 160000
        assert 3 / 4 * 0.9 <= cw / ch <= 4 / 3 * 1.1
    # Impossible scale → the centred fallback with the ratio clamped.
    assert random_resized_crop_box(100, 400, rng, scale=(2.0, 3.0)) == (0, 133, 100, 133)
    img = np.random.default_rng(2).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    a = random_resized_crop(img, np.random.default_rng(9), 64)
    b = random_resized_crop(img, np.random.default_rng(9), 64)
    assert a.shape == (64, 64, 3)
    np.testing.assert_array_equal(a, b)
    t = imagenet_train(img, np.random.default_rng(3))
    assert t.shape == (224, 224, 3) and t.dtype == np.uint8


def test_normalize_numpy_and_jax() -> None:
    import jax
    import jax.numpy as jnp

    x = np.random.default_rng(0).integers(0, 256, size=(2, 4, 4, 3), dtype=np.uint8)
    mean, std = NORMALIZATIONS["imagenet"]
    out = normalize(x, mean, std)
    assert out.dtype == np.float32 and isinstance(out, np.ndarray)
    ref = (x.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_allclose(out[1, 2, 3], (x[1, 2, 3] / 255 - np.array(mean)) / np.array(std),
                               rtol=1e-6)
    jitted = jax.jit(lambda v: normalize(v, mean, std))(jnp.asarray(x))
    assert jitted.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(jitted), out, rtol=1e-6, atol=1e-6)
    floats = normalize(x.astype(np.float32), mean, std)  # same pixel units, same result
    np.testing.assert_array_equal(floats, out)
    gray = normalize(x[..., :1], (0.5,), (0.5,))
    np.testing.assert_array_equal(gray, (x[..., :1] / np.float32(255) - 0.5) / 0.5)
    with pytest.raises(DataError, match="channel"):
        normalize(x[..., :1], mean, std)


def test_normalize_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).integers(0, 256, size=(2, 5, 5, 3), dtype=np.uint8)
    mean, std = NORMALIZATIONS["cifar"]
    t = torch.from_numpy(x).float().div(255)
    t = t.sub(torch.tensor(mean)).div(torch.tensor(std))
    np.testing.assert_array_equal(normalize(x, mean, std), t.numpy())


def test_normalization_for() -> None:
    from jaxnets.models.registry import get_spec

    spec = get_spec("resnet20")
    assert normalization_for(spec, None) == NORMALIZATIONS[spec.normalization]
    assert normalization_for("resnet20") == NORMALIZATIONS[spec.normalization]
    assert normalization_for(spec, "cifar") == NORMALIZATIONS["cifar"]
    assert normalization_for(spec, "0.5,0.4,0.3/0.2,0.2,0.25") == ((0.5, 0.4, 0.3),
                                                                 (0.2, 0.2, 0.25))
    for bad in ("bogus", "0.5,0.5/0.2", "1/0"):
        with pytest.raises(DataError, match="unknown normalisation"):
            normalization_for(spec, bad)
