"""The Python path (Model + Data + Config, run_dir=None) writes nothing and gives the CLI's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.api import load, open_data
from jaxnets.methods.decompose import (
    EssentialConfig,
    FinetuneConfig,
    IndicesConfig,
    MutualInfoConfig,
    run,
    runners,
)
from jaxnets.methods.decompose.indices import load_indices, write_indices

LIMIT = 200  # small digits subsets: an untrained digits_cnn (seed 0) is enough to compare the paths


@pytest.fixture()
def clean_cwd(tmp_path: Path, monkeypatch) -> Path:
    """An empty working folder (a default run folder would land under it)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _as_written(report: dict, folder: Path) -> dict:
    """``report`` as results.json holds it (arrays → lists, tuples → lists)."""
    from jaxnets.runtime import write_json

    return json.loads(write_json(folder / "lib.json", report).read_text())


def _cli_report(args: list[str], out: Path, capsys, monkeypatch) -> dict:
    code, _, err = run_cli([*args, "--out", out], capsys, monkeypatch)
    assert code == 0, err
    return json.loads((out / "results.json").read_text())


def test_indices_essential_mutual_info_match_the_cli(tmp_path: Path, clean_cwd: Path, capsys, monkeypatch) -> None:
    cli = _cli_report(["indices", "digits_cnn", "--data", "digits", "--limit", str(LIMIT), "--k", "5,10"],
                      tmp_path / "ind", capsys, monkeypatch)
    train = open_data("digits", "train", limit=LIMIT)
    model = load("digits_cnn", data=train)
    ind = runners.indices(model, train, IndicesConfig(k=(5, 10)))
    lib = _as_written(ind.to_json(), tmp_path)
    for k in ("5", "10"):
        assert {**lib["k"][k], "indices_file": ""} == {**cli["k"][k], "indices_file": ""}
    for key in ("images_per_class", "normalization", "num_features", "model", "data", "split"):
        assert lib[key] == cli[key], key
    for k in (5, 10):
        np.testing.assert_array_equal(ind.tables[k], load_indices(tmp_path / "ind" / f"digits_cnn_k{k}_indices.json"))

    index_file = tmp_path / "ind" / "digits_cnn_k5_indices.json"
    cli_ess = _cli_report(["essential", "--model", "digits_cnn", "--data", "digits", "--limit", str(LIMIT),
                           "--indices", index_file], tmp_path / "ess", capsys, monkeypatch)
    test = open_data("digits", "test", limit=LIMIT)
    ess = runners.essential(load("digits_cnn", data=test), test, EssentialConfig(), indices=ind.tables[5])
    lib_ess = _as_written(ess.to_json(), tmp_path)
    assert lib_ess["runs"] == cli_ess["runs"] and lib_ess["totals"] == cli_ess["totals"]

    cli_mi = _cli_report(["mutual-info", "--model", "digits_cnn", "-i", index_file], tmp_path / "mi", capsys,
                         monkeypatch)
    mi = runners.mutual_info([ind.tables[5]], MutualInfoConfig(), num_features=64, files=[str(index_file)])
    assert _as_written(mi.to_json(), tmp_path) == cli_mi
    assert list(clean_cwd.iterdir()) == []  # run_dir=None: nothing written


def test_finetune_matches_the_cli(tmp_path: Path, clean_cwd: Path, capsys, monkeypatch) -> None:
    table = np.stack([(np.arange(5) + 3 * c) % 64 for c in range(10)])
    index_file = write_indices(tmp_path / "k5.json", table)
    settings = ["--limit", "128", "--eval-limit", "64", "--epochs", "1", "--lr", "1e-3", "--no-export"]
    cli = _cli_report(["finetune", "digits_cnn", "--data", "digits", "--indices", index_file, *settings],
                      tmp_path / "ft", capsys, monkeypatch)
    train, test = open_data("digits", "train", limit=128), open_data("digits", "test", limit=64)
    result = run(load("digits_cnn", data=train), train, FinetuneConfig(epochs=1, lr=1e-3, export=False),
                 test_data=test, indices=table)
    assert result.start_top1 == cli["start_top1"] and result.final_top1 == cli["final_top1"]
    assert result.report["steps"] == cli["steps"] == 2 and cli["batch_size"] == 64
    assert list(clean_cwd.iterdir()) == []
