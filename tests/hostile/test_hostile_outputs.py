"""Existing results are never overwritten, resume refuses changed settings, bad TOML types and
unwritable run folders are one-line errors (issue 15, classes 2, 3 and 5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_helpers import run_cli
from hostile_harness import refuse, tree_hash

TRAIN = ["train", "digits_cnn", "--data", "digits", "--batch-size", "64", "--shuffle", "--optimizer", "adam",
         "--lr", "0.003", "-q"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch digits_cnn run (snapshots every epoch), shared read-only by the cases."""
    from jaxnets.cli.app import main  # noqa: F401  (the CLI's imports, as a user's run)

    out = tmp_path_factory.mktemp("trained") / "run"
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "jaxnets.cli.app", *TRAIN, "--epochs", "2", "--snapshot-every", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture()
def existing(tmp_path: Path) -> Path:
    """A folder that already holds somebody's results."""
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "results.json").write_text('{"top1": 0.99}\n')
    (folder / "config.json").write_text('{"command": "validate"}\n')
    return folder


def _snapshot(run: Path) -> Path:
    return next((run / "snapshots").glob("digits_cnn_final_*"))


# ------------------------------------------------------------------ results are never overwritten
EXISTING_RESULT_COMMANDS = {
    "validate": lambda run, out: ["validate", "digits_cnn", "--data", "digits", "--weights", _snapshot(run),
                                  "--out", out],
    "train": lambda run, out: [*TRAIN, "--epochs", "1", "--out", out],
    "train-evaluate": lambda run, out: [*TRAIN, "--evaluate", "--weights", _snapshot(run), "--out", out],
    "projections": lambda run, out: ["projections", "digits_cnn", "--weights", _snapshot(run), "--no-plots",
                                     "--out", out],
    "reinit": lambda run, out: ["reinit", "digits_cnn", "--weights", _snapshot(run), "--data", "digits",
                                "--inits-from", run / "snapshots", "--out", out],
    "convert-jaxnets": lambda run, out: ["convert", "digits_cnn", _snapshot(run), "--out", out],
    "convert-npz": lambda run, out: ["convert", "digits_cnn", _snapshot(run), "--to", "npz", "--out", out],
    "indices": lambda run, out: ["indices", "digits_cnn", "--weights", _snapshot(run), "--data", "digits",
                                 "--limit", "100", "--out", out],
    "probe": lambda run, out: ["probe", "run", "digits_cnn", "--weights", _snapshot(run), "--data", "digits",
                               "--feature-dimension", "20", "--limit", "100", "--out", out],
    "wfn": lambda run, out: ["wfn", "run", "digits_cnn", "--weights", _snapshot(run), "--data", "digits",
                             "--out", out],
    "demo": lambda run, out: ["demo", "--quick", "--out", out],
}


@pytest.mark.parametrize("command", sorted(EXISTING_RESULT_COMMANDS))
def test_existing_results_folder_is_refused(command, trained, existing, capsys, monkeypatch) -> None:
    args = EXISTING_RESULT_COMMANDS[command](trained, existing)
    refuse(args, "already holds results", str(existing), protect=[existing, trained], capsys=capsys,
           monkeypatch=monkeypatch)


def test_convert_to_npz_after_torch_is_refused(trained, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "conv"
    code, _, err = run_cli(["convert", "digits_cnn", _snapshot(trained), "--to", "torch", "--out", out],
                           capsys, monkeypatch)
    assert code == 0, err
    refuse(["convert", "digits_cnn", _snapshot(trained), "--to", "npz", "--out", out], "already holds results",
           protect=[out], capsys=capsys, monkeypatch=monkeypatch)


def test_wfn_stats_json_never_overwrites(trained, tmp_path, capsys, monkeypatch) -> None:
    mine = tmp_path / "mine.json"
    mine.write_text('{"keep": true}\n')
    refuse(["wfn", "stats", _snapshot(trained), "--model", "digits_cnn", "--json", mine], "already exists",
           protect=[mine], capsys=capsys, monkeypatch=monkeypatch)


def test_probe_plot_out_never_overwrites(tmp_path, capsys, monkeypatch) -> None:
    mine = tmp_path / "figure.png"
    mine.write_bytes(b"\x89PNG my figure")
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"alphas": [[0.5]], "sizes": [4]}))
    refuse(["probe", "plot", result, "--out", mine], "already exists", protect=[mine, result], capsys=capsys,
           monkeypatch=monkeypatch)


# ------------------------------------------------------------------ the run folder cannot be made
def _under_a_file(tmp: Path) -> Path:
    (tmp / "a-file").write_text("x")
    return tmp / "a-file" / "run"


UNWRITABLE = {
    "under-a-file": _under_a_file,
    "under-proc": lambda tmp: Path("/proc/jaxnets-cannot-be-here/run"),
    "out-is-a-file": lambda tmp: (tmp / "plain.txt", (tmp / "plain.txt").write_text("x"))[0],
    "under-sys": lambda tmp: Path("/sys/jaxnets-cannot-be-here"),
}


@pytest.mark.parametrize("case", sorted(UNWRITABLE))
def test_unwritable_out_is_one_line(case, tmp_path, capsys, monkeypatch) -> None:
    out = UNWRITABLE[case](tmp_path)
    refuse(["validate", "digits_cnn", "--data", "digits", "--limit", "10", "--out", out], str(out.name),
           protect=[tmp_path], capsys=capsys, monkeypatch=monkeypatch)


