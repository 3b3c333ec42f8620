"""CLI commands of the wfn method (filled in by its issue)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
