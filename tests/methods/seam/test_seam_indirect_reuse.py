"""Indirect reuse beyond the three steps (spec §2.10, §4.7, §4.8): the SGD of the original
(momentum, weight decay, two groups), Dropout2d after each ResNet stage, the standard fine-tuning
and retrain baselines, their equivalence with step 3, checkpoints and resume — on digits (fast)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets.errors import ConfigError, JaxnetsError


@pytest.fixture(scope="module")
def digits() -> dict:
    from jaxnets.api import load
    from jaxnets.methods.seam.loaders import open_split
    from jaxnets.methods.seam.runner import pretrain_digits

    train, test = open_split("digits", "train"), open_split("digits", "test")
    model = load("digits_cnn", data=test).replace(pretrain_digits(0, 4))
    return {"train": train, "test": test, "model": model}


def _same(a: object, b: object) -> None:
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sgd_is_pytorch_sgd_by_hand() -> None:
    """p = 1, gradient 1, lr 0.1, momentum 0.9, weight decay 0.1 (PyTorch: d = g + wd·p,
    buf = μ·buf + d, p -= lr·buf): 0.89 after one step, 0.6821 after two."""
    from jaxnets.methods.seam.finetuning import sgd

    tx = sgd(0.1, 0.9, 0.1)
    p = {"w": jnp.ones(())}
    state = tx.init(p)
    for want in (0.89, 0.6821):
        updates, state = tx.update({"w": jnp.ones(())}, state, p)
        p = optax.apply_updates(p, updates)
        assert float(p["w"]) == pytest.approx(want, abs=1e-6)


def test_output_layer_gets_its_own_learning_rate() -> None:
    from jaxnets.methods.seam.finetuning import output_layer_sgd

    tx = output_layer_sgd("fc", 0.005, 0.05, momentum=0.0, weight_decay=0.0)
    params = {"conv": {"kernel": jnp.zeros(3)}, "fc": {"kernel": jnp.zeros(2), "bias": jnp.zeros(2)}}
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(updates["conv"]["kernel"], -0.005)
    np.testing.assert_allclose(updates["fc"]["kernel"], -0.05)
    np.testing.assert_allclose(updates["fc"]["bias"], -0.05)


def test_stage_dropout_drops_whole_channels_after_each_stage() -> None:
    from jaxnets.methods.seam.dropout import channel_dropout, stage_ends, with_stage_dropout
    from jaxnets.models.api import abstract_variables, init_variables
    from jaxnets.models.registry import get_spec

    for name, ends in (("resnet18", ("layer1_1", "layer2_1", "layer3_1", "layer4_1")),
                       ("resnet50", ("layer1_2", "layer2_3", "layer3_5", "layer4_2")),
                       ("resnet20", ("layer1_2", "layer2_2", "layer3_2"))):
        spec = get_spec(name)
        assert stage_ends(abstract_variables(spec, spec.create())["params"]) == ends
    # Dropout2d: one draw per (image, channel), kept values scaled by 1/(1-p)
    x = jnp.ones((8, 3, 3, 64))
    y = np.asarray(channel_dropout(x, 0.25, jax.random.key(0)))
    per_channel = y.reshape(8, 9, 64)
    assert np.all(per_channel.min(1) == per_channel.max(1))  # a channel is all dropped or all kept
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.15 < float(np.mean(y == 0)) < 0.35
    # train mode with a dropout rng changes the output, eval mode is the plain model
    spec = get_spec("resnet20")
    module = spec.create(10)
    variables = init_variables(spec, module, 0)
    wrapped = with_stage_dropout(module, variables["params"], 0.5, "resnet20")
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    np.testing.assert_array_equal(wrapped.apply(variables, x, train=False), module.apply(variables, x, train=False))
    dropped, _ = wrapped.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
    plain, _ = module.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)}, mutable=["batch_stats"])
    assert float(jnp.max(jnp.abs(dropped - plain))) > 1e-3
    assert with_stage_dropout(module, variables["params"], 0.0, "resnet20") is module
    with pytest.raises(JaxnetsError, match="--dropout needs a ResNet"):
        with_stage_dropout(module, {"conv1": {}, "fc": {}}, 0.1, "digits_cnn")


@pytest.mark.parametrize("cls,opts,flag", [
    ("FinetuneConfig", {"dropout": 1.0}, "--dropout"),
    ("FinetuneConfig", {"momentum": -0.1}, "--momentum"),
    ("FinetuneConfig", {"weight_decay": -1}, "--weight-decay"),
    ("FinetuneConfig", {"lr_s3_output": 0}, "--lr-s3-output"),
    ("FinetuneConfig", {"lr_s3_hidden": 0}, "--lr-s3-hidden"),
    ("FinetuneConfig", {"pgd_step_size": -1}, "--pgd-step-size"),
    ("StandardFinetuneConfig", {"lr": 0}, "--lr"),
    ("StandardFinetuneConfig", {"early_stop": 0}, "--early-stop"),
    ("RetrainConfig", {"dropout": -0.5}, "--dropout"),
    ("RobustnessConfig", {"pgd_steps": -1}, "--pgd-steps"),
    ("RobustnessConfig", {"batch_size": 0}, "--batch-size"),
])
def test_new_config_fields_are_checked(cls: str, opts: dict, flag: str) -> None:
    from jaxnets.methods.seam import config

    with pytest.raises(ConfigError) as caught:
        getattr(config, cls)(**opts)
    assert caught.value.flag == flag


def test_original_defaults() -> None:
    """The scripts' argparse defaults (spec §4.7, §4.8)."""
    from jaxnets.methods.seam import FinetuneConfig, RetrainConfig, RobustnessConfig, StandardFinetuneConfig

    f = FinetuneConfig()
    assert (f.lr_s1_output, f.lr_s2_output, f.lr_mask, f.alpha, f.prune_threshold, f.lr_s3_output, f.lr_s3_hidden,
            f.momentum, f.weight_decay, f.dropout, f.epochs, f.early_stop) == (
        0.1, 0.001, 0.1, 1.0, 1.0, 0.05, 0.005, 0.0, 1e-4, 0.0, 300, 30)
    s = StandardFinetuneConfig()
    assert (s.lr, s.momentum, s.weight_decay, s.dropout, s.epochs, s.early_stop) == (0.005, 0.0, 1e-4, 0.0, 300, -1)
    r = RetrainConfig()
    assert (r.lr, r.momentum, r.weight_decay, r.epochs, r.early_stop) == (0.1, 0.5, 1e-4, 300, -1)
    p = RobustnessConfig()
    assert (p.pgd_eps, p.pgd_steps, p.pgd_step_size, p.batch_size) == (0.1, 40, 0.01, 64)


