"""Image decoding that is never silently wrong: 16-bit, CMYK, palette, alpha and gray images each
decode by the documented rule, and the decode cache can neither mix up two folders nor crash on a
damaged cache file."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxnets.data import sources
from jaxnets.data.sources import ImageFolderSource, _decode_image
from jaxnets.data.spec import open_source
from jaxnets.errors import DataError

SIXTEEN_BIT = np.array([[0, 255, 256, 32896], [32767, 32768, 65279, 65535]], np.uint16)


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own decode cache (never the user's ~/.cache)."""
    monkeypatch.setenv("JAXNETS_CACHE_DIR", str(tmp_path / "jaxnets-cache"))
    return tmp_path / "jaxnets-cache" / "decoded"


def _png16(path: Path, samples: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written chunk by chunk (Pillow cannot write 16-bit colour):
    colour type 0 = gray (H, W), 2 = RGB (H, W, 3)."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + samples[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _gray3(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


# ---------------------------------------------------------------------------------------------
# The decoding rule


def test_sixteen_bit_gray_keeps_its_high_byte(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(SIXTEEN_BIT).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")  # the case convert("RGB") clips to 255
    decoded = _decode_image(path)
    assert decoded.dtype == np.uint8 and decoded.shape == (2, 4, 3)
    np.testing.assert_array_equal(decoded, _gray3((SIXTEEN_BIT >> 8).astype(np.uint8)))
    assert decoded[1, 3, 0] == 255 and decoded[0, 3, 0] == 128  # 65535 -> 255, 32896 -> 128
    assert decoded[0, 1, 0] == 0  # 255 is dark in 16 bits, not white


def test_sixteen_bit_gray_png_written_by_hand(tmp_path: Path) -> None:
    path = _png16(tmp_path / "g16b.png", SIXTEEN_BIT, color_type=0)
    np.testing.assert_array_equal(_decode_image(path), _gray3((SIXTEEN_BIT >> 8).astype(np.uint8)))


def test_sixteen_bit_colour_follows_the_same_rule(tmp_path: Path) -> None:
    rgb = np.stack([SIXTEEN_BIT, SIXTEEN_BIT[::-1], 65535 - SIXTEEN_BIT], axis=-1)
    path = _png16(tmp_path / "rgb16.png", rgb, color_type=2)
    np.testing.assert_array_equal(_decode_image(path), (rgb >> 8).astype(np.uint8))


def test_thirty_two_bit_integer_images(tmp_path: Path) -> None:
    ok = tmp_path / "i32.tif"
    Image.fromarray(SIXTEEN_BIT.astype(np.int32)).save(ok)
    np.testing.assert_array_equal(_decode_image(ok), _gray3((SIXTEEN_BIT >> 8).astype(np.uint8)))
    too_big = tmp_path / "big.tif"
    Image.fromarray(np.array([[0, 70000]], np.int32)).save(too_big)
    with pytest.raises(ValueError, match="outside the 16-bit range"):
        _decode_image(too_big)
    floats = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.5, 1.0]], np.float32)).save(floats)
    with pytest.raises(ValueError, match="floating-point"):
        _decode_image(floats)


def test_cmyk_jpeg_decodes_like_pillow(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cmyk = Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "CMYK")
    path = tmp_path / "c.jpg"
    cmyk.save(path, quality=95)
    decoded = _decode_image(path)
    assert decoded.shape == (16, 16, 3) and decoded.dtype == np.uint8
    with Image.open(path) as im:
        assert im.mode == "CMYK"
        np.testing.assert_array_equal(decoded, np.asarray(im.convert("RGB")))
    # and close to the colours that were saved (JPEG is lossy)
    expected = np.asarray(cmyk.convert("RGB")).astype(int)
    assert np.abs(decoded.astype(int) - expected).mean() < 12


