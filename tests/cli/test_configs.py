"""Every file in configs/ parses and its command starts (``--dry-run``) — issue 10."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from cli_helpers import run_cli

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


def command_of(path: Path) -> list[str]:
    """The first line names the command: ``# jaxnets: wfn run resnet18``."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("# jaxnets: "), f"{path.name}: first line must be '# jaxnets: <command> …'"
    return first.removeprefix("# jaxnets: ").split()


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 10


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_command_starts(path: Path, capsys, monkeypatch) -> None:
    data = tomllib.loads(path.read_text())
    assert data, f"{path.name} is empty"
    code, out, err = run_cli([*command_of(path), "--config", path, "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    resolved = json.loads(out)["options"]
    for key, value in data.items():
        if not isinstance(value, dict):
            got = resolved[key.replace("-", "_")]
            # a list-valued option (several --indices) takes a single TOML value as a one-item list
            assert got == value or got == [value], key
