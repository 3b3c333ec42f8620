"""Checkpoints: round trip, keep-N, metadata, unfinalised writes ignored, clear errors for a
folder of another model, an empty folder, a corrupt checkpoint; non-finite loss keeps the last
good checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from trainkit import NORM, bits, digits_loader, host, make_state, random_batch

from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.train import Checkpointer, checkpoint_dir, find_resume, fit, make_train_step
from jaxnets.train.loop import NonFiniteLossError


def _trained_state(steps: int = 2):
    model, state = make_state(optax.adam(1e-3), extras={"scores": np.ones(3, np.float32)})
    step = make_train_step(model, normalize=NORM)
    for i in range(steps):
        state, _ = step(state, *random_batch(16, seed=i))
    return model, state


def _save(run: Path, state, step: int | None = None, model: str = "digits_cnn", **kw) -> Path:
    with Checkpointer(checkpoint_dir(run), max_to_keep=kw.pop("max_to_keep", 3)) as ck:
        ck.save(state, epoch=kw.pop("epoch", 1), step_in_epoch=kw.pop("step_in_epoch", 5),
                model=model, config={"lr": 1e-3}, step=step)
    return checkpoint_dir(run)


def test_round_trip_bitwise_with_metadata(tmp_path):
    _, state = _trained_state()
    ck_dir = _save(tmp_path, state)
    _, template = make_state(optax.adam(1e-3), seed=9, extras={"scores": np.zeros(3, np.float32)})
    with Checkpointer(ck_dir, read_only=True) as ck:
        restored, meta = ck.restore(template, model="digits_cnn")
    for a, b in zip(jax.tree_util.tree_leaves(host(state)),
                    jax.tree_util.tree_leaves(host(restored)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(restored.step) == 2 and restored.tx is template.tx
    assert meta["model"] == "digits_cnn" and (meta["epoch"], meta["step_in_epoch"]) == (1, 5)
    assert meta["global_step"] == 2 and meta["config"] == {"lr": 1e-3}
    assert meta["rng_key_data"] == np.asarray(state.rng).tolist()
    assert {"jax", "flax", "optax", "numpy", "python"} <= set(meta["versions"])


def test_keep_n_and_absolute_paths(tmp_path, monkeypatch):
    _, state = _trained_state(1)
    monkeypatch.chdir(tmp_path)
    with Checkpointer("rel/checkpoints", max_to_keep=2) as ck:
        assert ck.directory.is_absolute()
        for s in (1, 2, 3, 4):
            ck.save(state, epoch=0, step_in_epoch=s, step=s)
        ck.wait_until_finished()
        assert ck.all_steps() == [3, 4]


def test_unfinalised_checkpoint_is_never_picked(tmp_path):
    _, state = _trained_state(1)
    ck_dir = _save(tmp_path, state, step=3)
    # A later save interrupted mid-write: complete-looking files, but never renamed into place.
    shutil.copytree(ck_dir / "3", ck_dir / "9.orbax-checkpoint-tmp-1712345678")
    assert find_resume("auto", tmp_path) == ck_dir
    with Checkpointer(ck_dir, read_only=True) as ck:
        assert ck.all_steps() == [3]
        _, meta = ck.restore(state)
    assert meta["global_step"] == 3
    # only an unfinished write: auto starts fresh, an explicit folder is an error
    only_tmp = tmp_path / "other" / "checkpoints"
    only_tmp.mkdir(parents=True)
    shutil.copytree(ck_dir / "3", only_tmp / "4.orbax-checkpoint-tmp-1712345679")
    assert find_resume("auto", tmp_path / "other") is None
    with pytest.raises(CheckpointError, match="holds no finished checkpoint"):
        find_resume(tmp_path / "other", None)


def test_empty_or_missing_resume_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="is empty"):
        find_resume(tmp_path / "empty", None)
    with pytest.raises(CheckpointError, match="not found"):
        find_resume(tmp_path / "nope", None)
    assert find_resume("auto", tmp_path / "fresh") is None
    assert find_resume(None, tmp_path) is None


def test_resume_folder_of_another_model_overwrites_nothing(tmp_path):
    _, state = _trained_state(1)
    _save(tmp_path / "lenet_run", state, model="lenet")
    model, fresh = make_state(optax.adam(1e-3), extras={"scores": np.ones(3, np.float32)})
    run = tmp_path / "new_run"
    with pytest.raises(CheckpointError, match="checkpoint of 'lenet', not 'digits_cnn'"):
        fit(fresh, make_train_step(model, normalize=NORM), digits_loader(), epochs=1,
            run_dir=run, resume=tmp_path / "lenet_run", model_name="digits_cnn")
    assert not run.exists()  # nothing written


# orbax's background loop may complain after a failed restore; the error itself is what matters
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_corrupt_checkpoints(tmp_path):
    _, state = _trained_state(1)
    # 1. damaged metadata
    ck_dir = _save(tmp_path / "a", state, step=1)
    for f in (ck_dir / "1" / "meta").iterdir():
        if f.is_file():
            f.write_text("{not json")
    with Checkpointer(ck_dir, read_only=True) as ck, \
            pytest.raises(CheckpointError, match="corrupt checkpoint"):
        ck.restore(state)
    # 2. damaged array data
    ck_dir = _save(tmp_path / "b", state, step=1)
    data = [p for p in (ck_dir / "1" / "state").rglob("*") if p.is_file()
            and p.parent.name == "d"]
    assert data
    for p in data:
        p.write_bytes(b"\x00garbage" * 7)
    with Checkpointer(ck_dir, read_only=True) as ck, \
            pytest.raises(CheckpointError, match="cannot restore"):
        ck.restore(state)
    # 3. a checkpoint of another optimiser configuration (tree does not fit)
    ck_dir = _save(tmp_path / "c", state, step=1)
    _, sgd_state = make_state(optax.sgd(0.1, momentum=0.9),
                              extras={"scores": np.ones(3, np.float32)})
    with Checkpointer(ck_dir, read_only=True) as ck, pytest.raises(CheckpointError):
        ck.restore(sgd_state)


class _PoisonLoader:
    """Digits batches; one batch of epoch 1 is all padding, so a 0/0 loss gives NaN."""

    def __init__(self):
        self.inner = digits_loader(64)
        self.steps_per_epoch = self.inner.steps_per_epoch

    def epoch(self, epoch, start_step=0):
        for b in self.inner.epoch(epoch, start_step):
            if epoch == 1 and b.step == 4:
                b.mask = np.zeros_like(b.mask)
            yield b


def _unsafe_mean(logits, labels, mask, params, args):
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return (losses * mask).sum() / mask.sum()  # NaN on an all-padding batch


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, state = make_state(optax.adam(1e-3))
    step = make_train_step(model, _unsafe_mean, normalize=NORM)
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss .* last good "
                                                 r"checkpoint \(step 25\)") as err:
        fit(state, step, _PoisonLoader(), epochs=3, run_dir=tmp_path, checkpoint_every=5,
            log_every=0, model_name="digits_cnn")
    assert isinstance(err.value, JaxnetsError)
    with Checkpointer(checkpoint_dir(tmp_path), read_only=True) as ck:
        assert ck.latest_step() == 25  # 22 steps/epoch; NaN at global step 27
        _, template = make_state(optax.adam(1e-3))
        restored, meta = ck.restore(template)
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(host(restored.params)))
    assert (meta["epoch"], meta["step_in_epoch"]) == (1, 3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["phase"] == "epoch" and rows[0]["epoch"] == 0


def test_resume_continues_exactly_in_process(tmp_path):
    """fit for 2 epochs == fit 1 epoch + resume from a mid-epoch checkpoint for the rest."""
    model, state = make_state(optax.adam(1e-3), seed=1)
    step = make_train_step(model, normalize=NORM)
    full = fit(state, step, digits_loader(64, seed=2), epochs=2, log_every=0)
    model, state = make_state(optax.adam(1e-3), seed=1)
    run = tmp_path / "run"
    stop = lambda s, info: info["global_step"] == 30 and (_ for _ in ()).throw(KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        fit(state, step, digits_loader(64, seed=2), epochs=2, run_dir=run, checkpoint_every=4,
            log_every=0, on_step=[stop], model_name="digits_cnn")
    model, state = make_state(optax.adam(1e-3), seed=1)
    resumed = fit(state, step, digits_loader(64, seed=2), epochs=2, run_dir=run,
                  resume="auto", checkpoint_every=4, log_every=0, model_name="digits_cnn")
    assert resumed.resumed_from == 28
    for a, b in zip(jax.tree_util.tree_leaves(host(full.state.params)),
                    jax.tree_util.tree_leaves(host(resumed.state.params)), strict=True):
        np.testing.assert_array_equal(bits(a), bits(b))
    assert [r["epoch"] for r in resumed.history] == [0, 1]
    np.testing.assert_allclose(resumed.history[1]["train_loss"], full.history[1]["train_loss"],
                               rtol=1e-6)
