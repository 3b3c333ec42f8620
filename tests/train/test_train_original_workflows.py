"""The original train.py's workflows in `jaxnets train` (issue 18, Hyperplanes; spec §4):
``--eval-regularization-loss``, ``--start-epoch``, ``--resume-from`` an original ``.tar``, pixel
shuffle after augmentation, and the defaults' one place (``TrainConfig``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.methods.hyperplanes.config import TrainConfig

DIGITS = ["--data", "digits", "--batch-size", "64", "--shuffle", "-q"]
DIGITS_STEPS = 1437 // 64  # digits: 1437 training images, full batches only


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def _snapshot_names(run: Path) -> set[str]:
    return {p.name for p in (run / "snapshots").iterdir()}


def _model(name: str = "digits_cnn", classes: int = 10):
    from jaxnets.models.registry import get_spec

    spec = get_spec(name)
    return spec, spec.create(classes)


def _snapshot_params(path: Path) -> dict:
    from jaxnets.io import load_variables
    from jaxnets.models.api import abstract_variables

    spec, module = _model()
    return load_variables(path, abstract_variables(spec, module))["params"]


def _max_diff(a, b) -> float:
    import jax

    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True))


def _one_error_line(code: int, err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("WARNING:absl")]
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return lines[0]


# ------------------------------------------------------------------------------------------------
# defaults: one place


def test_train_flags_default_to_the_train_config(capsys, monkeypatch) -> None:
    from jaxnets.train.command import with_defaults

    code, out, err = run_cli(["train", "lenet", "--dry-run"], capsys, monkeypatch)
    assert code == 0, err
    options = json.loads(out)["options"]
    default = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        assert options[field.name] == getattr(default, field.name), field.name
    assert set(options) - {"model", "config", "verbose", "quiet"} == {f.name for f in dataclasses.fields(TrainConfig)}
    # a library caller names only what differs
    assert with_defaults({"model": "lenet", "epochs": 3}) == {**default.options(), "model": "lenet", "epochs": 3}


# ------------------------------------------------------------------------------------------------
# --eval-regularization-loss


@pytest.fixture
def exported_weights(tmp_path: Path) -> Path:
    """digits_cnn's seed-3 init as a PyTorch state_dict file (the project's torch-free writer)."""
    from jaxnets.converters.torch_writer import export_variables

    from jaxnets.models.api import init_variables

    spec, module = _model()
    return export_variables(tmp_path / "digits_cnn.pt", init_variables(spec, module, 3), spec.keymap)


def test_eval_regularization_loss_is_the_originals_number(exported_weights: Path, tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    from jaxnets.converters.torch_reader import load_torch_file

    run = tmp_path / "run"
    code, out, err = run_cli(["train", "digits_cnn", "--data", "digits", "--pretrained", exported_weights,
                              "--eval-regularization-loss", "--weight-decay", "0.0005", "--out", run], capsys,
                             monkeypatch)
    assert code == 0, err
    report = _results(run)
    assert set(report) == {"schema", "model", "weights", "weight_decay", "regularization_loss", "weight_norm_sum",
                           "weight_tensors"}
    assert report["schema"] == "jaxnets.train.regularization/1" and report["weight_decay"] == 0.0005
    # The original: wd · Σ ‖p‖₂ over the parameters whose PyTorch name contains "weight" (convs,
    # linears, BN gammas; norms not squared), here from the file's own PyTorch names.
    state = load_torch_file(exported_weights)
    weights = [k for k in state if "weight" in k]
    assert len(weights) == report["weight_tensors"] == 7  # 3 convs, 3 BN, 1 linear
    expected = 0.0005 * sum(float(np.linalg.norm(state[k].astype(np.float64))) for k in weights)
    assert report["regularization_loss"] == pytest.approx(expected, rel=1e-12)
    assert f"{expected:.6f}" in out
    assert not (run / "snapshots").exists() and not (run / "checkpoints").exists()  # it exits before training


def test_eval_regularization_loss_matches_torch(exported_weights: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    state = torch.load(exported_weights, weights_only=True)
    reference = 1e-4 * float(sum(t.norm() for k, t in state.items() if "weight" in k))  # float32, as the original
    code, _, err = run_cli(["train", "digits_cnn", "--data", "digits", "--pretrained", exported_weights,
                            "--eval-regularization-loss", "--out", tmp_path / "run"], capsys, monkeypatch)
    assert code == 0, err
    assert _results(tmp_path / "run")["regularization_loss"] == pytest.approx(reference, rel=1e-6)


# ------------------------------------------------------------------------------------------------
# --start-epoch


def test_start_epoch_counts_from_n_and_restarts_the_lr_schedule(tmp_path: Path, capsys, monkeypatch) -> None:
    run = tmp_path / "run"
    # LR ×1e-6 after every epoch of the run: only the run's first epoch (2) moves the weights when the
    # schedule starts at the run's first epoch, as the original's freshly built StepLR does.
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--epochs", "4", "--start-epoch", "2", "--optimizer",
                            "adam", "--lr", "0.003", "--lr-step", "1", "--lr-decay", "1e-6", "--snapshot-all-until",
                            "10", "--out", run], capsys, monkeypatch)
    assert code == 0, err
    report = _results(run)
    assert report["start_epoch"] == 2 and report["epochs_completed"] == 4 and report["resume_from"] is None
    assert [(r["epoch"], r["step"]) for r in report["history"]] == [(2, 3 * DIGITS_STEPS), (3, 4 * DIGITS_STEPS)]
    # epochs 2 and 3 snapshotted under their own index; no init snapshot (the original: only at 0)
    assert _snapshot_names(run) == {"digits_cnn_2", "digits_cnn_3", "digits_cnn_final_4"}
    meta = json.loads((run / "snapshots" / "digits_cnn_2" / "jaxnets.json").read_text())
    assert (meta["epoch"], meta["epoch_completed"], meta["start_epoch"]) == (2, 3, 2)
    from jaxnets.models.api import init_variables

    spec, module = _model()
    start = init_variables(spec, module, 0)["params"]  # --seed 0
    two, three = (_snapshot_params(run / "snapshots" / f"digits_cnn_{e}") for e in (2, 3))
    assert _max_diff(start, two) > 1e-2  # epoch 2 trained at the base rate (Adam: ~0.003 per step)
    assert _max_diff(two, three) < 1e-6  # epoch 3 at 0.003·1e-6


def test_start_epoch_beyond_the_end_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--epochs", "3", "--start-epoch", "3", "--out",
                            tmp_path / "run"], capsys, monkeypatch)
    assert "--start-epoch is 3" in _one_error_line(code, err)
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--start-epoch", "-1", "--out", tmp_path / "run"],
                           capsys, monkeypatch)
    assert "--start-epoch must be" in _one_error_line(code, err)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# --resume-from an original .tar


def _digits_cnn_state(seed: int = 1) -> dict[str, np.ndarray]:
    from jaxnets.converters.convert import variables_to_state_dict

    from jaxnets.models.api import init_variables

    spec, module = _model()
    return variables_to_state_dict(init_variables(spec, module, seed), spec.keymap)


def _to_flax_params(named: dict) -> dict:
    """PyTorch-named parameter tensors (weights, grads) → a Flax params tree of digits_cnn."""
    import jax
    from jaxnets.converters.convert import state_dict_to_variables

    from jaxnets.models.api import abstract_variables

    spec, module = _model()
    target = {"params": abstract_variables(spec, module)["params"]}
    flat = {k: np.asarray(v.detach() if hasattr(v, "detach") else v) for k, v in named.items()}
    return jax.tree_util.tree_map(np.asarray, state_dict_to_variables(flat, target, spec.keymap)["params"])


def _restored(tar: Path, opts: dict):
    """The run's optax state with the snapshot's moments, as run_train builds it."""
    from jaxnets.methods.hyperplanes.original import read_original_snapshot, restore_optimizer_state
    from jaxnets.train.command import _optimizer, with_defaults
    from jaxnets.train.state import TrainState

    spec, module = _model()
    snapshot = read_original_snapshot(tar, spec, module)
    opts = with_defaults({"model": "digits_cnn", **opts})
    state = TrainState.create(module, snapshot.variables, _optimizer(opts, DIGITS_STEPS))
    opt_state, notes = restore_optimizer_state(state.opt_state, snapshot, spec, state.params, opts)
    return snapshot, state, opt_state, notes


@pytest.mark.parametrize("optimizer,legacy", [("sgd", True), ("sgd", False), ("adam", True)])
def test_resume_from_maps_the_optimiser_state(optimizer: str, legacy: bool, tmp_path: Path) -> None:
    """Weights, epoch and the moments of an original snapshot (torch 1.4's legacy format and the zip
    one): one more step from the restored optax state equals PyTorch's step from the snapshot."""
    pytest.importorskip("torch")
    import jax
    import optax
    import torch
    from original_tar import torch_training, write_original_tar

    training = torch_training(_digits_cnn_state(), optimizer, lr=0.05 if optimizer == "sgd" else 0.003,
                              step_lr=False, steps=3)
    tar = write_original_tar(tmp_path / "digits_cnn_4.tar", training, epoch=4, legacy=legacy)
    opts = {"optimizer": optimizer, "lr": 0.05 if optimizer == "sgd" else 0.003}
    snapshot, state, opt_state, notes = _restored(tar, opts)
    assert notes == []  # every tensor mapped, the same hyperparameters
    assert (snapshot.epoch, snapshot.next_epoch, snapshot.top1_acc) == (4, 5, 50.0)
    trained = _to_flax_params(dict(zip(training.names, training.params, strict=True)))
    assert _max_diff(trained, state.params) == 0.0
    if optimizer == "sgd":
        buffers = _to_flax_params({n: training.optimizer.state[p]["momentum_buffer"]
                                   for n, p in zip(training.names, training.params, strict=True)})
        leaves = [s.trace for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: isinstance(
            x, optax.TraceState)) if isinstance(s, optax.TraceState)]
        assert len(leaves) == 1 and _max_diff(leaves[0], buffers) == 0.0
    # one more step on the same gradients, both sides
    torch.manual_seed(9)
    grads = {n: torch.randn_like(p) for n, p in zip(training.names, training.params, strict=True)}
    for n, p in zip(training.names, training.params, strict=True):
        p.grad = grads[n]
    training.optimizer.step()
    updates, _ = state.tx.update(_to_flax_params(grads), opt_state, state.params)
    ours = optax.apply_updates(state.params, updates)
    theirs = _to_flax_params(dict(zip(training.names, training.params, strict=True)))
    assert _max_diff(ours, theirs) < 1e-6


