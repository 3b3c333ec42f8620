"""Process-wide set-up shared by every command: JAX config, caches, run folders, versions."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from jaxnets.errors import JaxnetsError


def cache_dir() -> Path:
    return Path(os.environ.get("JAXNETS_CACHE_DIR", Path.home() / ".cache" / "jaxnets"))


def setup_jax(devices: int | str | None = None) -> None:
    """Persistent compilation cache on by default; fake CPU devices when asked for more."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache_dir() / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    if isinstance(devices, int) and devices > 1 and jax.default_backend() == "cpu":
        try:
            if len(jax.devices()) < devices:
                raise JaxnetsError(
                    f"--devices {devices}: only {len(jax.devices())} device(s) available")
        except RuntimeError:
            pass


def parse_devices(text: str | int | None) -> int | None:
    """``--devices``: a positive count or ``auto`` (all local devices); None = 1."""
    if text in (None, "", 1, "1"):
        return None
    if text == "auto":
        import jax

        return len(jax.devices())
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise JaxnetsError(f"--devices must be a positive integer or 'auto', got {text!r}") from None
    if n < 1:
        raise JaxnetsError(f"--devices must be ≥ 1, got {n}")
    return n


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("jaxnets", "jax", "jaxlib", "flax", "optax", "orbax.checkpoint", "numpy",
                 "sklearn", "torch"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name, fromlist=["__version__"])
            except ImportError:
                continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def create_run_dir(out: str | Path | None, command: str, model: str | None = None,
                   must_not_contain: tuple[str, ...] = ()) -> Path:
    """The run folder: ``--out`` or ``runs/<command>/<model>-<timestamp>``.

    Refuses a folder that already holds one of ``must_not_contain`` so nothing is overwritten.
    """
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / command / (f"{model}-{stamp}" if model else stamp)
    path = Path(out).absolute()
    if path.exists() and not path.is_dir():
        raise JaxnetsError(f"--out {path} exists and is not a folder")
    clash = [name for name in must_not_contain if (path / name).exists()]
    if clash:
        raise JaxnetsError(f"--out {path} already holds {', '.join(clash)}; choose another folder "
                           "(nothing was overwritten)")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (tmp file + rename), so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
