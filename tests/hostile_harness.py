"""The one assertion every hostile-input case makes (tests/hostile/).

A refused input must give exit code 2, exactly one stderr line starting ``error:`` (other lines may
only be ``warning:`` lines), no traceback, no marker file a malicious pickle would create, every
pre-existing file or folder the case protects byte-for-byte unchanged, and no new ``--out`` folder
left behind.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from cli_helpers import run_cli, run_subprocess


def tree_hash(path: Path) -> str:
    """A hash of a file, or of a folder's relative names and contents; "absent" if it does not exist."""
    path = Path(path)
    if not path.exists():
        return "absent"
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*"))
    for item in files:
        rel = item.relative_to(path).as_posix() if item != path else ""
        digest.update(rel.encode() + b"\0")
        if item.is_file():
            digest.update(item.read_bytes())
        digest.update(b"\1")
    return digest.hexdigest()


def assert_refused(code: int, err: str, *fragments: str) -> str:
    """Exit 2, one ``error:`` line (holding every fragment), no traceback; returns the error line."""
    assert "Traceback" not in err, err
    assert code == 2, f"exit code {code}: {err}"
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def refuse(args: Sequence[object], *fragments: str, protect: Iterable[Path] = (), marker: Path | None = None,
           capsys: pytest.CaptureFixture | None = None, monkeypatch: pytest.MonkeyPatch | None = None,
           cwd: Path | None = None) -> str:
    """Run ``jaxnets ARGS`` (in-process when capsys/monkeypatch are given, else as a subprocess) and
    assert it is refused cleanly; returns the error line."""
    protect = [Path(p) for p in protect]
    # a run folder named by --out that did not exist must not exist afterwards either
    outs = [Path(str(args[i + 1])) for i, a in enumerate(args[:-1]) if str(a) in ("--out", "-o")]
    protect += [p for p in outs if not p.exists() and p not in protect]
    before = {p: tree_hash(p) for p in protect}
    if capsys is not None and monkeypatch is not None:
        if cwd is not None:
            monkeypatch.chdir(cwd)
        code, _, err = run_cli([str(a) for a in args], capsys, monkeypatch)
    else:
        proc = run_subprocess([str(a) for a in args], cwd=cwd)
        code, err = proc.returncode, proc.stderr
    line = assert_refused(code, err, *fragments)
    if marker is not None:
        assert not Path(marker).exists(), f"{marker} was created: the pickle ran code"
    for p in protect:
        assert tree_hash(p) == before[p], f"{p} changed"
    return line


class TouchMarker:
    """A pickle payload that would create ``path`` if it were ever unpickled by a plain unpickler."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))
