"""Run-folder logging (metrics.jsonl/csv, config.json, progress bar) and fit end to end."""

from __future__ import annotations

import csv
import json

import numpy as np
import optax
from trainkit import NORM, digits_loader, make_state

from jaxnets.train import MetricsWriter, ProgressBar, fit, make_eval_step, make_train_step, write_config


def test_metrics_writer_jsonl_csv_and_resume_truncation(tmp_path):
    with MetricsWriter(tmp_path, tensorboard=False) as w:
        w.write({"phase": "train", "step": 1, "loss": np.float32(2.5)})
        w.write({"phase": "train", "step": 2, "loss": float("nan")})
        w.write({"phase": "epoch", "step": 3, "train_loss": 1.0, "test_acc": 0.5})
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[1]["loss"] == "nan"
    with (tmp_path / "metrics.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 and table[2]["test_acc"] == "0.5" and table[0]["loss"] == "2.5"
    # a resumed run drops what the killed run logged after its checkpoint
    with MetricsWriter(tmp_path, resume_step=2, tensorboard=False) as w:
        assert [r["step"] for r in w.rows] == [1, 2]
        w.write({"phase": "train", "step": 3, "loss": 0.7})
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[2]["loss"] == 0.7


def test_write_config_has_versions(tmp_path):
    path = write_config(tmp_path, {"model": "digits_cnn", "lr": 0.1, "out": tmp_path})
    doc = json.loads(path.read_text())
    assert doc["options"]["model"] == "digits_cnn" and doc["options"]["out"] == str(tmp_path)
    assert {"jax", "flax", "optax", "numpy", "python"} <= set(doc["versions"])


def test_progress_bar_off_a_terminal():
    with ProgressBar() as bar:  # pytest's stderr is not a TTY: silent, still callable
        assert not bar.enabled
        bar.start(10, "epoch 1/1")
        bar.advance(1, loss=0.5, acc=0.9, **{"img/s": 1234.0})


def test_fit_digits_end_to_end(tmp_path):
    model, state = make_state(optax.adam(3e-3))
    step = make_train_step(model, normalize=NORM)
    evaluate = make_eval_step(model, normalize=NORM)
    test_loader = digits_loader(90, split="test")

    def eval_fn(state):
        correct = total = 0
        for b in test_loader.epoch(0):
            out = evaluate(state, b.images, b.labels, b.mask)
            correct += int(np.asarray(out["correct"]).sum())
            total += int(b.mask.sum())
        return {"test_acc": correct / total}

    seen = []
    result = fit(state, step, digits_loader(64), epochs=6, run_dir=tmp_path, eval_fn=eval_fn,
                 eval_every=2, log_every=10, model_name="digits_cnn",
                 on_epoch_end=[lambda s, row: seen.append(row["epoch"]) or row["epoch"] == 3])
    assert result.stopped_early and seen == [0, 1, 2, 3]
    assert [("test_acc" in r) for r in result.history] == [False, True, False, True]
    assert result.history[-1]["test_acc"] > 0.9, result.history
    assert result.history[-1]["train_acc"] > 0.9
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["44", "66", "88"]
    phases = [json.loads(x)["phase"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert phases.count("epoch") == 4 and phases.count("train") == 8


def test_fit_compiles_each_step_once_across_epochs(tmp_path, caplog):
    """Three epochs with a padded last batch, checkpoints and an evaluation every epoch: the
    train step and the eval step are each compiled once (issue 9: no recompiles across epochs)."""
    import logging

    import jax

    model, state = make_state(optax.adam(3e-3))
    step = make_train_step(model, normalize=NORM)
    evaluate = make_eval_step(model, normalize=NORM)
    test_loader = digits_loader(100, split="test")  # 360 test images: a padded last batch

    def eval_fn(state):
        for b in test_loader.epoch(0):
            evaluate(state, b.images, b.labels, b.mask)
        return {}

    with caplog.at_level(logging.WARNING), jax.log_compiles(True):
        result = fit(state, step, digits_loader(100, drop_last=False), epochs=3, run_dir=tmp_path,
                     eval_fn=eval_fn, eval_every=1, model_name="digits_cnn")
    # the first step's time (compilation included) is reported once, in the first epoch row
    assert [("first_step_time" in r) for r in result.history] == [True, False, False]
    assert result.history[0]["first_step_time"] > 0
    assert step.jitted._cache_size() == 1 and evaluate.jitted._cache_size() == 1
    compiled = [r.getMessage()[:40] for r in caplog.records if r.getMessage().startswith("Compiling jit(")]
    assert sum(m.startswith("Compiling jit(train_step)") for m in compiled) == 1, compiled
    assert sum(m.startswith("Compiling jit(eval_step)") for m in compiled) == 1, compiled
