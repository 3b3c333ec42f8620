"""Issue 18: a train.py command line pasted after ``jaxnets train`` runs — ``--arch``, ``--dataset``
/ ``--data-path``, the value-less ``--upscale`` / ``--upscale-padding`` / ``--pretrained``, and the
original-only flags accepted with one warning line each (spec §4.1)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

from jaxnets.cli.hyperplanes_cmd import ReinitCommand, TrainCommand, rewrite_original_flags

IGNORED = ("--cuda", "--workers", "--models-path", "--tb-logdir", "--log", "--override")


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _options(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())["options"]


def test_value_less_flags_are_rewritten_only_without_a_value() -> None:
    rewrite = lambda args: rewrite_original_flags(args, TrainCommand.bare)  # noqa: E731
    assert rewrite(["--upscale", "--epochs", "2"]) == ["--upscale", "224", "--epochs", "2"]
    assert rewrite(["--epochs", "2", "--upscale"]) == ["--epochs", "2", "--upscale", "224"]
    assert rewrite(["--upscale", "64"]) == ["--upscale", "64"]  # the jaxnets form is unchanged
    assert rewrite(["--upscale-padding", "--cuda"]) == ["--original-upscale-padding", "--cuda"]
    assert rewrite(["--upscale-padding", "56"]) == ["--upscale-padding", "56"]
    assert rewrite(["--pretrained", "-w", "f"]) == ["--original-pretrained", "-w", "f"]
    assert rewrite(["--pretrained", "f.pth"]) == ["--pretrained", "f.pth"]
    assert rewrite(["--", "--upscale"]) == ["--", "--upscale"]  # after "--": arguments
    # reinit_layers.py's --plots DIR is a folder; jaxnets' --plots is a switch
    assert rewrite_original_flags(["--plots", "p", "--rand"], ReinitCommand.bare, ReinitCommand.valued) == \
        ["--original-plots", "p", "--rand"]
    assert rewrite_original_flags(["--plots", "--rand"], ReinitCommand.bare, ReinitCommand.valued) == \
        ["--plots", "--rand"]


def test_mlp_readme_command_line_runs(tmp_path: Path, capsys, monkeypatch) -> None:
    """mlp/README.md's train.py line (shortened: lenet, 2 epochs, digits instead of mlp_bn on
    CIFAR-10) plus the ignored flags: one warning each, none recorded; the snapshots follow
    --snapshot-every / --snapshot-all-until."""
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        ["train", "--arch", "lenet", "--data", "digits", "--augmentation", "--shuffle", "--cuda", "--workers", "4",
         "--epochs", "2", "--batch-size", "128", "--lr", "0.01", "--lr-step", "100", "--lr-decay", "0.1",
         "--weight-decay", "5e-4", "--snapshot-every", "1", "--snapshot-all-until", "1", "--train-acc",
         "--models-path", tmp_path / "models", "--tb-logdir", tmp_path / "tb", "--log", "train.log", "--override",
         "--limit", "256", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    for flag in IGNORED:
        assert sum(w.startswith(f"warning: {flag} is ignored") for w in _warnings(err)) == 1, (flag, err)
    options = _options(out)
    assert options["model"] == "lenet" and options["data"] == "digits" and options["lr_step"] == 100
    assert not {"arch", "cuda", "workers", "models_path", "tb_logdir", "log", "override", "dataset"} & set(options)
    snapshots = sorted(p.name for p in (out / "snapshots").iterdir())
    assert snapshots == ["lenet_0", "lenet_1", "lenet_final_2", "lenet_init_0"], snapshots


def test_arch_and_value_less_upscale(tmp_path: Path, capsys, monkeypatch) -> None:
    """``--arch lenet --upscale`` = ``lenet --upscale 224`` (the size recorded and used)."""
    out = tmp_path / "ev"
    code, stdout, err = run_cli(["train", "--arch", "lenet", "--data", "digits", "--upscale", "--evaluate",
                                 "--out", out], capsys, monkeypatch)
    assert code == 0, err
    options = _options(out)
    assert (options["model"], options["upscale"], options["upscale_padding"]) == ("lenet", 224, None)
    assert "test top-1" in stdout


@pytest.mark.parametrize("args,expected,warned", [
    (["--upscale-padding"], (112, 56), False),
    (["--upscale-padding", "--upscale"], (224, None), True),  # the original's --upscale wins
    (["--upscale", "64", "--upscale-padding", "8"], (64, 8), False),  # the jaxnets spelling
])
def test_value_less_upscale_padding(args: list[str], expected: tuple, warned: bool, tmp_path: Path, capsys,
                                    monkeypatch) -> None:
    out = tmp_path / "ev"
    code, _, err = run_cli(["train", "lenet", "--data", "digits", *args, "--evaluate", "--limit", "32",
                            "--out", out], capsys, monkeypatch)
    assert code == 0, err
    options = _options(out)
    assert (options["upscale"], options["upscale_padding"]) == expected
    assert any("--upscale-padding is ignored with --upscale" in w for w in _warnings(err)) == warned


def test_value_less_pretrained_takes_the_weights_file(tmp_path: Path, capsys, monkeypatch) -> None:
    from jaxnets.api import load, open_data
    from jaxnets.io import save_variables

    weights = save_variables(tmp_path / "w", load("digits_cnn", data=open_data("digits", "train")).variables,
                             {"model": "digits_cnn"})
    out = tmp_path / "ev"
    code, _, err = run_cli(["train", "--arch", "digits_cnn", "--data", "digits", "--pretrained", "-w", weights,
                            "--evaluate", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    assert _options(out)["pretrained"] == str(weights)


@pytest.mark.needs_shared_data
def test_dataset_and_data_path_are_the_data_spec(cifar_exact: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--dataset cifar10 --data-path DIR`` = ``--data cifar10:DIR`` (the batches' parent folder,
    as torchvision's root)."""
    out = tmp_path / "ev"
    code, stdout, err = run_cli(["train", "--arch", "lenet", "--dataset", "cifar10", "--data-path", cifar_exact.parent,
                                 "--evaluate", "--limit", "64", "--cuda", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    assert _options(out)["data"] == f"cifar10:{cifar_exact.parent}"
    assert "test top-1" in stdout


@pytest.mark.parametrize("args,message", [
    (["lenet", "--arch", "vgg11"], "error: got the model twice: 'lenet' and --arch 'vgg11'"),
    (["--data", "digits"], "error: give the model: MODEL or --arch NAME (see `jaxnets models`)"),
    (["--arch", "lenet", "--dataset", "svhn"],
     "error: --dataset svhn: use one of cifar10, cifar100, imagenet, mnist (or --data SPEC)"),
    (["--arch", "lenet", "--data-path", "d"], "error: --data-path needs --dataset NAME (or give --data KIND:DIR)"),
    (["--arch", "lenet", "--dataset", "cifar100", "--data", "cifar10:d"],
     "error: --dataset cifar100 and --data cifar10:d name different data sets"),
    (["--arch", "lenet", "--pretrained"], "error: --pretrained: nothing is downloaded here; give torchvision's "
                                          "ImageNet checkpoint with --weights FILE (or --pretrained FILE)"),
])
def test_bad_original_flags_are_one_line(args: list[str], message: str, tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["train", *args, "--out", tmp_path / "x"], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == [message], err
    assert not (tmp_path / "x").exists()