def test_resumed_lr_schedule_continues_at_the_snapshot_epoch() -> None:
    """From a snapshot the step-LR schedule is at the resumed epoch (from --start-epoch alone it
    restarts): epoch 2 of lr 1, ×0.5 per epoch, moves a unit gradient by 0.25."""
    import jax.numpy as jnp

    from jaxnets.methods.hyperplanes.original import set_schedule_position
    from jaxnets.train.command import _optimizer, with_defaults

    tx = _optimizer(with_defaults({"lr": 1.0, "lr_step": 1, "lr_decay": 0.5, "momentum": 0.0,
                                   "weight_decay": 0.0}), steps_per_epoch=3)
    params = jnp.zeros(())
    state = set_schedule_position(tx.init(params), 2 * 3)
    updates, _ = tx.update(jnp.ones(()), state, params)
    assert float(updates) == pytest.approx(-0.25)


@pytest.fixture
def sgd_tar(tmp_path: Path) -> Path:
    """digits_cnn after epoch 1 of SGD (momentum 0.9, wd 1e-4, base lr 0.05, StepLR halved once)."""
    pytest.importorskip("torch")
    from original_tar import torch_training, write_original_tar

    return write_original_tar(tmp_path / "digits_cnn_1.tar", torch_training(_digits_cnn_state()), epoch=1)


