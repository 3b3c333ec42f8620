"""Run-folder logging: ``metrics.jsonl`` + ``metrics.csv``, ``config.json``, TensorBoard (via
tensorboardX, only when installed) and a rich progress bar (silent when not on a terminal).

Metrics are pulled from the device only when a row is written (every N steps, chosen by
the caller), never inside the jitted step.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxnets.ui import ProgressBar  # noqa: F401  (re-exported: the training loop's bar)

METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CONFIG_JSON = "config.json"


def library_versions() -> dict[str, str]:
    """Versions that matter for reproducing a run (python, jax, flax, optax, numpy, …), the
    backend and the conv implementation models get there (``conv_impl``)."""
    from jaxnets.runtime import versions

    out = versions()
    # the oneDNN convolutions (jaxlib >= 0.12) change float rounding: a run records its flags
    out["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    try:
        import jax

        out["backend"] = jax.default_backend()
    except Exception:  # noqa: BLE001 - versions are best effort
        pass
    try:
        from jaxnets.models.layers import resolve_conv_impl

        # what a model's conv_impl="auto" (the default) is on this backend (JAXNETS_CONV included)
        out["conv_impl"] = resolve_conv_impl("auto")
    except Exception:  # noqa: BLE001 - a bad JAXNETS_CONV fails where a model is built
        pass
    return out


def _jsonable(value: Any) -> Any:
    """Python scalars/lists from numpy/jax values; non-finite floats become strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):  # Path, RunDir
        return os.fspath(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan"/"inf": strict JSON has no NaN
    return value


def write_config(run_dir: str | Path, config: Mapping[str, Any], command: str = "train",
                 *, resume_from: str | Path | None = None, **extra: Any) -> Path:
    """``config.json``: the command, the resolved options, library versions, ``extra`` fields
    (written atomically).

    Never rewrites a run's record: where ``config.json`` exists (a resumed run) or
    ``resume_from`` names another run folder, the new options are checked against the saved
    ones (:func:`jaxnets.runtime.check_resume_config`) and the invocation is appended to
    ``resumes.jsonl`` instead.
    """
    from jaxnets.errors import JaxnetsError
    from jaxnets.runtime import check_resume_config, write_json

    path = Path(run_dir) / CONFIG_JSON
    options = _jsonable(dict(config))
    sources = [path] + ([Path(resume_from) / CONFIG_JSON] if resume_from is not None else [])
    differing: dict[str, Any] = {}
    for saved_path in sources:
        if not saved_path.is_file():
            continue
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise JaxnetsError(f"cannot resume: {saved_path} is unreadable ({exc})") from None
        if saved.get("command") != command:
            raise JaxnetsError(f"cannot resume: {saved_path.parent} is a '{saved.get('command')}' run, "
                               f"not '{command}' (nothing was written)")
        differing = check_resume_config(saved.get("options", {}), options, saved_path.parent)
    if path.is_file():
        with (path.parent / "resumes.jsonl").open("a") as f:
            f.write(json.dumps({"time": round(time.time(), 3), "argv": sys.argv, "changed": differing,
                                "versions": library_versions()}) + "\n")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"command": command, "options": options,
           "versions": library_versions(), "argv": sys.argv, **_jsonable(extra)}
    return write_json(path, doc)


def host_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Device metrics → Python numbers (one transfer for the whole dict)."""
    import jax

    values = jax.device_get(dict(metrics))
    out = {}
    for k, v in values.items():
        v = getattr(v, "tolist", lambda v=v: v)()
        out[k] = v
    return out


class MetricsWriter:
    """Appends rows to ``metrics.jsonl`` and ``metrics.csv`` (and TensorBoard when available).

    ``resume_step``: on resume, rows logged after that global step by the interrupted run are
    dropped first, so the files read as one uninterrupted run.
    """

    def __init__(self, run_dir: str | Path, *, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.run_dir / METRICS_JSONL
        self.csv = self.run_dir / METRICS_CSV
        self._rows: list[dict] = []
        if self.jsonl.exists():
            if resume_step is None:
                self.jsonl.unlink()
            else:
                self._rows = [r for r in self._read_jsonl() if int(r.get("step", 0)) <= resume_step]
                self._rewrite_jsonl()
        self._fields: list[str] = []
        self._rewrite_csv()
        self._tb = _tensorboard_writer(self.run_dir / "tensorboard") if tensorboard else None

    def _read_jsonl(self) -> list[dict]:
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
        return rows

    def _rewrite_jsonl(self) -> None:
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in self._rows))

    def _rewrite_csv(self) -> None:
        fields: list[str] = []
        for r in self._rows:
            fields += [k for k in r if k not in fields]
        self._fields = fields
        with self.csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(self._rows)

    def write(self, row: Mapping[str, Any]) -> dict:
        row = _jsonable(dict(row))
        row.setdefault("time", round(time.time(), 3))
        self._rows.append(row)
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if any(k not in self._fields for k in row):
            self._rewrite_csv()  # a new column: rewrite with the wider header
        else:
            with self.csv.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._fields).writerow(row)
        if self._tb is not None:
            phase = row.get("phase", "train")
            step = int(row.get("step", 0))
            for k, v in row.items():
                if k not in ("step", "epoch", "time", "phase") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{phase}/{k}", v, step)
        return row

    @property
    def rows(self) -> list[dict]:
        return list(self._rows)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _tensorboard_writer(log_dir: Path) -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(logdir=str(log_dir))
