"""``RunDir``: the one object every command and every library ``run`` writes a run folder through.

A run folder holds ``config.json`` (the resolved options, library versions, backend and conv
implementation), ``metrics.jsonl``/``metrics.csv`` (+ TensorBoard), result JSON files (strict
JSON: NaN/inf written as null and listed under ``non_finite_values``), plots and, for training
runs, ``checkpoints/``. The no-overwrite rule is applied once, when the folder is opened: it
must be new or empty unless the run resumes, and a resume is checked against the saved
``config.json`` before anything is written (:func:`jaxnets.runtime.check_resume_config`).

``RunDir`` is a path-like (``os.fspath``, ``run_dir / "name"``), so code that only reads or
places files in the folder keeps working with either a ``Path`` or a ``RunDir``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jaxnets.runtime import claim_output_file, create_run_dir, write_json
from jaxnets.train.logging import CONFIG_JSON, MetricsWriter, write_config


class RunDir(os.PathLike):
    """An opened run folder of ``command``; create it with :meth:`create` or :meth:`of`."""

    def __init__(self, path: str | Path, command: str, *, resuming: bool = False):
        self.path = Path(path)
        self.command = command
        self.resuming = resuming

    @classmethod
    def create(cls, out: str | Path | None, command: str, model: str | None = None, *,
               resume: str | Path | bool | None = None) -> RunDir:
        """``out`` (or ``runs/<first word of command>/<model>-<timestamp>``), new or empty unless
        resuming."""
        path = create_run_dir(out, command.split()[0], model, resume=resume)
        return cls(path, command, resuming=bool(resume))

    @classmethod
    def of(cls, run_dir: str | Path | RunDir | None, command: str, model: str | None = None, *,
           resume: str | Path | bool | None = None) -> RunDir | None:
        """A library ``run``'s ``run_dir`` argument as a RunDir: None stays None (write nothing);
        a RunDir the caller opened is used as it is; a path is opened with :meth:`create`."""
        if run_dir is None or isinstance(run_dir, RunDir):
            return run_dir
        return cls.create(run_dir, command, model, resume=resume)

    # path-like ----------------------------------------------------------------------------
    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r}, command={self.command!r})"

    def __str__(self) -> str:
        return str(self.path)

    # contents -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_JSON

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, options: Mapping[str, Any], *, resume_from: str | Path | None = None,
                     **extra: Any) -> Path:
        """``config.json`` for this run (on a resume: checked against the saved one and the
        invocation appended to ``resumes.jsonl`` instead)."""
        return write_config(self.path, options, self.command, resume_from=resume_from, **extra)

    def write_json(self, name: str, data: Any) -> Path:
        """A result file in the folder, strict JSON, written atomically."""
        return write_json(self.path / name, data)

    def metrics(self, *, resume_step: int | None = None, tensorboard: bool = True) -> MetricsWriter:
        """The folder's ``metrics.jsonl``/``metrics.csv`` writer (rows after ``resume_step``
        of an interrupted run are dropped first)."""
        return MetricsWriter(self.path, resume_step=resume_step, tensorboard=tensorboard)

    def new_file(self, name: str, what: str) -> Path:
        """A file added to a finished run (``flops.json``, ``time.json``): refused if it exists."""
        return claim_output_file(self.path / name, what)
