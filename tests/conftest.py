"""Test set-up: fake CPU devices and a persistent compilation cache, before JAX starts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jaxnets.runtime import configure_xla_flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
configure_xla_flags()  # the CLI's oneDNN flags (jaxlib ≥ 0.12 on x86), before the backend starts
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
_CACHE = Path(__file__).resolve().parents[1] / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

SHARED_DATA = Path(os.environ.get("JAXNETS_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; the test is skipped (with the reason) where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set JAXNETS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cifar_exact(shared_data: Path) -> Path:
    path = shared_data / "cifar10-exact-subset" / "cifar-10-batches-bin"
    if not path.is_dir():
        pytest.skip(f"exact CIFAR-10 subset not found at {path}")
    return path


_TEST_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "test-data"


@pytest.fixture(scope="session")
def cifar_jpeg(shared_data: Path) -> Path:
    """The JPEG CIFAR-10 image folder (``train/``, ``test/``), extracted once per checkout.

    Extraction goes to a temporary folder renamed into place, so parallel workers never see a
    half-extracted tree.
    """
    import tarfile
    import tempfile

    archive = shared_data / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    final = _TEST_CACHE / "cifar10-jpeg"
    if not (final / ".complete").exists():
        _TEST_CACHE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=_TEST_CACHE))
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        root = tmp if (tmp / "test").is_dir() else next(p.parent for p in tmp.glob("*/test"))
        (root / ".complete").touch()
        try:
            root.rename(final)
        except OSError:  # another worker won the race
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return final
