"""The original SeaM scripts' command lines (spec §4) after `jaxnets seam <command>`, released mask
dicts through flops/time/eval, the fork's MLP-Mixer mask names, --shots, and the new commands'
bad input."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.errors import JaxnetsError


def _dry(args: list, capsys, monkeypatch) -> dict:
    code, out, err = run_cli([*args, "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    return json.loads(out)["options"]


def test_reengineering_finetune_spellings_reach_the_config(capsys, monkeypatch) -> None:
    """reengineering_finetune.py's every flag (spec §4.7) parses into FinetuneConfig's fields."""
    opts = _dry(["seam", "reengineering_finetune", "--model", "resnet18", "--dataset", "mit67", "--n_epochs", "7",
                 "--dropout", "0.1", "--lr_s1_output_layer", "0.2", "--lr_s2_output_layer", "0.002",
                 "--lr_mask", "0.05", "--alpha", "0.5", "--prune_threshold", "0.6", "--lr_s3_output_layer", "0.07",
                 "--lr_s3_hidden_layer", "0.004", "--momentum", "0.9", "--weight_decay", "0.0005",
                 "--early_stop", "5"], capsys, monkeypatch)
    from jaxnets.methods.seam import FinetuneConfig

    config = FinetuneConfig(**{k: opts[k] for k in FinetuneConfig.__dataclass_fields__})
    assert (config.epochs, config.dropout, config.lr_s1_output, config.lr_s2_output, config.lr_mask, config.alpha,
            config.prune_threshold, config.lr_s3_output, config.lr_s3_hidden, config.momentum, config.weight_decay,
            config.early_stop) == (7, 0.1, 0.2, 0.002, 0.05, 0.5, 0.6, 0.07, 0.004, 0.9, 0.0005, 5)
    assert opts["model"] == "resnet18" and opts["dataset"] == "mit67"
    # standard_finetune.py / retrain.py / eval_robustness.py
    opts = _dry(["seam", "standard_finetune", "--model", "resnet50", "--dataset", "cub200", "--dropout", "0.2",
                 "--n_epochs", "3", "--lr", "0.01", "--momentum", "0.5", "--weight_decay", "0.001"],
                capsys, monkeypatch)
    assert (opts["dropout"], opts["epochs"], opts["lr"], opts["momentum"], opts["weight_decay"]) == (
        0.2, 3, 0.01, 0.5, 0.001)
    opts = _dry(["seam", "retrain", "--model", "resnet18", "--dataset", "action40", "--n_epochs", "4"],
                capsys, monkeypatch)
    assert (opts["epochs"], opts["lr"], opts["momentum"]) == (4, 0.1, 0.5)
    opts = _dry(["seam", "eval_robustness", "--model", "resnet18", "--dataset", "dog120", "--eval", "seam",
                 "--lr_mask", "0.05", "--alpha", "0.5", "--prune_threshold", "0.6", "--dropout", "0.0"],
                capsys, monkeypatch)
    assert opts["eval_method"] == "seam" and opts["lr_mask"] == 0.05


def test_model_and_dataset_spellings() -> None:
    from jaxnets.cli.seam_cmd import original_spellings

    opts = {"model_arg": None, "model": "resnet20", "dataset": "cifar100", "data": "/x/cifar-100-binary",
            "num_classes": None, "target": "binary:0", "target_class": None, "target_superclass_idx": 3,
            "n_classes": -1}
    original_spellings(opts)
    assert (opts["model"], opts["data"], opts["num_classes"], opts["target"], opts["n_classes"]) == (
        "resnet20_b", "cifar100:/x/cifar-100-binary", 100, "superclass:3", None)
    opts = {"model_arg": "resnet20", "model": None, "dataset": "cifar10", "data": "cifar10:/d", "num_classes": None}
    original_spellings(opts)  # the jaxnets name stays what it says; the classes follow the data set
    assert (opts["model"], opts["data"], opts["num_classes"]) == ("resnet20", "cifar10:/d", 10)
    opts = {"model_arg": None, "model": "resnet18", "dataset": "mit67", "data": "/data/MIT_67"}
    original_spellings(opts)
    assert opts["data"] == "mit67:/data/MIT_67"
    for bad, match in (
            ({"model_arg": "a", "model": "b", "data": "digits"}, "twice"),
            ({"model_arg": None, "model": None, "data": "digits"}, "give the model"),
            ({"model_arg": "resnet18", "model": None, "dataset": "mit67", "data": "digits"}, "needs --data DIR"),
            ({"model_arg": "resnet18", "model": None, "dataset": "mit67", "data": "cub200:/x"}, "different data"),
            ({"model_arg": "resnet18", "model": None, "dataset": "svhn", "data": "/x"}, "--dataset svhn"),
            ({"model_arg": "x", "model": None, "data": "digits", "target": "binary:0", "target_class": 1,
              "target_superclass_idx": 2}, "one target")):
        with pytest.raises(JaxnetsError, match=match):
            original_spellings(dict(bad))


def test_model_reengineering_line_runs(tmp_path: Path, capsys, monkeypatch) -> None:
    """binary_class/model_reengineering.py's line (every flag, --tuning_param ignored with a
    warning) runs; --data and the small-setting --limit added."""
    code, out, err = run_cli(["seam", "model_reengineering", "--model", "digits_cnn", "--target_class", "3",
                              "--shots", "-1", "--seed", "0", "--n_epochs", "1", "--lr_head", "0.01", "--lr_mask",
                              "0.1", "--alpha", "1", "--early_stop", "-1", "--tuning_param", "--data", "digits",
                              "--limit", "64", "--out", tmp_path], capsys, monkeypatch)
    assert code == 0, err
    assert "--tuning_param is ignored" in err
    run = tmp_path / "lr_head_mask_0.01_0.1_alpha_1.0"
    options = json.loads((run / "config.json").read_text())["options"]
    assert (options["target"], options["epochs"], options["lr_head"], options["early_stop"]) == (
        "binary:3", 1, 0.01, -1)
    assert json.loads((run / "metrics.json").read_text())["train_images"] == 64


def test_reengineer_original_cifar_names(tmp_path: Path, cifar_exact: Path, capsys, monkeypatch) -> None:
    """--model resnet20 --dataset cifar10 is the original's chenyaofo model (resnet20_b), 10 classes,
    on --data DIR read as cifar10:DIR; --shots is ignored on CIFAR, as in the original."""
    code, out, err = run_cli(["seam", "reengineer", "--model", "resnet20", "--dataset", "cifar10", "--data",
                              cifar_exact, "--target_class", "3", "--n_epochs", "1", "--limit", "32", "--shots", "5",
                              "--no-plots", "--out", tmp_path], capsys, monkeypatch)
    assert code == 0, err
    assert "--shots is ignored on CIFAR" in err
    metrics = json.loads((tmp_path / "lr_head_mask_0.1_0.1_alpha_1.0" / "metrics.json").read_text())
    assert metrics["model"] == "resnet20_b" and metrics["data"] == f"cifar10:{cifar_exact}"
    assert metrics["n_entries"] == 270_906 and metrics["target"]["num_targets"] == 2  # spec §2.2


def test_shots_reach_the_data(tmp_path: Path, capsys, monkeypatch) -> None:
    """--shots N keeps N training images per class (digits: 10 classes)."""
    code, _, err = run_cli(["seam", "standard-finetune", "digits_cnn", "--data", "digits", "--shots", "3",
                            "--epochs", "1", "--test-limit", "40", "--out", tmp_path / "s"], capsys, monkeypatch)
    assert code == 0, err
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert results["train_images"] == 30 and results["test_images"] == 40 and results["options"]["shots"] == 3
    code, _, err = run_cli(["seam", "reengineer", "digits_cnn", "--data", "digits", "--shots", "20", "--target",
                            "binary:3,8", "--epochs", "1", "--no-plots", "--out", tmp_path / "r"], capsys, monkeypatch)
    assert code == 0, err
    metrics = json.loads((tmp_path / "r" / "lr_head_mask_0.1_0.1_alpha_1.0" / "metrics.json").read_text())
    assert metrics["train_images"] == 40 and metrics["test_images"] == 40  # both splits, 20 of each class


# ------------------------------------------------------------------ released masks


@pytest.fixture
def resnet20_masks(tmp_path: Path, shared_data: Path) -> dict:
    """An original-format mask dict for resnet20 (random scores, a 2-way head) in a folder, named
    as the original names its files (the unparsed-default alpha_1)."""
    from jaxnets.api import load
    from jaxnets.methods.seam import core, maskdict

    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    model = load("resnet20", weights)
    scores = core.init_scores(model.variables["params"])
    rng = np.random.default_rng(0)
    scores = jax.tree_util.tree_map(lambda s: rng.uniform(-1, 2, s.shape).astype(np.float32), scores)
    _, head = core.init_head(10, 2, seed=1)
    folder = tmp_path / "released"
    folder.mkdir()
    path = maskdict.export_mask_dict(folder / "lr_head_mask_0.1_0.05_alpha_1.pth", scores, head, model.spec.keymap)
    return {"model": model, "scores": scores, "head": head, "path": path, "folder": folder, "weights": weights}


def test_released_masks_flops_time_eval(resnet20_masks: dict, tmp_path: Path, cifar_exact: Path, capsys,
                                        monkeypatch) -> None:
    from jaxnets.methods.seam import core, flops
    from jaxnets.methods.seam.targets import original_correct, parse_target, target_sources

    m = resnet20_masks
    model = m["model"]
    # calculate_flop.py's line: the file found in the folder by --lr_head/--lr_mask/--alpha
    code, out, err = run_cli(["seam", "calculate_flop", "--model", "resnet20", "--weights", m["weights"], "--masks",
                              m["folder"], "--lr_head", "0.1", "--lr_mask", "0.05", "--alpha", "1", "--target_class",
                              "3", "--shots", "-1", "--seed", "0", "--data", f"cifar10:{cifar_exact}",
                              "--out", tmp_path / "flops"], capsys, monkeypatch)
    assert code == 0, err
    assert "FLOPs Sparse" in out and "Reengineered model ACC" in out
    got = json.loads((tmp_path / "flops" / "flops.json").read_text())
    want = flops.count_flops(model.module, model.variables, model.spec.input_shape(1), scores=m["scores"],
                             head_shape=(10, 2))
    assert got["flops_sparse"] == want["flops_sparse"] < got["flops_dense"] == want["flops_dense"]
    assert got["kept"] == core.count_kept(m["scores"]) and got["n_entries"] == 268_346  # resnet20 + its output layer
    # the original model's accuracy (§3.1) against a direct evaluation of the same images
    from jaxnets.methods.seam.loaders import open_split

    test = open_split(f"cifar10:{cifar_exact}", "test")
    _, originals = target_sources(test.source, parse_target("binary:3", 10))
    images = np.stack([originals[i][0] for i in range(len(originals))])
    labels = np.asarray(originals.labels)
    pred = np.asarray(model(images)).argmax(-1)
    assert got["acc_pre"] == pytest.approx(original_correct(pred, labels, parse_target("binary:3", 10)).mean())
    assert 0 <= got["acc"] <= 1 and got["test_images"] == len(labels)
    # calculate_time_cost.py's line
    code, out, err = run_cli(["seam", "calculate_time_cost", "--model", "resnet20", "--weights", m["weights"],
                              "--masks", m["path"], "--target_class", "3", "--repeats", "1", "--warmup", "0",
                              "--out", tmp_path / "time"], capsys, monkeypatch)
    assert code == 0, err
    timing = json.loads((tmp_path / "time" / "time.json").read_text())
    assert timing["reengineered_weights"] == got["kept"] and timing["original"]["median_ms"] > 0
    # seam eval
    code, out, err = run_cli(["seam", "eval", "--model", "resnet20", "--weights", m["weights"], "--masks", m["path"],
                              "--data", f"cifar10:{cifar_exact}", "--target", "binary:3", "--out", tmp_path / "eval"],
                             capsys, monkeypatch)
    assert code == 0, err
    ev = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert (ev["acc_pre"], ev["acc"], ev["kept"]) == (got["acc_pre"], got["acc"], got["kept"])
    assert (tmp_path / "eval" / "config.json").is_file()


def test_defect_inherit_masks_without_head(resnet20_masks: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    """defect_inherit's step_2_seam.pth: masks on the convolutions only, the step-2 output layer's
    weights next to them, no module head — FLOPs without a head term."""
    from jaxnets.converters.torch_writer import save_torch_state_dict

    from jaxnets.methods.seam import core, maskdict

    m = resnet20_masks
    scores = core.unmasked(m["scores"], "linear")
    state = maskdict.scores_to_state_dict(scores, None, m["model"].spec.keymap)
    state.update({"linear.weight": np.zeros((2, 64), np.float32), "linear.bias": np.zeros(2, np.float32)})
    save_torch_state_dict(tmp_path / "step_2_seam.pth", state)
    code, out, err = run_cli(["seam", "flops", "--model", "resnet20", "--weights", m["weights"], "--masks",
                              tmp_path / "step_2_seam.pth", "--out", tmp_path / "f"], capsys, monkeypatch)
    assert code == 0, err
    got = json.loads((tmp_path / "f" / "flops.json").read_text())
    assert got["kept"] == core.count_kept(scores) and got["dense_breakdown"]["head"] == 0
    assert "Model ACC" not in out


def test_module_command_bad_input(resnet20_masks: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    m = resnet20_masks
    for args, match in (
            (["seam", "flops"], "give a run folder"),
            (["seam", "flops", tmp_path, "--masks", m["path"], "--model", "resnet20"], "not both"),
            (["seam", "time", "--model", "resnet20", "--weights", m["weights"], "--masks", tmp_path / "none.pth"],
             "not found"),
            (["seam", "eval", "--model", "resnet20", "--weights", m["weights"], "--masks", m["folder"],
              "--lr_mask", "0.07"], "lr_head_mask_0.1_0.07_alpha_1.0.pth"),
            (["seam", "eval", "--model", "resnet20", "--weights", m["weights"], "--masks", m["path"],
              "--out", tmp_path / "e"], "needs --data and --target"),
            (["seam", "flops", "--model", "resnet20_b", "--masks", m["path"], "--out", tmp_path / "x"],
             "mask file does not fit")):
        code, _, err = run_cli(args, capsys, monkeypatch)
        assert code == 2 and err.startswith("error:") and match in err, (args, err)


# ------------------------------------------------------------------ the fork's Mixer names


def test_mixer_masks_use_the_fork_names_both_ways(tmp_path: Path) -> None:
    from jaxnets.converters.torch_reader import load_torch_file
    from jaxnets.converters.torch_writer import save_torch_state_dict

    from jaxnets.methods.seam import core, maskdict
    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import get_spec
    from jaxnets.transforms import names

    spec = get_spec("mixer_tiny")  # patch 4 on 32 px: 64 tokens, hidden 64, token MLP 32, channel MLP 128
    variables = init_variables(spec, spec.create(10), 0)
    rng = np.random.default_rng(3)
    scores = jax.tree_util.tree_map(lambda s: rng.uniform(-1, 2, s.shape).astype(np.float32),
                                    core.init_scores(variables["params"]))
    _, head = core.init_head(10, 3, seed=0)
    path = maskdict.export_mask_dict(tmp_path / "m.pth", scores, head, spec.keymap)
    saved = {k: np.asarray(v) for k, v in load_torch_file(path).items()}
    shapes = {k: v.shape for k, v in saved.items()}
    # the fork's MlpMixer: stem (OIHW), layer.<i>.{token,channel}_mlp_block.fc{0,1} ([out, in]), head
    assert shapes["stem.weight_mask"] == (64, 3, 4, 4) and shapes["stem.bias_mask"] == (64,)
    assert shapes["layer.0.token_mlp_block.fc0.weight_mask"] == (32, 64)
    assert shapes["layer.1.channel_mlp_block.fc1.weight_mask"] == (64, 128)
    assert shapes["head.weight_mask"] == (10, 64) and shapes["module_head.1.weight"] == (3, 10)
    assert len([k for k in saved if k.endswith("_mask")]) == 2 * (1 + 2 * 2 * 2 + 1)  # weight + bias per layer
    back, head_back = maskdict.import_mask_dict(path, core.init_scores(variables["params"]), spec.keymap)
    for a, b in zip(jax.tree_util.tree_leaves((scores, head)), jax.tree_util.tree_leaves((back, head_back)),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    np.testing.assert_array_equal(saved["layer.0.token_mlp_block.fc0.weight_mask"],
                                  np.asarray(scores["MixerBlock_0"]["token_mixing"]["Dense_0"]["kernel"]).T)
    # files written with the Flax names (jaxnets before the fork's names) still read
    old = {f"{k}_mask": np.asarray(v) for k, v in names.flatten(scores).items()}
    save_torch_state_dict(tmp_path / "old.pth", old)
    back, _ = maskdict.import_mask_dict(tmp_path / "old.pth", core.init_scores(variables["params"]), spec.keymap)
    for a, b in zip(jax.tree_util.tree_leaves(scores), jax.tree_util.tree_leaves(back), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


# ------------------------------------------------------------------ new commands' bad input


@pytest.mark.parametrize("args,match", [
    (["seam", "eval-robustness", "digits_cnn", "--data", "digits"], "--finetuned"),
    (["seam", "eval-robustness", "digits_cnn", "--data", "digits", "--finetuned", "{tmp}"], "fine-tuned model(s)"),
    (["seam", "eval-robustness", "digits_cnn", "--data", "digits", "--finetuned", "{tmp}", "--eval-method", "remos"],
     "remos is not supported"),
    (["seam", "eval-robustness", "digits_cnn", "--data", "digits", "--finetuned", "{tmp}/nope"], "not found"),
    (["seam", "standard-finetune", "digits_cnn", "--data", "digits", "--dropout", "0.5", "--epochs", "1"],
     "--dropout needs a ResNet"),
    (["seam", "retrain", "digits_cnn", "--data", "digits", "--momentum", "-1"], "--momentum must be ≥ 0"),
    (["seam", "finetune", "digits_cnn", "--data", "digits", "--lr_s3_output_layer", "0"], "--lr-s3-output must be > 0"),
    (["seam", "finetune", "digits_cnn", "resnet18", "--data", "digits"], "Got unexpected extra argument"),
    (["seam", "finetune", "digits_cnn", "--model", "resnet18", "--data", "digits"], "got the model twice"),
    (["seam", "standard-finetune", "--dataset", "mit67"], "give the model"),
    (["seam", "standard-finetune", "resnet18", "--dataset", "mit67"], "needs --data DIR"),
    (["seam", "retrain", "--model", "digits_cnn", "--data", "digits", "--superclass_type", "random"],
     "only predefined"),
    (["seam", "retrain", "digits_cnn", "--data", "digits", "--target_superclass_idx", "0", "--n_classes", "-1"],
     "superclass"),
])
def test_indirect_commands_bad_input(args: list[str], match: str, tmp_path: Path, capsys, monkeypatch) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli([*args, "--out", tmp_path / "out"], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