def test_resume_from_continues_after_the_snapshot_epoch(sgd_tar: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", sgd_tar, "--epochs", "3", "--lr", "0.05",
                            "--lr-step", "1", "--lr-decay", "0.5", "--out", run], capsys, monkeypatch)
    assert code == 0, err
    assert "cannot be mapped" not in err and "the snapshot's optimiser had" not in err
    report = _results(run)
    # the snapshot finished epoch 1: training continues at 2 (the original re-ran epoch 1, §7 #14)
    assert report["start_epoch"] == 2 and report["epochs_completed"] == 3
    assert report["resume_from"] == str(sgd_tar)
    assert [(r["epoch"], r["step"]) for r in report["history"]] == [(2, 3 * DIGITS_STEPS)]
    assert _snapshot_names(run) == {"digits_cnn_2", "digits_cnn_final_3"}
    assert 0 <= report["test_top1"] <= 1
    meta = json.loads((run / "snapshots" / "digits_cnn_2" / "jaxnets.json").read_text())
    assert meta["resume_from"] == str(sgd_tar) and meta["epoch_completed"] == 3
    # as the original, the snapshot is also what --evaluate evaluates
    code, out, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", sgd_tar, "--evaluate", "--out",
                              tmp_path / "eval"], capsys, monkeypatch)
    assert code == 0, err
    assert set(_results(tmp_path / "eval")) >= {"schema", "model", "test_top1"} and "test top-1" in out


