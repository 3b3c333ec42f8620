"""Issue 18: compute_projections.py and reinit_layers.py command lines pasted after ``jaxnets
projections`` / ``jaxnets reinit`` run — ``--arch``, ``--load-from``, ``--dataset`` (with
``--data-path`` for reinit), ``--subsample-classes``, the value-less ``--pretrained`` /
``--upscale``, and the original-only flags with one warning line each (spec §2.7, §3.3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _save(path: Path, model: str, seed: int, num_classes: int = 10) -> Path:
    """Random weights of ``model`` as a jaxnets checkpoint that names no data set (like a file
    from elsewhere: the command line has to say it)."""
    from jaxnets.api import load
    from jaxnets.io import save_variables

    net = load(model, num_classes=num_classes, seed=seed)
    return save_variables(path, net.variables, {"model": model, "num_classes": num_classes})


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, Path]:
    """digits_cnn "after epoch 5" and "at init" (the original's file names give the labels)."""
    root = tmp_path_factory.mktemp("hp_flags")
    return _save(root / "digits_cnn_5", "digits_cnn", 1), _save(root / "digits_cnn_init_0", "digits_cnn", 0)


def test_compute_projections_command_line(weights, tmp_path: Path, capsys, monkeypatch) -> None:
    """The README's ``compute_projections.py --arch … --dataset … --cuda --normalize --load-from …``
    (+ ``--init-from``, ``--results``, ``--log``, ``--seed``): the original schema, named by
    ``--dataset`` (the original opens no data)."""
    trained, init = weights
    out = tmp_path / "proj"
    code, _, err = run_cli(["projections", "--arch", "digits_cnn", "--dataset", "cifar10", "--cuda", "--normalize",
                            "--load-from", trained, "--init-from", init, "--results", "./results", "--log", "p.log",
                            "--seed", "3", "--no-plots", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    assert [w.split(" is ignored")[0] for w in _warnings(err)] == ["warning: --cuda", "warning: --results",
                                                                  "warning: --log"]
    doc = json.loads((out / "digits_cnn_5.json").read_text())
    assert (doc["arch"], doc["dataset"], doc["seed"], doc["epoch"]) == ("digits_cnn", "cifar10", "3", "6")
    stages = [k for k in doc if k.isdigit()]
    assert stages and all({"projections", "mass", "mean", "l2_dist", "l_inf_dist"} <= set(block)
                          for s in stages for block in doc[s].values())
    assert 0.0 <= doc["net"]["mass"] <= 1.0 and len(doc["net"]["projections"]) == 32 + 64 + 64
    options = json.loads((out / "config.json").read_text())["options"]
    assert not {"arch", "cuda", "results", "log", "dataset"} & set(options)


def test_random_init_with_subsample_classes(tmp_path: Path, capsys, monkeypatch) -> None:
    """No snapshot: ``init_<arch>``, epoch 0, a head of ``--subsample-classes`` units, dataset
    ``<name>_<N>`` as the original writes it."""
    out = tmp_path / "proj"
    code, _, err = run_cli(["projections", "--arch", "digits_cnn", "--dataset", "cifar100", "--subsample-classes",
                            "5", "--with-linear", "--no-plots", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((out / "init_digits_cnn.json").read_text())
    assert (doc["dataset"], doc["epoch"]) == ("cifar100_5", "0")
    head = [block for s in doc if s.isdigit() for block in doc[s].values()][-1]
    assert len(head["projections"]) == 5  # the linear head has --subsample-classes units
    assert json.loads((out / "config.json").read_text())["options"]["num_classes"] == 5


def test_value_less_pretrained_labels_the_weights(weights, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--pretrained`` without a value: the ``--load-from`` file is the ImageNet start weights
    (``pretrained_<arch>``, epoch -1); the original downloads them."""
    out = tmp_path / "proj"
    code, _, err = run_cli(["projections", "--arch", "digits_cnn", "--dataset", "cifar10", "--pretrained",
                            "--load-from", weights[0], "--normalize", "--no-plots", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((out / "pretrained_digits_cnn.json").read_text())
    assert (doc["epoch"], doc["dataset"]) == ("-1", "cifar10")


def test_reinit_layers_command_line(weights, tmp_path: Path, capsys, monkeypatch) -> None:
    """The README's ``reinit_weights.py --arch … --load-from … --inits-from LIST --rand
    --batch-size 128 --cuda`` (+ ``--data digits``, the ignored flags): the original schema."""
    trained, init = weights
    inits = tmp_path / "inits.txt"
    inits.write_text(f"{init}\n{trained}\n{tmp_path / 'missing_3'}\n\n")
    out = tmp_path / "reinit"
    code, _, err = run_cli(["reinit", "--arch", "digits_cnn", "--data", "digits", "--load-from", trained,
                            "--inits-from", inits, "--rand", "--batch-size", "128", "--cuda", "-j", "4",
                            "--results", "./results", "--plots", "./plots", "--log", "r.log", "--seed", "0",
                            "--class-sample-seed", "42", "--limit", "120", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    ignored = [w.split(" is ignored")[0] for w in _warnings(err) if " is ignored" in w]
    assert ignored == ["warning: --cuda", "warning: --workers", "warning: --results", "warning: --plots DIR",
                       "warning: --log", "warning: --class-sample-seed"], err
    doc = json.loads((out / "reinit_digits_cnn_5.json").read_text())
    assert list(doc["init_from_epoch"]) == ["0", "6", "rand"]  # list order, the missing entry skipped, rand last
    assert all(len(row) == 3 for row in doc["init_from_epoch"].values())  # digits_cnn's three convs
    assert doc["init_from_epoch"]["6"] == [doc["top1_test"]] * 3  # its own weights: the baseline, exactly
    assert (doc["arch"], doc["dataset"], doc["epoch"], doc["seed"]) == ("digits_cnn", "digits", "6", "0")


@pytest.mark.needs_shared_data
def test_reinit_dataset_data_path_and_subsample(cifar_exact: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``--dataset cifar10 --data-path DIR --subsample-classes 2``: the exact subset's classes 0 and
    1 (train.py's default choice), a 2-unit head."""
    trained = _save(tmp_path / "lenet_0", "lenet", 1, num_classes=2)
    out = tmp_path / "reinit"
    code, _, err = run_cli(["reinit", "--arch", "lenet", "--dataset", "cifar10", "--data-path", cifar_exact.parent,
                            "--load-from", trained, "--subsample-classes", "2", "--rand", "--no-plots",
                            "--out", out], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((out / "reinit_lenet_0.json").read_text())
    assert doc["dataset"] == "cifar10" and doc["num_classes"] == 2 and len(doc["init_from_epoch"]["rand"]) == 6
    results = json.loads((out / "results.json").read_text())
    assert results["n_test"] == 83 + 70  # the airplanes and automobiles among the 846 exact test images


@pytest.mark.parametrize("args,message", [
    (["reinit", "--arch", "digits_cnn", "--data", "digits", "--rand", "--upscale"],
     "does not record its training size; reinit evaluates upscaled data only for snapshots of `jaxnets train"),
    (["reinit", "digits_cnn", "--arch", "lenet", "--rand"],
     "error: got the model twice: 'digits_cnn' and --arch 'lenet'"),
    (["projections", "--arch", "digits_cnn", "--dataset", "cifar10", "--data", "digits"],
     "error: --dataset cifar10 and --data digits name different data sets"),
    (["projections", "--arch", "digits_cnn", "--pretrained"], "error: --pretrained: nothing is downloaded here"),
])
def test_bad_original_flags_are_one_line(args: list[str], message: str, weights, tmp_path: Path, capsys,
                                         monkeypatch) -> None:
    if args[0] == "reinit":
        args = [*args, "--load-from", weights[0]]
    code, _, err = run_cli([*args, "--out", tmp_path / "x"], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
