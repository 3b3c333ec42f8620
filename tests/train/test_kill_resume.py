"""A run killed with SIGKILL mid-epoch and resumed with ``resume="auto"`` ends bit-identical
to an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from kill_harness import finish, kill_when_stalled, start

SCRIPT = Path(__file__).with_name("kill_resume_script.py")


def _start(run: Path, *args: str) -> subprocess.Popen:
    return start(SCRIPT, run, *args)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    return finish(proc, timeout)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    # 22 steps/epoch; checkpoints every 5 → the kill at step 33 (epoch 1, batch 11) leaves the
    # mid-epoch checkpoint of step 30 (epoch 1, next batch 8) as the latest — or, when the
    # asynchronous write of step 30 was still running at the kill, an unfinalised
    # "30.orbax-checkpoint-tmp" folder that must be ignored, and step 25 (next batch 3).
    ref = _start(full)
    victim = _start(killed, "--stall-at", "33")
    kill_when_stalled(victim, killed / "stalled", timeout=240)
    assert not (killed / "final.npz").exists()

    unfinished = sorted(p.name for p in (killed / "checkpoints").iterdir() if "tmp" in p.name)
    out = _finish(_start(killed, "--resume", "auto"))
    expect = "resumed_from 25" if unfinished else "resumed_from 30"
    assert expect in out, (unfinished, out[-2000:])
    _finish(ref)

    a, b = np.load(full / "final.npz"), np.load(killed / "final.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k].view(np.uint32), b[k].view(np.uint32), err_msg=k)

    # the metrics read as one run: no step logged twice, same rows as the uninterrupted run
    rows = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["phase"], r["step"]) for r in rows]
    assert keys == [(r["phase"], r["step"]) for r in ref_rows] and len(set(keys)) == len(keys)
    epochs = [r for r in rows if r["phase"] == "epoch"]
    ref_epochs = [r for r in ref_rows if r["phase"] == "epoch"]
    for r, q in zip(epochs, ref_epochs, strict=True):
        np.testing.assert_allclose(r["train_loss"], q["train_loss"], rtol=1e-6)
        assert r["train_acc"] == q["train_acc"]