def test_resume_from_says_what_does_not_map(sgd_tar: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", sgd_tar, "--epochs", "3", "--optimizer",
                            "adam", "--out", tmp_path / "adam"], capsys, monkeypatch)
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "digits_cnn_1.tar" in ln]
    assert len(warnings) == 1 and "cannot be mapped" in warnings[0] and "fresh optimiser" in warnings[0], err
    # SGD maps, but with another base rate than the snapshot's: one line naming it
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", sgd_tar, "--epochs", "3", "--lr", "0.1",
                            "--out", tmp_path / "lr"], capsys, monkeypatch)
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "digits_cnn_1.tar" in ln]
    assert len(warnings) == 1 and "lr 0.05" in warnings[0], err


def test_resume_from_a_plain_state_dict_loads_the_weights_only(exported_weights: Path, tmp_path: Path, capsys,
                                                               monkeypatch) -> None:
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", exported_weights, "--epochs", "1",
                            "--out", run], capsys, monkeypatch)
    assert code == 0, err
    report = _results(run)
    assert report["start_epoch"] == 0 and report["epochs_completed"] == 1
    assert _snapshot_names(run) == {"digits_cnn_init_0", "digits_cnn_0", "digits_cnn_final_1"}
    from jaxnets.converters.torch_reader import load_torch_file

    assert _max_diff(_snapshot_params(run / "snapshots" / "digits_cnn_init_0"),
                     _to_flax_params({k: v for k, v in load_torch_file(exported_weights).items()
                                      if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))})) == 0


@pytest.mark.parametrize("content,fragment", [
    ("folder", "is a folder"),
    (b"", "empty"),
    (b"\x80\x02garbage that is not a pickle at all", "cannot read checkpoint"),
    (b"PK\x03\x04truncated zip", "truncated or corrupt"),
    ("lenet", "does not fit digits_cnn"),
])
def test_resume_from_odd_files_are_one_line(content, fragment: str, tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "odd.tar"
    if content == "folder":
        path.mkdir()
    elif content == "lenet":
        from jaxnets.converters.torch_writer import export_variables

        from jaxnets.models.api import init_variables

        spec, module = _model("lenet")
        export_variables(path, init_variables(spec, module, 0), spec.keymap)
    else:
        path.write_bytes(content)
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", path, "--epochs", "2", "--out",
                            tmp_path / "run"], capsys, monkeypatch)
    assert fragment in _one_error_line(code, err)
    assert not (tmp_path / "run").exists()  # the file is read before the run folder is opened


@pytest.mark.parametrize("override,fragment", [
    ({"epoch": "abc"}, "'epoch' is 'abc'"),
    ({"epoch": -1}, "'epoch' is -1"),
    ({"epoch": True}, "'epoch' is True"),
    ({"model_state_dict": 5}, "no state_dict found"),
])
def test_resume_from_hostile_snapshots_are_one_line(override: dict, fragment: str, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    pytest.importorskip("torch")
    from original_tar import torch_training, write_original_tar

    tar = write_original_tar(tmp_path / "x.tar", torch_training(_digits_cnn_state(), steps=1),
                             **{"epoch": 1, **override})
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", tar, "--epochs", "3", "--out",
                            tmp_path / "run"], capsys, monkeypatch)
    assert fragment in _one_error_line(code, err)


@pytest.mark.parametrize("optimizer_state", [{"state": 5}, {"state": {}, "param_groups": [{"momentum": 0.9,
                                                                                             "params": ["a"]}]},
                                             {"state": {}, "param_groups": [{"momentum": 0.9, "params": [0, 1]}]}])
def test_resume_from_malformed_optimiser_state_starts_fresh(optimizer_state: dict, tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    pytest.importorskip("torch")
    from original_tar import torch_training, write_original_tar

    tar = write_original_tar(tmp_path / "x.tar", torch_training(_digits_cnn_state(), steps=1), epoch=0,
                             optimizer_state_dict=optimizer_state)
    code, _, err = run_cli(["train", "digits_cnn", *DIGITS, "--resume-from", tar, "--epochs", "2", "--out",
                            tmp_path / "run"], capsys, monkeypatch)
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "x.tar" in ln]
    assert len(warnings) == 1 and "cannot be mapped" in warnings[0], err
    assert _results(tmp_path / "run")["epochs_completed"] == 2


