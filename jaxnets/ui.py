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


@contextlib.contextmanager
def progress(description: str, total: int | None, **fields: Any) -> Iterator[Any]:
    """A rich progress bar yielding ``advance(n=1, **fields)``; a no-op when not a terminal."""
    if not show_progress():
        yield lambda n=1, **kw: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn()]
    if fields:
        columns.append(TextColumn(" ".join(f"{k} {{task.fields[{k}]}}" for k in fields)))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=total, **fields)
        yield lambda n=1, **kw: bar.update(task, advance=n, **kw)