def test_standard_finetune_and_retrain_digits(digits: dict, tmp_path: Path) -> None:
    from jaxnets.methods.seam import RetrainConfig, StandardFinetuneConfig, maskdict, retrain, standard_finetune

    std = standard_finetune(digits["model"], digits["train"], StandardFinetuneConfig(epochs=2, lr=0.01),
                            tmp_path / "std", test_data=digits["test"])
    s = std.to_json()
    assert s["schema"] == "jaxnets.seam.baseline/1" and s["method"] == "standard" and s["num_classes"] == 10
    assert s["epochs_run"] == 2 and s["epoch"] in (0, 1) and s["n"] == 360 and s["correct"] == round(s["acc"] * 360)
    assert std.accuracy > 0.9  # a pretrained digits model stays good
    saved = maskdict.load_tree(tmp_path / "std" / "model_ft.msgpack")
    _same(saved, std.model.variables)
    assert json.loads((tmp_path / "std" / "results.json").read_text())["acc"] == s["acc"]
    rows = [json.loads(line) for line in (tmp_path / "std" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["phase"] == "epoch"] == [0, 1]
    # retrain: from scratch (the pretrained weights are not used), one SGD with momentum
    rt = retrain(digits["model"], digits["train"], RetrainConfig(epochs=3, lr=0.05), tmp_path / "rt",
                 test_data=digits["test"])
    assert rt.summary["method"] == "retrain" and (tmp_path / "rt" / "model_rt.msgpack").is_file()
    assert 0.5 < rt.accuracy <= 1.0  # learns digits from scratch in three epochs
    # nothing is written without a run folder
    none = standard_finetune(digits["model"], digits["train"], StandardFinetuneConfig(epochs=1),
                             test_data=digits["test"])
    assert none.run_dir is None and none.summary["run_dir"] is None


def test_seam_step3_with_all_masks_kept_is_standard_finetuning(digits: dict, tmp_path: Path) -> None:
    """Step 3 and the standard baseline are one training: with every weight kept (masks all
    ones) and the same learning rates, seed and data, the fine-tuned variables are identical."""
    from jaxnets.methods.seam import FinetuneConfig, StandardFinetuneConfig, core, finetune, maskdict, standard_finetune

    model = digits["model"]
    scores = core.init_scores(model.variables["params"])
    masks = maskdict.export_mask_dict(tmp_path / "ones.pth", scores, None, model.spec.keymap)
    seam = finetune(model, digits["train"], FinetuneConfig(epochs=2, lr_s3_hidden=0.01, lr_s3_output=0.1, pgd_steps=1),
                    test_data=digits["test"], masks=masks)
    std = standard_finetune(model, digits["train"], StandardFinetuneConfig(epochs=2, lr=0.01), test_data=digits["test"])
    _same(seam.model.variables, std.model.variables)
    assert seam.summary["step3"]["acc"] == std.accuracy and seam.retention == 1.0


def test_standard_finetune_resume_is_exact(digits: dict, tmp_path: Path) -> None:
    from jaxnets.methods.seam import StandardFinetuneConfig, standard_finetune

    whole = standard_finetune(digits["model"], digits["train"], StandardFinetuneConfig(epochs=2, lr=0.01),
                              tmp_path / "whole", test_data=digits["test"])
    standard_finetune(digits["model"], digits["train"], StandardFinetuneConfig(epochs=1, lr=0.01), tmp_path / "cut",
                      test_data=digits["test"])
    resumed = standard_finetune(digits["model"], digits["train"], StandardFinetuneConfig(epochs=2, lr=0.01),
                                tmp_path / "cut", test_data=digits["test"], resume="auto")
    _same(resumed.model.variables, whole.model.variables)
    assert resumed.summary["resumed_from"] == whole.summary["end_step"] // 2
    assert (resumed.summary["acc"], resumed.summary["epoch"]) == (whole.summary["acc"], whole.summary["epoch"])


def test_seam_finetune_resume_reuses_finished_steps(digits: dict, tmp_path: Path) -> None:
    """As the original reuses step_1/step_2 files: a resumed run reuses the finished steps and
    continues an unfinished one from its checkpoint; the result is the uninterrupted run's."""
    from jaxnets.methods.seam import FinetuneConfig, finetune

    config = FinetuneConfig(epochs=2, prune_threshold=0.3, pgd_steps=1)
    first = finetune(digits["model"], digits["train"], config, tmp_path / "run", test_data=digits["test"])
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert list(stages) == ["step1", "step2", "step3"]
    assert stages["step2"]["end_step"] > stages["step1"]["end_step"]  # one global step across the steps
    # "kill" it before step 3 was recorded: step 3 restarts from its last checkpoint
    del stages["step3"]
    (tmp_path / "run" / "stages.json").write_text(json.dumps(stages))
    (tmp_path / "run" / "step_3_seam_ft.msgpack").unlink()
    again = finetune(digits["model"], digits["train"], config, tmp_path / "run", test_data=digits["test"],
                     resume="auto")
    _same(again.model.variables, first.model.variables)
    assert again.summary["step3"]["resumed_from"] == stages["step2"]["end_step"] + 2 * 23  # 2 epochs of 23 steps
    assert again.summary["dir"] == first.summary["dir"] and again.summary["step1"] == first.summary["step1"]
    with pytest.raises(JaxnetsError, match="resume"):
        finetune(digits["model"], digits["train"], config, tmp_path / "x", test_data=digits["test"], resume="other")


def test_seam_finetune_dropout_and_momentum_reach_step3(tmp_path: Path, shared_data: Path, cifar_exact: Path) -> None:
    """--dropout wraps the step-3 model (a ResNet), --momentum/--weight-decay its SGD: the run
    differs from the plain one, and both are recorded."""
    from jaxnets.api import load
    from jaxnets.methods.seam import FinetuneConfig, core, finetune, maskdict
    from jaxnets.methods.seam.loaders import open_target_split

    data = f"cifar10:{cifar_exact}"
    train = open_target_split(data, "train", "binary:3", limit=32)
    test = open_target_split(data, "test", "binary:3", limit=16)
    model = load("resnet20", shared_data / "weights" / "resnet20-12fca82f.th", data=test)
    masks = maskdict.export_mask_dict(tmp_path / "ones.pth", core.init_scores(model.variables["params"]), None,
                                      model.spec.keymap)
    base = {"epochs": 1, "pgd_steps": 0, "batch_size": 16, "augment": False}
    plain = finetune(model, train, FinetuneConfig(**base), test_data=test, masks=masks)
    dropped = finetune(model, train, FinetuneConfig(**base, dropout=0.5, momentum=0.9, weight_decay=5e-4),
                       tmp_path / "run", test_data=test, masks=masks)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(
        jax.tree_util.tree_leaves(plain.model.variables["params"]),
        jax.tree_util.tree_leaves(dropped.model.variables["params"]), strict=True))
    assert diff > 0
    options = json.loads((tmp_path / "run" / "defect.json").read_text())["options"]
    assert (options["dropout"], options["momentum"], options["weight_decay"]) == (0.5, 0.9, 5e-4)
    assert dropped.summary["dropout"] == 0.5
