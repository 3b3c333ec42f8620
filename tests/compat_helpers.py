"""Helpers of tests/test_compat.py: the CLI run from a module-scoped fixture (no capsys there), and
tiny synthetic data sets in the exact layouts of the originals' data (CIFAR-100 binary, ImageNet's
``ILSVRC/{train,val}/<wnid>``)."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest


def run_cli_captured(args: list) -> tuple[int, str, str]:
    """``jaxnets ARGS`` through ``main()`` outside a test function: (exit code, stdout, stderr)."""
    from jaxnets.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.setattr(sys, "argv", ["jaxnets", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def run_ok(args: list) -> tuple[str, str]:
    """:func:`run_cli_captured` that must succeed: (stdout, stderr)."""
    code, out, err = run_cli_captured(args)
    assert code == 0, f"jaxnets {' '.join(map(str, args))}\n{err}"
    return out, err


def write_cifar100_binary(root: Path, per_class: dict[str, Iterable[tuple[int, int]]], seed: int = 0) -> Path:
    """``root/cifar-100-binary/{train,test}.bin``: records of (coarse label, fine label, 3072 pixel
    bytes), ``per_class[split]`` = (fine class, count) pairs; the coarse label is the class's
    CIFAR-100 superclass. Returns ``root`` (what ``cifar100:DIR`` takes)."""
    from jaxnets.methods.seam.superclasses import CIFAR100_SUPERCLASSES

    coarse_of = {fine: coarse for coarse, fines in CIFAR100_SUPERCLASSES.items() for fine in fines}
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, classes in per_class.items():
        fine = np.concatenate([np.full(count, c) for c, count in classes]).astype(np.uint8)
        records = rng.integers(0, 256, size=(len(fine), 3074), dtype=np.uint8)
        records[:, 0] = [coarse_of[int(c)] for c in fine]
        records[:, 1] = fine
        records.tofile(folder / f"{split}.bin")
    return root


def write_ilsvrc(root: Path, wnids: Iterable[str], per_split: dict[str, int], seed: int = 0) -> Path:
    """``root/ILSVRC/{train,val}/<wnid>/*.JPEG`` of random non-square images (ImageNet's layout).
    Returns the ILSVRC folder (what ``imagefolder:DIR`` takes)."""
    from PIL import Image

    folder = root / "ILSVRC"
    rng = np.random.default_rng(seed)
    for split, count in per_split.items():
        for wnid in wnids:
            (folder / split / wnid).mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(40, 80, size=2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                    folder / split / wnid / f"{wnid}_{i}.JPEG")
    return folder
