"""`jaxnets demo` end to end with short settings (issue 10 "Must show")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli


@pytest.mark.slow
def test_demo_runs_all_five_methods(tmp_path: Path, capsys, monkeypatch) -> None:
    out = tmp_path / "demo"
    code, _, err = run_cli(["demo", "--out", out, "--quick", "-q"], capsys, monkeypatch)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "jaxnets.demo/1"
    assert summary["train"]["test_top1"] >= 0.95
    # Decomposing the Deep: the decomposed head and the MI score exist
    assert 0.0 < summary["decompose"]["decomposed_top1"] <= 1.0
    assert summary["decompose"]["mutual_info"] > 0
    # WFN: every weight fixed, no more unique values than the codebook holds
    assert summary["wfn"]["fixed_fraction"] == 1.0
    assert summary["wfn"]["unique_all"] <= summary["wfn"]["codebook_size"]
    # Sparsity Probe: an alpha for every probed layer
    alphas = summary["probe"]["alpha_by_layer"]
    assert alphas and all(a is not None for a in alphas.values())
    # SeaM: the module keeps fewer weights than the model
    assert summary["seam"]["retention"] < 1.0
    # Hyperplanes: the heatmap is there and reinit with its own weights is exact
    assert Path(summary["hyperplanes"]["heatmap"]).is_file()
    assert summary["hyperplanes"]["own_weights_row_exact"] is True
    report = (out / "report.md").read_text()
    for title in ("Decomposing the Deep", "Weight Fixing Networks", "Sparsity Probe", "SeaM", "Hyperplane"):
        assert title in report
    # every linked plot exists
    import re

    for link in re.findall(r"\]\(([^)]+\.png)\)", report):
        assert (out / link).is_file(), link
    # a rerun into the same folder is refused: results are never overwritten
    before = (out / "summary.json").read_bytes()
    code, _, err = run_cli(["demo", "--out", out, "--quick", "-q", "--methods", "wfn"], capsys, monkeypatch)
    assert code == 2 and "already holds results" in err, err
    assert (out / "summary.json").read_bytes() == before


def test_demo_refuses_foreign_folder_and_bad_method(tmp_path: Path, capsys, monkeypatch) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    code, _, err = run_cli(["demo", "--out", tmp_path, "--quick"], capsys, monkeypatch)
    assert code == 2 and "already holds results" in err
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    code, _, err = run_cli(["demo", "--out", tmp_path / "d", "--methods", "wfn,nope"], capsys, monkeypatch)
    assert code == 2 and "nope" in err
