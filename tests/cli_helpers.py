"""Run the `jaxnets` CLI in-process (fast) or as a real subprocess (exit code, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``jaxnets ARGS`` through ``main()``: (exit code, stdout, stderr)."""
    from jaxnets.cli.app import main

    monkeypatch.setattr(sys, "argv", ["jaxnets", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def run_subprocess(args: list[str], cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxnets.cli.app", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)
