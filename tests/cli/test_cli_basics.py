"""Help texts, the registry listing, config files and conversion."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from cli_helpers import ROOT, run_cli


def test_help_is_fast_and_lists_commands():
    # Heavy libraries must not load for --help (they are imported inside commands).
    code = ("import sys, jaxnets.cli.app as a; "
            "assert not any(m in sys.modules for m in ('jax', 'flax', 'torch', 'sklearn')), "
            "[m for m in ('jax','flax','torch','sklearn') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    proc = subprocess.run([sys.executable, "-m", "jaxnets.cli.app", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0
    for command in ("models", "convert", "validate", "info"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", ["models", "convert", "validate", "info"])
def test_every_command_help_has_an_example(command, capsys, monkeypatch):
    code, out, _ = run_cli([command, "--help"], capsys, monkeypatch)
    assert code == 0 and "Example" in out


def test_models_lists_registry_with_counts(capsys, monkeypatch):
    code, out, _ = run_cli(["models", "--family", "cifar_resnet"], capsys, monkeypatch)
    assert code == 0
    assert "resnet20" in out and "269,722" in out and "resnet56" in out


def test_config_file_values_and_flag_override(tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text('data = "digits"\nbatch_size = 64\n[validate]\nlimit = 100\n')
    code, out, err = run_cli(["validate", "digits_cnn", "--config", config, "--limit", "50", "--out", tmp_path / "r"],
                             capsys, monkeypatch)
    assert code == 0, err
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["options"]
    assert saved["batch_size"] == 64 and saved["limit"] == 50 and saved["data"] == "digits"
    assert json.loads((tmp_path / "r" / "results.json").read_text())["n"] == 50


def test_unknown_config_key_is_an_error(tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text("bogus = 1\n")
    code, _, err = run_cli(["validate", "digits_cnn", "--config", config, "--out", tmp_path], capsys, monkeypatch)
    assert code == 2 and "bogus" in err


@pytest.mark.needs_shared_data
def test_convert_reports_parity_and_round_trips(shared_data, tmp_path, capsys, monkeypatch):
    src = shared_data / "weights" / "resnet20-12fca82f.th"
    code, out, err = run_cli(["convert", "resnet20", src, "--out", tmp_path / "j"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((tmp_path / "j" / "conversion.json").read_text())
    assert report["params"] == 269_722 and report["tensors"] == 97 and report["round_trip_max_abs_diff"] == 0.0
    # The jaxnets checkpoint and a PyTorch export load back to the same probe logits.
    code, out, err = run_cli(["convert", "resnet20", tmp_path / "j" / "checkpoint", "--to", "torch",
                              "--out", tmp_path / "t"], capsys, monkeypatch)
    assert code == 0, err
    again = json.loads((tmp_path / "t" / "conversion.json").read_text())
    assert again["probe_logits_first_row"] == report["probe_logits_first_row"]
    torch = pytest.importorskip("torch")
    state = torch.load(tmp_path / "t" / "resnet20.pth", weights_only=True)
    assert "layer3.2.conv2.weight" in state and tuple(state["linear.weight"].shape) == (10, 64)
