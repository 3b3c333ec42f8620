"""One source for defaults: what `--dry-run` resolves (and `--help` shows) is the Config's default.

For every command already in the library shape (probe run, wfn run, projections, reinit, the four of
"Decomposing the Deep", seam reengineer/finetune/standard-finetune/retrain/eval-robustness), each flag that is a Config
field resolves, untouched, to that field's default; a wrong-typed TOML value is one error line.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

from jaxnets.methods.decompose.config import (
    EssentialConfig,
    FinetuneConfig,
    IndicesConfig,
    MutualInfoConfig,
    parse_ks,
)
from jaxnets.methods.hyperplanes.config import ProjectionsConfig, ReinitConfig, TrainConfig
from jaxnets.methods.probe.config import ProbeConfig
from jaxnets.methods.seam.config import FinetuneConfig as SeamFinetuneConfig
from jaxnets.methods.seam.config import ReengineerConfig, RetrainConfig, RobustnessConfig, StandardFinetuneConfig
from jaxnets.methods.wfn.config import WFNConfig, parse_percentages

COMMANDS = {
    "probe run": (["probe", "run", "digits_cnn"], ProbeConfig,
                  # preset-dependent flags default to None (= the preset's, i.e. the Config's)
                  {"trees", "depth", "seed", "epsilon_1", "feature_dimension", "layers"}),
    "wfn run": (["wfn", "run", "digits_cnn"], WFNConfig, set()),
    "train": (["train", "lenet"], TrainConfig, set()),
    "projections": (["projections", "digits_cnn"], ProjectionsConfig, set()),
    # the model last: --help replaces it
    "reinit": (["reinit", "--weights", "w", "digits_cnn"], ReinitConfig, set()),
    "indices": (["indices", "digits_cnn"], IndicesConfig, set()),
    "finetune": (["finetune", "digits_cnn"], FinetuneConfig, set()),
    "essential": (["essential"], EssentialConfig, set()),
    "mutual-info": (["mutual-info"], MutualInfoConfig, set()),
    "seam reengineer": (["seam", "reengineer", "digits_cnn"], ReengineerConfig, set()),
    "seam finetune": (["seam", "finetune", "digits_cnn"], SeamFinetuneConfig, set()),
    "seam standard-finetune": (["seam", "standard-finetune", "digits_cnn"], StandardFinetuneConfig, set()),
    "seam retrain": (["seam", "retrain", "digits_cnn"], RetrainConfig, set()),
    "seam eval-robustness": (["seam", "eval-robustness", "digits_cnn"], RobustnessConfig, set()),
}


def _dry_run(args: list[str], capsys, monkeypatch) -> dict:
    code, out, err = run_cli([*args, "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out)["options"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_dry_run_defaults_are_the_config_defaults(name: str, capsys, monkeypatch) -> None:
    args, config_cls, from_preset = COMMANDS[name]
    options = _dry_run(args, capsys, monkeypatch)
    default = config_cls()
    shared = [f.name for f in dataclasses.fields(config_cls) if f.name in options]
    # the command exposes the Config's fields as flags
    assert len(shared) >= min(8, len(dataclasses.fields(config_cls))), shared
    for field in shared:
        value = options[field]
        if field in from_preset:
            assert value is None, field
            assert config_cls.preset("notebook") == default
            continue
        if field == "percentages":
            value = parse_percentages(value)
        if field in ("k", "k_keep") and value is not None:
            value = parse_ks(value)
        assert value == getattr(default, field), field


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_shows_the_config_defaults(name: str, capsys, monkeypatch) -> None:
    args, config_cls, _ = COMMANDS[name]
    code, out, _ = run_cli([*(args[:-1] if len(args) > 1 and args[-1] == "digits_cnn" else args), "--help"],
                           capsys, monkeypatch)
    assert code == 0
    flat = " ".join(out.split())
    default = config_cls()
    if hasattr(default, "batch_size"):
        shown = default.batch_size
    elif hasattr(default, "seed"):
        shown = default.seed
    else:
        shown = default.csg_order
    assert f"[default: {shown}]" in flat


@pytest.mark.parametrize("name,key,value", [
    ("probe run", "umap_points", '"many"'),
    ("wfn run", "lr", '"fast"'),
    ("wfn run", "fixing_epochs", "2.5"),
    ("projections", "normalize", '"yes"'),
    ("reinit", "batch_size", '"many"'),
    ("finetune", "epochs", '"many"'),
    ("indices", "batch_size", "1.5"),
    ("seam reengineer", "alpha", '"big"'),
    ("seam finetune", "pgd_steps", "2.5"),
    ("seam standard-finetune", "lr", '"fast"'),
    ("seam retrain", "momentum", "[0.5]"),
    ("seam eval-robustness", "pgd_steps", "2.5"),
])
def test_wrong_typed_toml_value_is_one_line(name: str, key: str, value: str, tmp_path: Path, capsys,
                                            monkeypatch) -> None:
    args, _, _ = COMMANDS[name]
    toml = tmp_path / "bad.toml"
    toml.write_text(f"{key} = {value}\n")
    code, _, err = run_cli([*args, "--config", toml, "--dry-run"], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and key in lines[0], err


@pytest.mark.parametrize("args,message", [
    (["wfn", "run", "digits_cnn", "--lr", "0"], "error: --lr must be > 0, got 0.0"),
    (["probe", "run", "digits_cnn", "--trees", "0"], "error: --trees must be at least 1 (got 0)"),
    (["reinit", "digits_cnn", "-w", "w", "--vmin", "1", "--vmax", "0"],
     "error: --vmax must be greater than vmin (1.0), got 0.0"),
    (["finetune", "digits_cnn", "--indices", "x.json", "--epochs", "0"], "error: --epochs must be ≥ 1, got 0"),
    (["seam", "reengineer", "digits_cnn", "--lr-mask", "0"], "error: --lr-mask must be > 0 (got 0.0)"),
    (["seam", "finetune", "digits_cnn", "--prune-threshold", "2"],
     "error: --prune-threshold must be in (0, 1] (got 2.0)"),
    (["seam", "retrain", "digits_cnn", "--momentum", "-1"], "error: --momentum must be ≥ 0 (got -1.0)"),
    (["seam", "eval-robustness", "digits_cnn", "--pgd-steps", "-1"], "error: --pgd-steps must be ≥ 0 (got -1)"),
])
def test_config_errors_speak_in_flags(args: list[str], message: str, capsys, monkeypatch) -> None:
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and err.strip() == message


@pytest.mark.parametrize("args,message", [
    (["train", "lenet", "--upscale", "abc"], "error: Invalid value for '--upscale'"),
    (["wfn", "run", "digits_cnn", "--lr", "fast"], "error: Invalid value for '--lr'"),
    (["probe", "run"], "error: Missing argument 'model'."),
    (["nosuch"], "error: No such command 'nosuch'."),
])
def test_bad_flags_are_one_line(args: list[str], message: str, capsys, monkeypatch) -> None:
    code, _, err = run_cli(args, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith(message), err
    assert "Traceback" not in err and "╭" not in err


def test_probe_plot_defaults_are_the_plot_config() -> None:
    """`probe plot` has no --dry-run: its signature's defaults are PlotConfig's."""
    import inspect

    from jaxnets.cli.probe_cmd import plot
    from jaxnets.methods.probe.config import PlotConfig

    params = inspect.signature(plot).parameters
    default = PlotConfig()
    for field in dataclasses.fields(PlotConfig):
        assert params[field.name].default == getattr(default, field.name), field.name
