"""SeaM re-engineering killed with SIGKILL inside a joint epoch and resumed with ``resume="auto"``
ends bit-identical to an uninterrupted run: the epochs run in ``train.loop.fit``, whose
checkpoints hold the scores, the head, both Adam states, the best/fallback snapshots and the §2.7
selection numbers (seam_kill_script.py is the run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from kill_harness import finish, kill_when_stalled, start

SCRIPT = Path(__file__).with_name("seam_kill_script.py")
# The uninterrupted run's epochs (measured): best at 0, a tie at 1, the selected best-reset at 2,
# then below the original's accuracy until the early stop after epoch 6. The kill lands in epoch 3,
# so the resumed run needs the restored snapshot of epoch 2 and the restored selection numbers
# (a fresh selector would call epoch 3 "before-threshold" and never stop).
EVENTS = ["best", "skip", "best-reset", "below", "below", "below", "below"]


def _start(run: Path, weights: Path, *args: str) -> subprocess.Popen:
    return start(SCRIPT, run, weights, *args)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    return finish(proc, timeout)


def _tree(path: Path) -> dict[str, np.ndarray]:
    from jaxnets.methods.seam import maskdict
    from jaxnets.transforms.names import flatten

    return {k: np.asarray(v) for k, v in flatten(maskdict.load_tree(path)).items()}


def _assert_bitwise(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jaxnets.api import load
    from jaxnets.methods.seam.runner import pretrain_digits

    return load("digits_cnn").replace(pretrain_digits(0, 4)).export(
        tmp_path_factory.mktemp("weights") / "digits_cnn.pth")


@pytest.mark.slow
def test_seam_sigkill_inside_a_joint_epoch_then_resume_is_bit_identical(weights: Path, tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    # 5 steps an epoch: epoch 3 (joint) is global steps 16..20. The kill after step 19 leaves the
    # checkpoint of step 18 (or the end of epoch 2, step 15, when the asynchronous write of 18 was
    # unfinished).
    ref = _start(full, weights)
    victim = _start(killed, weights, "--stall-at", "19")
    kill_when_stalled(victim, killed / "stalled", timeout=300)
    assert not (killed / "metrics.json").exists()
    steps = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert steps and steps[-1] in (15, 18), steps

    out = _finish(_start(killed, weights, "--resume", "auto"))
    assert f"resumed_from {steps[-1]}" in out, out[-2000:]
    _finish(ref)

    # scores, head (the chosen snapshot), masks and pruned weights: bitwise
    for name in ("scores.msgpack", "head.msgpack", "pruned_params.msgpack"):
        _assert_bitwise(_tree(full / name), _tree(killed / name))
    assert (full / "masks.pth").read_bytes() == (killed / "masks.pth").read_bytes()
    # the selection and every number of the history (times aside)
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (full, killed))
    assert [r["event"] for r in a["history"]] == EVENTS
    assert a["epoch"] == 2 and not a["used_fallback"]
    assert b["resumed_from"] == steps[-1] and a["resumed_from"] is None
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"])
    for key in ("epoch", "used_fallback", "acc", "acc_pre", "retention", "kept", "n_entries", "flops", "layers",
                "epochs_run"):
        assert a[key] == b[key], key

    # metrics.jsonl reads as one run: the same epoch rows (fit's numbers too), no step twice
    def epoch_rows(run: Path) -> list[dict]:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        timing = ("time", "epoch_time", "images_per_sec", "first_step_time")
        return [{k: v for k, v in r.items() if k not in timing} for r in rows if r["phase"] == "epoch"]

    rows = epoch_rows(full)
    assert rows == epoch_rows(killed)
    assert [r["step"] for r in rows] == [5 * (e + 1) for e in range(7)] and rows[-1]["stop"]

    # resuming the finished, early-stopped run trains nothing more and gives the same result
    again = _finish(_start(killed, weights, "--resume", "auto"))
    assert "resumed_from 35" in again, again[-2000:]
    c = json.loads((killed / "metrics.json").read_text())
    assert strip(c["history"]) == strip(a["history"]) and c["epoch"] == a["epoch"] and c["kept"] == a["kept"]
    _assert_bitwise(_tree(full / "scores.msgpack"), _tree(killed / "scores.msgpack"))