# ------------------------------------------------------------------ resume refuses changed settings
CHANGED_ON_RESUME = {
    "lr": (["--lr", "0.01"], "--lr"),
    "batch-size": (["--batch-size", "32"], "--batch-size"),
    "no-shuffle": (["--no-shuffle"], "--shuffle"),
    "seed": (["--seed", "3"], "--seed"),
    "optimizer": (["--optimizer", "sgd"], "--optimizer"),
    "limit": (["--limit", "500"], "--limit"),
    "fewer-epochs": (["--epochs", "1"], "--epochs"),
    "augmentation": (["--augmentation"], "--augmentation"),
}


@pytest.mark.parametrize("case", sorted(CHANGED_ON_RESUME))
def test_resume_with_changed_option_is_refused(case, trained, capsys, monkeypatch) -> None:
    extra, named = CHANGED_ON_RESUME[case]
    config_before = (trained / "config.json").read_bytes()
    args = [*TRAIN, "--epochs", "2", "--snapshot-every", "1", "--out", trained, "--resume", "auto"]
    # the later flag wins in click, so appending the changed value overrides the base one
    refuse([*args, *extra], "cannot resume", named, protect=[trained], capsys=capsys, monkeypatch=monkeypatch)
    assert (trained / "config.json").read_bytes() == config_before


def test_resume_into_another_folder_checks_the_source(trained, tmp_path, capsys, monkeypatch) -> None:
    out = tmp_path / "continued"
    refuse([*TRAIN, "--epochs", "3", "--lr", "0.1", "--out", out, "--resume", trained], "cannot resume", "--lr",
           protect=[trained], capsys=capsys, monkeypatch=monkeypatch)
    assert not (out / "config.json").exists()


def test_resume_repairs_a_truncated_final_snapshot(trained, tmp_path, capsys, monkeypatch) -> None:
    from jaxnets.io import checkpoint_problem, load_variables
    from jaxnets.models.api import abstract_variables, resolve

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    final = _snapshot(run)
    victim = max((p for p in final.rglob("*") if p.is_file() and p.name != "jaxnets.json"),
                 key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert checkpoint_problem(final) is not None
    code, _, err = run_cli([*TRAIN, "--epochs", "2", "--snapshot-every", "1", "--out", run, "--resume", "auto"],
                           capsys, monkeypatch)
    assert code == 0, err
    assert "rewriting the damaged snapshot" in err
    assert checkpoint_problem(final) is None
    spec = resolve("digits_cnn")
    module = spec.create(10)
    restored = load_variables(final, abstract_variables(spec, module), "digits_cnn")
    assert set(restored) >= {"params"}
    assert (run / "config.json").read_bytes() == (trained / "config.json").read_bytes()


def test_damaged_snapshot_is_refused_when_loaded(trained, tmp_path, capsys, monkeypatch) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(_snapshot(trained), snap)
    victim = next(p for p in snap.rglob("*") if p.is_file() and p.name != "jaxnets.json" and p.stat().st_size > 0)
    victim.write_bytes(b"\0" * victim.stat().st_size)
    refuse(["validate", "digits_cnn", "--data", "digits", "--weights", snap, "--out", tmp_path / "v"],
           "damaged", protect=[snap], capsys=capsys, monkeypatch=monkeypatch)


# ------------------------------------------------------------------ TOML values of the wrong type
BAD_TOML = {
    "epochs-text": ("train", 'epochs = "lots"\n'),
    "batch-size-float": ("train", "batch_size = 12.7\n"),
    "data-list": ("train", 'data = ["digits"]\n'),
    "shuffle-string": ("train", 'shuffle = "yes"\n'),
    "lr-bool": ("train", "lr = true\n"),
    "seed-table": ("train", "[train]\nseed = {value = 1}\n"),
    "validate-limit-text": ("validate", 'limit = "ten"\n'),
    "unknown-key": ("train", "epoch = 3\n"),
    "not-toml": ("train", "epochs = = 3\n"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOML))
def test_bad_toml_value_is_one_line(case, tmp_path, existing, capsys, monkeypatch) -> None:
    command, text = BAD_TOML[case]
    config = tmp_path / "bad.toml"
    config.write_text(text)
    model = ["digits_cnn"]
    out = tmp_path / "new-run"
    refuse([command, *model, "--config", config, "--out", out], "--config", protect=[existing, config],
           capsys=capsys, monkeypatch=monkeypatch)
    assert not out.exists(), "the run folder was made before the config was checked"


def test_good_toml_types_still_work(tmp_path, capsys, monkeypatch) -> None:
    config = tmp_path / "ok.toml"
    config.write_text('epochs = 3\nlr = 1\nshuffle = true\ndata = "digits"\nout = "somewhere"\n')
    code, out, err = run_cli(["train", "digits_cnn", "--config", config, "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    options = json.loads(out)["options"]
    assert options["epochs"] == 3 and options["lr"] == 1.0 and isinstance(options["lr"], float)
    assert options["shuffle"] is True and options["out"] == "somewhere"


def test_results_json_is_strict_json(tmp_path) -> None:
    from jaxnets.runtime import write_json

    path = write_json(tmp_path / "r.json", {"loss": float("nan"), "history": [{"acc": float("inf")}, {"acc": 1.0}]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text)
    assert doc["loss"] is None and doc["history"][0]["acc"] is None
    assert doc["non_finite_values"] == ["loss", "history/0/acc"]
    assert tree_hash(path) == tree_hash(path)
