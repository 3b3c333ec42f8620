"""Bad input gets one clear line on stderr and exit code 2 — never a traceback, nothing overwritten."""

from __future__ import annotations

import os
import pickle

import pytest
from cli_helpers import run_cli, run_subprocess


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_unknown_model(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["validate", "resnet21", "--out", tmp_path], capsys, monkeypatch)
    assert_one_line_error(code, err, "unknown model 'resnet21'", "resnet20")


@pytest.mark.parametrize("spec", ["foo", "cifar10:", "imagefolder", "tfds:", "cifar10:a:b:c"])
def test_unparsable_data_spec(capsys, monkeypatch, tmp_path, spec):
    code, _, err = run_cli(["validate", "digits_cnn", "--data", spec, "--out", tmp_path], capsys, monkeypatch)
    assert_one_line_error(code, err)


def test_missing_data_dir(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["validate", "resnet20", "--data", f"cifar10:{tmp_path / 'nope'}", "--out", tmp_path],
                           capsys, monkeypatch)
    assert_one_line_error(code, err, "nope")


def test_forbidden_global_pickle(capsys, monkeypatch, tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"state_dict": _Evil()}))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["validate", "digits_cnn", "--weights", path, "--data", "digits", "--out", tmp_path / "r"],
                           capsys, monkeypatch)
    assert_one_line_error(code, err, "system")
    assert not (tmp_path / "PWNED").exists()


def test_missing_checkpoint(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["convert", "resnet20", tmp_path / "missing.th", "--out", tmp_path / "o"],
                           capsys, monkeypatch)
    assert_one_line_error(code, err, "missing.th")


@pytest.mark.needs_shared_data
def test_truncated_checkpoint(shared_data, capsys, monkeypatch, tmp_path):
    data = (shared_data / "weights" / "resnet20-12fca82f.th").read_bytes()
    path = tmp_path / "truncated.th"
    path.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(["convert", "resnet20", path, "--out", tmp_path / "o"], capsys, monkeypatch)
    assert_one_line_error(code, err, "truncated")


@pytest.mark.needs_shared_data
def test_checkpoint_of_another_architecture(shared_data, capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["convert", "resnet20", shared_data / "weights" / "resnet32-d509ac18.th",
                            "--out", tmp_path / "o"], capsys, monkeypatch)
    assert_one_line_error(code, err, "does not fit resnet20", "unexpected")


def test_bad_config_file(capsys, monkeypatch, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("batch_size = [unclosed")
    code, _, err = run_cli(["validate", "digits_cnn", "--config", bad, "--out", tmp_path], capsys, monkeypatch)
    assert_one_line_error(code, err, "TOML")
    code, _, err = run_cli(["validate", "digits_cnn", "--config", tmp_path / "nope.toml"], capsys, monkeypatch)
    assert_one_line_error(code, err, "nope.toml")


def test_existing_results_not_overwritten(capsys, monkeypatch, tmp_path):
    (tmp_path / "results.json").write_text("precious")
    code, _, err = run_cli(["validate", "digits_cnn", "--out", tmp_path], capsys, monkeypatch)
    assert_one_line_error(code, err, "results.json")
    assert (tmp_path / "results.json").read_text() == "precious"


def test_batch_not_divisible_by_devices(capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["validate", "digits_cnn", "--devices", "4", "--batch-size", "30", "--out", tmp_path],
                           capsys, monkeypatch)
    assert_one_line_error(code, err, "divisible")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    proc = run_subprocess(["validate", "no_such_model", "--out", tmp_path])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: unknown model")
