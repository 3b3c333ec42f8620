"""RunDir: the one way a command or a library run writes its folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.rundir import RunDir


def test_create_refuses_a_folder_that_holds_results(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")
    with pytest.raises(JaxnetsError, match="already holds results"):
        RunDir.create(tmp_path / "old", "validate")
    assert (tmp_path / "old" / "results.json").read_text() == "{}"
    assert RunDir.create(tmp_path / "old", "validate", resume="auto").resuming


def test_of_keeps_none_and_an_opened_folder(tmp_path: Path) -> None:
    assert RunDir.of(None, "probe") is None
    opened = RunDir.create(tmp_path / "a", "probe")
    assert RunDir.of(opened, "probe") is opened
    fresh = RunDir.of(tmp_path / "b", "probe")
    assert isinstance(fresh, RunDir) and fresh.path == tmp_path / "b" and fresh.path.is_dir()


def test_is_path_like(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "train")
    assert Path(run) == tmp_path / "r" and os.fspath(run) == str(tmp_path / "r")
    assert run / "checkpoints" == run.checkpoints == tmp_path / "r" / "checkpoints"


def test_results_are_strict_json(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "train")
    path = run.write_json("results.json", {"loss": float("nan"), "rows": [1.0, float("inf")],
                                           "folder": run})
    doc = json.loads(path.read_text())  # strict: no bare NaN
    assert doc["loss"] is None and doc["rows"] == [1.0, None]
    assert doc["non_finite_values"] == ["loss", "rows/1"]
    assert doc["folder"] == str(tmp_path / "r")


def test_config_then_resume_check(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "wfn run")
    run.write_config({"lr": 0.1, "epochs": 2, "out": run})
    saved = json.loads(run.config_path.read_text())
    assert saved["command"] == "wfn run" and saved["options"]["out"] == str(tmp_path / "r")
    assert "jax" in saved["versions"] and "backend" in saved["versions"]
    again = RunDir.create(tmp_path / "r", "wfn run", resume="auto")
    with pytest.raises(JaxnetsError, match="--lr 0.2"):
        again.write_config({"lr": 0.2, "epochs": 2})
    again.write_config({"lr": 0.1, "epochs": 3})  # more epochs: a resume may extend the run
    assert len((tmp_path / "r" / "resumes.jsonl").read_text().splitlines()) == 1
    other = RunDir.create(tmp_path / "r", "probe", resume="auto")
    with pytest.raises(JaxnetsError, match="is a 'wfn run' run"):
        other.write_config({"lr": 0.1})


def test_default_folder_is_named_by_the_command_s_first_word(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = RunDir.create(None, "seam reengineer", "resnet20")
    assert run.path.parent == tmp_path / "runs" / "seam" and run.path.name.startswith("resnet20-")


def test_metrics_writer_lives_in_the_folder(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "train")
    with run.metrics(tensorboard=False) as writer:
        writer.write({"phase": "epoch", "step": 1, "loss": 0.5})
    assert json.loads((tmp_path / "r" / "metrics.jsonl").read_text())["loss"] == 0.5
    assert (tmp_path / "r" / "metrics.csv").is_file()


def test_new_file_refuses_to_replace(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", "seam reengineer")
    (tmp_path / "r" / "flops.json").write_text("{}")
    with pytest.raises(JaxnetsError, match="already exists"):
        run.new_file("flops.json", "seam flops: result file")
    assert run.new_file("time.json", "seam time: result file") == tmp_path / "r" / "time.json"
