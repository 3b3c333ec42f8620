"""`mutual-info --k` and `essential --split` reach the computation (issue 15); no shared data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.methods.decompose.indices import write_indices


def _index_file(tmp_path: Path, k: int, name: str | None = None) -> Path:
    """A valid (10, k) table over digits_cnn's 64 pooled channels."""
    table = np.stack([(np.arange(k) + 3 * c) % 64 for c in range(10)])
    return write_indices(tmp_path / (name or f"k{k}.json"), table)


def test_essential_honours_split_train(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["essential", "--model", "digits_cnn", "--data", "digits", "--split", "train",
                            "--indices", _index_file(tmp_path, 5), "--out", tmp_path / "run"], capsys, monkeypatch)
    assert code == 0, err
    assert "test split" in err  # the warning: the paper's experiment uses the test split
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report["split"] == "train"
    assert report["totals"]["ours"]["total"] == 1437  # digits' training split, not its 360 test images


def test_essential_default_is_the_test_split(tmp_path: Path) -> None:
    from jaxnets.api import load, open_data
    from jaxnets.methods.decompose import EssentialConfig, runners

    test = open_data("digits", "test")
    r = runners.essential(load("digits_cnn", data=test), test, EssentialConfig(), indices=_index_file(tmp_path, 5))
    assert r.report["split"] == "test" and r.totals["ours"]["total"] == 360


def test_mutual_info_ours_rows_for_every_index_file(tmp_path: Path, capsys, monkeypatch) -> None:
    args = ["mutual-info", "--model", "digits_cnn", "--out", tmp_path / "run"]
    for k in (5, 10, 20):
        args += ["-i", _index_file(tmp_path, k)]
    code, out, _ = run_cli(args, capsys, monkeypatch)
    assert code == 0
    report = json.loads((tmp_path / "run" / "results.json").read_text())
    assert sorted(report["ours"], key=int) == ["5", "10", "20"]
    for k in (5, 10, 20):
        assert f"| {k} | " in out


@pytest.mark.parametrize("value,fragment", [
    ("0", "at least 1"), ("abc", "integers"), ("5,,x", "integers"), ("5,,10", "empty"),
    ("-3", "at least 1"), ("5,5", "twice"),
])
def test_k_values_are_checked(value: str, fragment: str) -> None:
    from jaxnets.errors import JaxnetsError
    from jaxnets.methods.decompose.config import parse_ks

    with pytest.raises(JaxnetsError, match=fragment):
        parse_ks(value)
