"""WFN on the real resnet20-12fca82f.th checkpoint and the JPEG CIFAR-10 (short schedule)."""

from __future__ import annotations

import pytest


def run_wfn(opts: dict) -> dict:
    """The library calls ``jaxnets wfn run`` makes, from a dict of its options → the summary."""
    import dataclasses

    from jaxnets.api import load, open_data
    from jaxnets.methods.wfn import WFNConfig, run

    fields = {f.name for f in dataclasses.fields(WFNConfig)}
    config = WFNConfig(**{k: v for k, v in opts.items() if k in fields})
    train = open_data(opts["data"], "train", limit=opts.get("limit"))
    test = open_data(opts["data"], "test", limit=opts.get("test_limit"))
    model = load(opts["model"], opts.get("weights"), num_classes=train.num_classes, data=train, seed=config.seed)
    return run(model, train, config, run_dir=opts["out"], test_data=test, resume=opts.get("resume")).summary


@pytest.mark.slow
def test_resnet20_jpeg_cifar_short_schedule(shared_data, cifar_jpeg, tmp_path):
    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    s = run_wfn({"model": "resnet20", "weights": weights, "data": f"imagefolder:{cifar_jpeg}",
                 "limit": 256, "test_limit": 500, "batch_size": 64, "distance_allowed": 0.0075,
                 "percentages": "0.6,0.9,1.0", "fixing_epochs": 1, "bn_inc": True,
                 "tensorboard": False, "out": tmp_path / "run"})
    assert s["fixed_fraction"] == 1.0
    assert s["quantised_values"] == 269_722  # every parameter: convs, BN γ/β (--bn-inc), fc
    assert s["unique_all"] <= s["codebook_size"] < 1000
    assert s["baseline_accuracy"] > 0.75  # the checkpoint on JPEG CIFAR-10 (81 % on all 10k)
    assert s["final_accuracy"] > s["baseline_accuracy"] - 0.15


# The original's Results.csv header (spec §3.4), written out here rather than imported.
ORIGINAL_RESULTS_COLUMNS = ["data_name", "experiment_name", "model_name", "BN", "regularisation_ratio",
                            "distance_allowed", "fixing_epochs", "orig_acc", "orig_entropy", "orig_params",
                            "compressed_acc", "compressed_entropy", "compressed_entropy_non_zero", "unique_params",
                            "zero_distance"]


@pytest.mark.slow
def test_resnet20_original_cifar_protocol_short_schedule(shared_data, cifar_exact, tmp_path, capsys, monkeypatch):
    """`--protocol original-cifar` (augmentation, a held-out validation split checked after every
    epoch, BN quantised) on the exact CIFAR-10 subset: 256 train / 64 validation / 200 test
    images, 2 rounds, 1 epoch; Results.csv is results.json's row with the original's columns."""
    import csv
    import json
    import math

    from cli_helpers import run_cli

    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    out = tmp_path / "run"
    code, stdout, err = run_cli(["wfn", "run", "resnet20", "--weights", weights, "--data", f"cifar10:{cifar_exact}",
                                 "--protocol", "original-cifar", "--val-split", "64", "--limit", "320",
                                 "--test-limit", "200", "--percentages", "0.5", "1.0", "--fixing-epochs", "1",
                                 "--batch-size", "64", "--out", out], capsys, monkeypatch)
    assert code == 0, err
    options = json.loads((out / "config.json").read_text())["options"]
    assert (options["protocol"], options["augment"], options["val_split"], options["bn_inc"]) == \
        ("original-cifar", True, 64, True)
    res = json.loads((out / "results.json").read_text())
    assert res["images"] == {"train": 256, "validation": 64, "test": 200}
    assert res["rounds"][-1]["fixed_fraction"] == 1.0

    with (out / "Results.csv").open(newline="") as f:
        reader = csv.reader(f)
        header, *rows = list(reader)
    assert header == ORIGINAL_RESULTS_COLUMNS and len(rows) == 1
    for name, cell in zip(header, rows[0], strict=True):
        value = res[name]
        assert (float(cell) == value) if isinstance(value, float) else (cell == str(value)), name

    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["phase"] == "epoch"]
    assert [r["round"] for r in epochs] == [1] and epochs[0]["train_examples"] == 256
    for r in epochs:  # validation after every fine-tuning epoch
        assert math.isfinite(r["val_loss"]) and r["val_loss"] > 0 and 0 <= r["val_acc"] <= 1
    rounds = [r for r in rows if r["phase"] == "round"]
    assert len(rounds) == 2
    for r in rounds:  # top-5 with top-1, before and after each round's fixing
        assert r["accuracy"] <= r["top5"] <= 1 and r["accuracy_after_fix"] <= r["top5_after_fix"] <= 1
    assert res["orig_acc"] <= res["orig_acc5"] and res["compressed_acc"] <= res["compressed_acc5"]
    assert res["orig_acc"] > 0.75  # the checkpoint on exact CIFAR-10 pixels
    assert f"top-5 {100 * res['compressed_acc5']:.2f} %" in stdout
