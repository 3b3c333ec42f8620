"""Console output: verbosity, one-line errors, rich progress bars (off when not a terminal)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

_VERBOSITY = {"level": 0}


def set_verbosity(verbose: int, quiet: bool) -> None:
    _VERBOSITY["level"] = -1 if quiet else verbose


def verbosity() -> int:
    return _VERBOSITY["level"]


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


def info(message: str) -> None:
    if verbosity() >= 0:
        console().print(message)


def debug(message: str) -> None:
    if verbosity() >= 1:
        console().print(f"[dim]{message}[/dim]")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def show_progress() -> bool:
    return verbosity() >= 0 and sys.stderr.isatty()


class ProgressBar:
    """The one rich progress bar of the project: description, bar, n/total, elapsed, remaining
    and a free-text stats column (loss, accuracy, images per second). Off when not on a
    terminal or with --quiet, so logs and CI output stay clean."""

    def __init__(self, enabled: bool | None = None, description: str = "train", *,
                 transient: bool = False):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.enabled = show_progress() if enabled is None else enabled
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
            console=Console(stderr=True), disable=not self.enabled, transient=transient)
        self._task: Any = None
        self._description = description

    def start(self, total: int | None, description: str | None = None,
              completed: int = 0) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description or self._description, total=total,
                                             completed=completed, stats="")

    def advance(self, n: int = 1, **stats: float) -> None:
        if self._task is None:
            return
        text = "  ".join(_fmt(k, v) for k, v in stats.items())
        if text:
            self._progress.update(self._task, advance=n, stats=text)
        else:
            self._progress.update(self._task, advance=n)

    def __enter__(self) -> ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()


def _fmt(key: str, value: float) -> str:
    if key in ("acc", "accuracy"):
        return f"{key} {100 * value:.2f}%"
    if key in ("img/s", "images_per_sec"):
        return f"{value:,.0f} img/s"
    return f"{key} {value:.4g}"


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Any]:
    """A transient :class:`ProgressBar` for a loop, yielding ``advance(n=1, **stats)``."""
    if not show_progress():
        yield lambda n=1, **stats: None
        return
    with ProgressBar(True, description, transient=True) as bar:
        bar.start(total)
        yield bar.advance
