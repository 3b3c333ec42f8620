"""Process-wide set-up shared by every command: JAX config, caches, run folders, versions."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import itertools
import json
import math
import os
import platform
import sys
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from jaxnets.errors import JaxnetsError


def cache_dir() -> Path:
    return Path(os.environ.get("JAXNETS_CACHE_DIR", Path.home() / ".cache" / "jaxnets"))


# XLA:CPU from jaxlib 0.12 on x86 can lower convolutions to oneDNN custom calls; without the
# second flag its YNNPACK fusion pass claims the convolutions first.
ONEDNN_XLA_FLAGS = ("--xla_cpu_experimental_onednn_custom_call=true",
                    "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution")
ONEDNN_MIN_JAXLIB = (0, 12)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        parts.append(int(digits or 0))
    return tuple(parts)


def onednn_supported(jaxlib_version: str | None = None, machine: str | None = None) -> bool:
    """Whether the oneDNN convolution flags exist and apply here: x86 and jaxlib ≥ 0.12."""
    if jaxlib_version is None:
        try:
            jaxlib_version = importlib.metadata.version("jaxlib")
        except importlib.metadata.PackageNotFoundError:
            return False
    machine = (machine or platform.machine()).lower()
    return machine in ("x86_64", "amd64") and _version_tuple(jaxlib_version) >= ONEDNN_MIN_JAXLIB


def configure_xla_flags(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Add the oneDNN convolution flags to ``XLA_FLAGS`` where :func:`onednn_supported`.

    XLA reads ``XLA_FLAGS`` once, when the first backend starts, so this must run before any
    JAX computation (the CLI calls it first thing; tests/conftest.py before importing jax);
    later calls change nothing that is already running. A flag the user's ``XLA_FLAGS``
    already mentions is left as the user set it; ``JAXNETS_ONEDNN=0`` turns the addition off.
    Returns the flags added.
    """
    env = os.environ if environ is None else environ
    if env.get("JAXNETS_ONEDNN", "1") == "0" or not onednn_supported():
        return []
    current = env.get("XLA_FLAGS", "")
    added = [flag for flag in ONEDNN_XLA_FLAGS if flag.split("=", 1)[0] not in current]
    if added:
        env["XLA_FLAGS"] = " ".join([current, *added]).strip()
    if "onednn_custom_call=true" in env.get("XLA_FLAGS", ""):
        # jaxlib 0.12 cannot serialise executables holding oneDNN custom calls, so they skip the
        # persistent compilation cache (compiled again per process) with a misleading
        # "MemoryError: std::bad_alloc" warning at every compilation; that case is expected.
        warnings.filterwarnings("ignore", message=r"Error writing persistent compilation cache "
                                r"entry .*std::bad_alloc", category=UserWarning)
    return added


def setup_jax(devices: int | str | None = None) -> None:
    """Persistent compilation cache on by default; fake CPU devices when asked for more."""
    configure_xla_flags()  # effective only if no backend has started yet
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


# Options that never change what a run computes: a resume may give them other values.
RESUME_HARMLESS_OPTIONS = frozenset({
    "out", "resume", "config", "dry_run", "verbose", "quiet", "log_every", "progress",
    "checkpoint_every", "devices", "coordinator", "num_processes", "process_id",
})


def default_run_path(out: str | Path | None, command: str, model: str | None = None) -> Path:
    """``--out`` as given, or a new ``runs/<command>/<model>-<timestamp>`` (suffixed when taken)."""
    if out is not None:
        return Path(out).expanduser().absolute()
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs").absolute() / command / (f"{model}-{stamp}" if model else stamp)
    path, n = base, 1
    while path.exists():
        path, n = base.with_name(f"{base.name}-{n}"), n + 1
    return path


def holds_results(path: Path) -> bool:
    """The one test of the no-overwrite rule: an existing file, or a folder with anything in it."""
    if not path.exists() and not path.is_symlink():
        return False
    if path.is_dir():
        return any(path.iterdir())
    return True


