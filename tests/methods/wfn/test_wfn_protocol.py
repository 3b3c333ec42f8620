"""The original's training protocol and CLI forms (issue 18): ``--protocol original-cifar``,
``--val-split`` (the one holdout split of ``jaxnets.data.splits``), validation loss and top-1
per epoch, a list of δ (one run per δ, ``run_deltas``), space-separated lists, Results.csv."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.errors import ConfigError, DataError
from jaxnets.methods.wfn.config import PROTOCOLS, WFNConfig, parse_deltas

# digits_cnn on a slice of digits: seconds per run
TINY = ["--data", "digits", "--limit", "256", "--test-limit", "128", "--percentages", "0.5,1.0",
        "--fixing-epochs", "1", "--batch-size", "64", "--lr", "1e-3"]


def _dry_run(args: list[str], capsys, monkeypatch) -> dict:
    code, out, err = run_cli(["wfn", "run", "digits_cnn", *args, "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out)["options"]


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# ---- configuration ---------------------------------------------------------------------------

def test_protocol_settings_and_the_config() -> None:
    paper = WFNConfig.for_protocol("original-cifar")
    assert (paper.augment, paper.val_split, paper.bn_inc) == (True, 5000, True)
    # the rest of the protocol is the library's defaults (the paper's settings)
    assert paper == WFNConfig(**PROTOCOLS["original-cifar"])
    assert WFNConfig.for_protocol("original-cifar", augment=False, val_split=64).val_split == 64
    assert WFNConfig.for_protocol() == WFNConfig()
    with pytest.raises(ConfigError, match="protocol 'x' is unknown"):
        WFNConfig.for_protocol("x")
    with pytest.raises(ConfigError, match="val_split must be ≥ 0"):
        WFNConfig(val_split=-1)


def test_parse_deltas() -> None:
    assert parse_deltas(0.0075) == (0.0075,)
    assert parse_deltas("0.01,0.0075") == parse_deltas("0.01 0.0075") == parse_deltas([0.01, 0.0075]) == (0.01, 0.0075)
    for bad, message in (("0.01,-1", "must be ≥ 0"), ("x", "must be a number"), ("0.01,0.01", "twice"),
                         ("", "at least one"), (float("nan"), "must be ≥ 0")):
        with pytest.raises(ConfigError, match=message):
            parse_deltas(bad)


def test_holdout_split_is_seeded_and_shared_with_validation_split() -> None:
    from jaxnets.data.splits import holdout_split, validation_split

    train, val = holdout_split(50_000, 5_000, shuffle=True, seed=0)
    assert len(train) == 45_000 and len(val) == 5_000
    assert np.union1d(train, val).size == 50_000  # disjoint, everything used
    again = holdout_split(50_000, 5_000, shuffle=True, seed=0)
    assert np.array_equal(val, again[1]) and not np.array_equal(val, holdout_split(50_000, 5_000, shuffle=True,
                                                                                     seed=1)[1])
    # the fraction split of `jaxnets train` is the same split
    for a, b in zip(validation_split(50_000, None, 0.1, shuffle=True, seed=3, stratified=False),
                    holdout_split(50_000, 5_000, shuffle=True, seed=3), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(DataError, match="cannot hold out 10 of 10"):
        holdout_split(10, 10, shuffle=True, seed=0)


def test_evaluate_reports_the_mean_cross_entropy() -> None:
    import optax

    from jaxnets.api import load, open_data
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.train.evaluate import evaluate

    data = open_data("digits", "test", limit=100)  # 100 images: the last batch of 64 is padded
    model = load("digits_cnn", num_classes=10, data=data)
    r = evaluate(model.module, model.variables, eval_loader(model.spec, data.source, 64), model.mean, model.std, 10,
                 keep_logits=True)
    expected = np.mean(np.asarray(optax.softmax_cross_entropy_with_integer_labels(r.logits, r.labels)))
    assert r.n == 100 and r.loss == pytest.approx(float(expected), rel=1e-6)


# ---- CLI: the protocol flag, lists ------------------------------------------------------------

def test_protocol_flag_dry_run_shows_the_resolved_values(capsys, monkeypatch, tmp_path) -> None:
    plain = _dry_run([], capsys, monkeypatch)
    assert (plain["protocol"], plain["augment"], plain["val_split"], plain["bn_inc"]) == ("jaxnets", False, 0, False)
    paper = _dry_run(["--protocol", "original-cifar"], capsys, monkeypatch)
    assert (paper["augment"], paper["val_split"], paper["bn_inc"]) == (True, 5000, True)
    assert paper["distance_allowed"] == 0.0075 and paper["fixing_epochs"] == 3 and paper["batch_size"] == 128
    # flags given win over the protocol; so do --config values
    mine = _dry_run(["--protocol", "original-cifar", "--no-augment", "--val-split", "64"], capsys, monkeypatch)
    assert (mine["augment"], mine["val_split"], mine["bn_inc"]) == (False, 64, True)
    toml = tmp_path / "p.toml"
    toml.write_text('protocol = "original-cifar"\nval_split = 100\n')
    from_file = _dry_run(["--config", str(toml)], capsys, monkeypatch)
    assert (from_file["protocol"], from_file["augment"], from_file["val_split"]) == ("original-cifar", True, 100)
    code, _, err = run_cli(["wfn", "run", "digits_cnn", "--protocol", "paper", "--dry-run"], capsys, monkeypatch)
    assert code == 2 and err.strip() == "error: --protocol 'paper' is unknown; use one of jaxnets, original-cifar"


def test_the_originals_space_separated_lists(capsys, monkeypatch) -> None:
    from jaxnets.cli.wfn_cmd import join_list_values

    assert join_list_values(["m", "--percentages", "0.3", "0.6", "1.0", "--lr", "1"]) == \
        ["m", "--percentages", "0.3,0.6,1.0", "--lr", "1"]
    assert join_list_values(["--distance_allowed=0.01", "0.0075", "m"]) == ["--distance_allowed", "0.01,0.0075", "m"]
    assert join_list_values(["--percentages", "0.5 1.0"]) == ["--percentages", "0.5 1.0"]  # quoted: as it is
    assert join_list_values(["--percentages"]) == ["--percentages"]  # click reports the missing value
    # pasted after the model, or before it
    opts = _dry_run(["--percentages", "0.5", "0.9", "1.0", "--distance_allowed", "0.01", "0.0075"], capsys,
                    monkeypatch)
    assert opts["percentages"] == "0.5,0.9,1.0" and opts["distance_allowed"] == [0.01, 0.0075]
    code, out, err = run_cli(["wfn", "run", "--percentages", "0.5", "1.0", "digits_cnn", "--dry-run"], capsys,
                             monkeypatch)
    assert code == 0, err
    assert json.loads(out)["options"]["model"] == "digits_cnn"
    assert _dry_run(["--distance-allowed", "0.01,0.0075"], capsys, monkeypatch)["distance_allowed"] == [0.01, 0.0075]
    assert _dry_run(["--distance-allowed", "0.01"], capsys, monkeypatch)["distance_allowed"] == 0.01


@pytest.mark.parametrize("args,message", [
    (["--val-split", "256"], "error: --val-split 256 holds out all 256 training images"),
    (["--val-split", "-3"], "error: --val-split must be ≥ 0, got -3"),
    (["--distance-allowed", "0.01,0.0075", "--resume", "1"], "a run over several δ resumes with 'auto' only"),
    (["--distance-allowed", "0.01", "0.01"], "error: --distance-allowed lists a value twice"),
])
def test_bad_protocol_input_is_one_line_and_writes_nothing(args, message, capsys, monkeypatch, tmp_path) -> None:
    code, _, err = run_cli(["wfn", "run", "digits_cnn", *TINY, "--out", tmp_path / "r", *args], capsys, monkeypatch)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


# ---- runs ------------------------------------------------------------------------------------

def test_a_list_of_deltas_runs_once_per_delta(capsys, monkeypatch, tmp_path) -> None:
    out = tmp_path / "deltas"
    code, stdout, err = run_cli(["wfn", "run", "digits_cnn", *TINY, "--val-split", "64", "--out", out,
                                 "--distance_allowed", "0.01", "0.0075"], capsys, monkeypatch)
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if "WFN δ=" in line and "; run folder" in line]
    assert [line.split("WFN δ=")[1].split()[0] for line in lines] == ["0.01", "0.0075"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["delta_0.0075", "delta_0.01"]
    header, rows = _csv_rows(out / "Results.csv")  # the parent collects one row per run
    assert [float(r["distance_allowed"]) for r in rows] == [0.01, 0.0075]
    for row, name in zip(rows, ("delta_0.01", "delta_0.0075"), strict=True):
        res = json.loads((out / name / "results.json").read_text())
        assert res["distance_allowed"] == float(row["distance_allowed"])
        assert res["rounds"][-1]["fixed_fraction"] == 1.0
        assert res["images"] == {"train": 192, "validation": 64, "test": 128}
        assert _csv_rows(out / name / "Results.csv")[1] == [row]
        assert f"run folder {out / name}" in stdout
    saved = json.loads((out / "config.json").read_text())["options"]
    assert saved["distance_allowed"] == [0.01, 0.0075] and saved["val_split"] == 64


def test_run_deltas_in_python_writes_nothing_without_a_run_dir(tmp_path, monkeypatch) -> None:
    from jaxnets.api import load, open_data
    from jaxnets.methods.wfn import run_deltas

    monkeypatch.chdir(tmp_path)
    train, test = open_data("digits", "train", limit=128), open_data("digits", "test", limit=64)
    model = load("digits_cnn", num_classes=10, data=train)
    config = WFNConfig(percentages=(0.5, 1.0), fixing_epochs=0, batch_size=64)
    results = run_deltas(model, train, config, [0.02, 0.01], test_data=test)
    assert [r.results["distance_allowed"] for r in results] == [0.02, 0.01]
    assert all(r.results["rounds"][-1]["fixed_fraction"] == 1.0 and r.run_dir is None for r in results)
    # each run starts from the model's own weights: the same baseline
    assert results[0].results["orig_acc"] == results[1].results["orig_acc"]
    assert results[0].results["baseline"]["top5"] is not None
    assert not any(tmp_path.iterdir())  # no Results.csv in the working directory (the original's habit)


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "digits_cnn", "--dataset", "cifar10"], "error: --dataset cifar10 needs --data DIR"),
    (["--model", "digits_cnn", "--dataset", "imnet", "--data", "cifar10:/nowhere"],
     "error: --dataset imnet and --data cifar10:/nowhere name different data sets"),
    (["--model", "digits_cnn", "--dataset", "mnist", "--data", "/nowhere"], "error: --dataset mnist: use one of"),
    (["lenet", "--model", "digits_cnn"], "error: got the model twice: 'lenet' and --model 'digits_cnn'"),
])
def test_original_model_and_dataset_flags_bad_input(args: list[str], message: str, tmp_path, capsys,
                                                    monkeypatch) -> None:
    """pre_trained_model_experiments.py's --model / --dataset: one error line, nothing written."""
    code, _, err = run_cli(["wfn", "run", *args, "--out", tmp_path / "run"], capsys, monkeypatch)
    assert code == 2 and err.strip().startswith(message), err
    assert not (tmp_path / "run").exists()