def test_alpha_is_dropped_not_composited(tmp_path: Path) -> None:
    rgba = np.array([[[10, 20, 30, 0], [200, 100, 50, 128], [1, 2, 3, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(_decode_image(tmp_path / "rgba.png"), rgba[..., :3])
    la = np.array([[[10, 0], [200, 128], [77, 255]]], np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(_decode_image(tmp_path / "la.png"), _gray3(la[..., 0]))


def test_palette_images_use_their_palette(tmp_path: Path) -> None:
    pal = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    pal.putpalette([255, 0, 0, 0, 0, 255, 9, 8, 7])
    pal.save(tmp_path / "p.png", transparency=0)  # transparent entry 0 keeps its colour
    pal.save(tmp_path / "p.gif")
    want = np.array([[[255, 0, 0], [0, 0, 255], [9, 8, 7]]], np.uint8)
    np.testing.assert_array_equal(_decode_image(tmp_path / "p.png"), want)
    np.testing.assert_array_equal(_decode_image(tmp_path / "p.gif"), want)


def test_gray_and_bilevel_repeat_into_three_channels(tmp_path: Path) -> None:
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(gray, "L").save(tmp_path / "g.png")
    np.testing.assert_array_equal(_decode_image(tmp_path / "g.png"), _gray3(gray))
    Image.fromarray(gray, "L").save(tmp_path / "g.jpg", quality=95)
    jpeg = _decode_image(tmp_path / "g.jpg")
    assert jpeg.shape == (8, 8, 3)
    assert (jpeg[..., 0] == jpeg[..., 1]).all() and (jpeg[..., 1] == jpeg[..., 2]).all()
    assert np.abs(jpeg[..., 0].astype(int) - gray).mean() < 4
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    np.testing.assert_array_equal(_decode_image(tmp_path / "b.png"),
                                  _gray3(np.array([[255, 0]], np.uint8)))


def test_image_folder_applies_the_rule_through_its_cache(tmp_path: Path) -> None:
    d = tmp_path / "ds" / "test" / "a"
    d.mkdir(parents=True)
    Image.fromarray(SIXTEEN_BIT).save(d / "0.png")
    Image.fromarray(SIXTEEN_BIT[::-1].copy()).save(d / "1.png")
    src = open_source(f"imagefolder:{tmp_path / 'ds'}")
    assert src.cache_path is not None
    np.testing.assert_array_equal(src.get_batch(np.arange(2))[0],
                                  _gray3((SIXTEEN_BIT >> 8).astype(np.uint8)))


# ---------------------------------------------------------------------------------------------
# Which files are images


def _write_bmp(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # BMP: the size depends only on the image's dimensions


def test_hidden_files_are_ignored_and_odd_entries_warned(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "ds"
    _write_bmp(root / "test" / "a" / "0.bmp", np.zeros((8, 8, 3), np.uint8))
    (root / "test" / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "test" / "a" / "._0.bmp").write_bytes(b"\0\5\26\7 AppleDouble junk")
    (root / "test" / "a" / "x.png").mkdir()
    (root / "test" / ".hidden-class").mkdir()
    src = open_source(f"imagefolder:{root}")
    assert len(src) == 1 and src.class_names == ["a"]
    err = capsys.readouterr().err
    assert "warning: ignoring 1 entry with an image name that is not a file" in err
    assert "x.png" in err


def test_bad_files_are_counted_and_named(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for i in range(4):
        _write_bmp(root / "test" / "a" / f"{i}.bmp", np.full((8, 8, 3), i, np.uint8))
    (root / "test" / "a" / "1.bmp").write_bytes(b"")
    (root / "test" / "a" / "3.bmp").write_text("not an image at all")
    with pytest.raises(DataError, match=r"2 of 4 image files cannot be read .*1\.bmp: empty file"):
        open_source(f"imagefolder:{root}")
    # without the cache the per-access error names the file as well
    src = ImageFolderSource(root, "test", cache=False)
    with pytest.raises(DataError, match=r"cannot decode .*3\.bmp: not an image"):
        src[3]


def test_a_truncated_image_is_refused(tmp_path: Path, private_cache: Path) -> None:
    root = tmp_path / "ds"
    rng = np.random.default_rng(0)
    for i in range(3):
        d = root / "test" / "a"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.jpg")
    cut = root / "test" / "a" / "2.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    with pytest.raises(DataError, match=r"(?i)1 of 3 image files cannot be read .*2\.jpg: .*truncated"):
        open_source(f"imagefolder:{root}")
    assert not list(private_cache.glob("*"))  # no cache and no temporary file left behind


# ---------------------------------------------------------------------------------------------
# The decode cache


def _twin_folders(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """``one/ds`` and ``two/ds``: the same file names, sizes and times, different pixels."""
    rng = np.random.default_rng(1)
    first, second = (rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8) for _ in range(2))
    stamp = 1_600_000_000 * 10**9
    for parent, pixels in (("one", first), ("two", second)):
        root = tmp_path / parent / "ds"
        for i, img in enumerate(pixels):
            _write_bmp(root / "test" / "cls" / f"{i}.bmp", img)
        for path in sorted(root.rglob("*"), reverse=True):
            os.utime(path, ns=(stamp, stamp))
    return tmp_path / "one" / "ds", tmp_path / "two" / "ds", first, second


def test_same_named_folders_do_not_share_a_cache(tmp_path: Path) -> None:
    one, two, first, second = _twin_folders(tmp_path)
    for i in range(3):
        a, b = one / "test" / "cls" / f"{i}.bmp", two / "test" / "cls" / f"{i}.bmp"
        assert (a.stat().st_size, a.stat().st_mtime_ns) == (b.stat().st_size, b.stat().st_mtime_ns)
    src_one = open_source(f"imagefolder:{one}")
    src_two = open_source(f"imagefolder:{two}")
    np.testing.assert_array_equal(src_one.get_batch(np.arange(3)), first)
    np.testing.assert_array_equal(src_two.get_batch(np.arange(3)), second)
    assert src_one.cache_path != src_two.cache_path


def test_changed_pixels_with_restored_times_decode_again(tmp_path: Path) -> None:
    one, two, _, second = _twin_folders(tmp_path)
    open_source(f"imagefolder:{one}")
    # Copy the other folder's files over this one, keeping size and time (like `cp -a`).
    for i in range(3):
        a, b = one / "test" / "cls" / f"{i}.bmp", two / "test" / "cls" / f"{i}.bmp"
        a.write_bytes(b.read_bytes())
        os.utime(a, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns))
    np.testing.assert_array_equal(open_source(f"imagefolder:{one}").get_batch(np.arange(3)), second)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong shape", "folder"])
def test_a_damaged_cache_file_is_rebuilt(tmp_path: Path, damage: str,
                                         capsys: pytest.CaptureFixture) -> None:
    one, _, first, _ = _twin_folders(tmp_path)
    cache = open_source(f"imagefolder:{one}").cache_path
    assert cache is not None and cache.is_file()
    good = cache.read_bytes()
    if damage == "garbage":
        cache.write_bytes(b"\x93NUMPY not really" + os.urandom(64))
    elif damage == "truncated":
        cache.write_bytes(good[: len(good) - 50])
    elif damage == "empty":
        cache.write_bytes(b"")
    elif damage == "wrong shape":
        np.save(cache, np.zeros((2, 8, 8, 3), np.uint8))
    else:
        cache.unlink()
        cache.mkdir()
    capsys.readouterr()
    again = open_source(f"imagefolder:{one}")
    np.testing.assert_array_equal(again.get_batch(np.arange(3)), first)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if damage == "folder":  # nothing can be stored there: decoded into memory for this run
        assert "cannot store the decode cache" in err
    else:
        assert "decoding again" in err
        assert again.cache_path == cache and cache.read_bytes() == good
    assert not list(cache.parent.glob("*.tmp"))


def test_cache_is_written_through_a_temporary_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    one, _, first, _ = _twin_folders(tmp_path)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def recording_replace(src: str | Path, dst: str | Path) -> None:
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(sources.os, "replace", recording_replace)
    src = open_source(f"imagefolder:{one}")
    assert len(renames) == 1 and renames[0][1] == str(src.cache_path)
    assert renames[0][0].endswith(".tmp") and not Path(renames[0][0]).exists()
    np.testing.assert_array_equal(np.load(src.cache_path), first)