def _make_folder(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".jaxnets-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise JaxnetsError(f"{what} {path}: cannot create or write it ({exc.strerror or exc})") from None


def create_run_dir(out: str | Path | None, command: str, model: str | None = None, *,
                   resume: str | Path | bool | None = None) -> Path:
    """The run folder: ``--out`` or ``runs/<command>/<model>-<timestamp>``.

    The no-overwrite rule: the folder must be new or empty. Only a command that resumes
    (``resume`` set) may reopen a folder that holds results, and :func:`check_resume_config`
    (called by ``write_config``) then refuses any option that would change the computation.
    """
    path = default_run_path(out, command, model)
    if path.exists() and not path.is_dir():
        raise JaxnetsError(f"--out {path} exists and is not a folder (nothing was overwritten)")
    if not resume and holds_results(path):
        shown = sorted(p.name for p in path.iterdir())
        more = f", … ({len(shown)} entries)" if len(shown) > 3 else ""
        raise JaxnetsError(f"--out {path} already holds results ({', '.join(shown[:3])}{more}); choose a new "
                           "folder (nothing was overwritten)")
    created = not path.exists()
    _make_folder(path, "--out")
    if created:
        _CREATED_RUN_DIRS.append(path)
    return path


# Run folders this process made; a command that fails before writing into one leaves no trace.
_CREATED_RUN_DIRS: list[Path] = []


def forget_created_run_dirs() -> None:
    """Start a new command: earlier commands' folders (in one Python process) are not this one's."""
    _CREATED_RUN_DIRS.clear()


def remove_unused_run_dirs() -> None:
    """Remove the run folders this process created that are still empty (after a refused input)."""
    while _CREATED_RUN_DIRS:
        path = _CREATED_RUN_DIRS.pop()
        with contextlib.suppress(OSError):
            path.rmdir()  # only succeeds on an empty folder


def claim_output_file(path: str | Path, option: str) -> Path:
    """A file a command is about to write (``--json``, ``--out FILE.png``): refused if it exists."""
    path = Path(path).expanduser().absolute()
    if holds_results(path):
        raise JaxnetsError(f"{option} {path} already exists; choose a new file name (nothing was overwritten)")
    _make_folder(path.parent, option)
    return path


# Options a resume may raise (never lower): continuing a finished run for more epochs.
RESUME_EXTENDABLE_OPTIONS = frozenset({"epochs"})


def check_resume_config(saved: Mapping[str, Any], new: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """Refuse a resume whose options differ from the saved run's in anything that changes results.

    Returns the options that differ harmlessly or were extended (for the resume's record).
    """
    def acceptable(key: str) -> bool:
        if key in RESUME_HARMLESS_OPTIONS:
            return True
        if key in RESUME_EXTENDABLE_OPTIONS:
            try:
                return int(new[key]) >= int(saved[key])
            except (TypeError, ValueError):
                return False
        return False

    differing = [key for key in sorted(set(saved) & set(new)) if saved[key] != new[key]]
    changed = [key for key in differing if not acceptable(key)]
    if changed:
        listed = ", ".join(f"--{k.replace('_', '-')} {new[k]!r} (saved: {saved[k]!r})" for k in changed[:6])
        raise JaxnetsError(f"cannot resume {source}: options differ from the saved run: {listed}; resume with "
                           "the saved values or start a new run (nothing was written)")
    return {key: new[key] for key in differing}


def write_json(path: Path, data: Any) -> Path:
    """Write strict JSON atomically (tmp file + rename), so a crash never leaves half a file.

    NaN and ±inf have no JSON spelling: they are written as null, and a top-level mapping gains
    ``"non_finite_values"``: the paths of those values (e.g. ``"history/3/loss"``).
    """
    found: list[str] = []
    clean = _finite_or_null(data, "", found)
    if found and isinstance(clean, dict):
        clean["non_finite_values"] = found
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(clean, indent=2, default=_jsonable, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def _finite_or_null(value: Any, where: str, found: list[str]) -> Any:
    if isinstance(value, Mapping):
        return {k: _finite_or_null(v, f"{where}/{k}" if where else str(k), found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v, f"{where}/{i}" if where else str(i), found) for i, v in enumerate(value)]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _finite_or_null(value.tolist(), where, found)
    if isinstance(value, float) and not math.isfinite(value):
        found.append(where or "(value)")
        return None
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):  # Path, RunDir
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