# ------------------------------------------------------------------------------------------------
# pixel shuffle after augmentation


def test_pixel_shuffle_runs_after_the_augmentation_in_the_loader() -> None:
    """Shuffled + augmented batches equal augment-then-permute of the same images (and not
    permute-then-augment): the loader's ``after_augment`` hook, on synthetic 32×32 CIFAR-like data."""
    from jaxnets.data.corruption import apply_pixel_shuffle, pixel_shuffle_permutations
    from jaxnets.data.loader import _AUGMENT_STREAM
    from jaxnets.data.pipeline import train_loader
    from jaxnets.data.sources import ArraySource
    from jaxnets.data.transforms import cifar_augment
    from jaxnets.models.registry import get_spec

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    source = ArraySource(images, rng.integers(0, 10, 40), name="synthetic", split="train",
                         class_names=[str(i) for i in range(10)])
    perms = pixel_shuffle_permutations(40, None, 32 * 32, seed=5)
    loader = train_loader(get_spec("lenet"), source, 8, seed=3, augment=True, shuffle=True,
                          after_augment=perms.apply)
    batch = loader.make_batch(epoch=1, step=2)
    augmented = cifar_augment(images[batch.indices], np.random.default_rng([3, 1, 2, _AUGMENT_STREAM]))
    assert np.array_equal(batch.images, apply_pixel_shuffle(augmented, perms.take(batch.indices)))
    permuted_first = cifar_augment(apply_pixel_shuffle(images[batch.indices], perms.take(batch.indices)),
                                   np.random.default_rng([3, 1, 2, _AUGMENT_STREAM]))
    assert not np.array_equal(batch.images, permuted_first)  # the order matters


@pytest.mark.needs_shared_data
def test_pixel_shuffle_with_augmentation_in_train(cifar_exact: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Through `jaxnets train`'s own sources and loader (a validation split, so the training images'
    positions differ from the full set's), then a short run."""
    from jaxnets.data.corruption import apply_pixel_shuffle, pixel_shuffle_permutations
    from jaxnets.data.loader import _AUGMENT_STREAM
    from jaxnets.data.splits import validation_split
    from jaxnets.data.transforms import cifar_augment
    from jaxnets.models.registry import get_spec
    from jaxnets.train.command import build_sources, make_train_loader, with_defaults

    data = f"cifar10:{cifar_exact}"
    opts = with_defaults({"model": "lenet", "data": data, "limit": 200, "noise": -1.0, "noise_seed": 4,
                          "augmentation": True, "split": 0.2, "shuffle": True, "split_seed": 1, "batch_size": 16})
    sources = build_sources(opts)
    batch = make_train_loader(get_spec("lenet"), sources, opts).make_batch(epoch=0, step=3)
    train_idx, _ = validation_split(200, None, 0.2, shuffle=True, seed=1, stratified=False)
    perms = pixel_shuffle_permutations(200, train_idx, 1024, 4)  # keyed by positions in the full training set
    clean = sources.train.get_batch(batch.indices)
    augmented = cifar_augment(clean, np.random.default_rng([0, 0, 3, _AUGMENT_STREAM]))
    assert np.array_equal(batch.images, apply_pixel_shuffle(augmented, perms.take(train_idx[batch.indices])))

    run = tmp_path / "run"
    code, _, err = run_cli(["train", "lenet", "--data", data, "--limit", "256", "--noise", "-1", "--noise-seed", "4",
                            "--augmentation", "--shuffle", "--epochs", "1", "--batch-size", "64", "--train-acc",
                            "--optimizer", "adam", "--out", run, "-q"], capsys, monkeypatch)
    assert code == 0, err
    report = _results(run)
    row = report["history"][0]
    assert np.isfinite(row["train_loss"]) and 0 <= row["train_eval_top1"] <= 1 and 0 <= report["test_top1"] <= 1
    meta = json.loads((run / "snapshots" / "lenet_0" / "jaxnets.json").read_text())
    assert meta["noise"] == -1.0 and meta["noise_seed"] == 4
