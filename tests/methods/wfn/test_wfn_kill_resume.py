"""WFN killed with SIGKILL inside a round and resumed with ``resume="auto"`` ends bit-identical
to an uninterrupted run: the round's fine-tuning runs in ``train.loop.fit``, which checkpoints it
(``checkpoints/round_XX``) and continues from the last checkpoint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from kill_harness import finish, kill_when_stalled, start

SCRIPT = Path(__file__).with_name("wfn_kill_script.py")


def _start(run: Path, *args: str) -> subprocess.Popen:
    return start(SCRIPT, run, *args)


def _finish(proc: subprocess.Popen, timeout: float = 400) -> str:
    return finish(proc, timeout)


def _params(run: Path) -> dict:
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

    return {k: np.asarray(v) for k, v in extract_state_dict(load_torch_file(run / "final_model.pth")).items()}


@pytest.mark.slow
def test_wfn_sigkill_inside_a_round_then_resume_is_bit_identical(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    # Round 0 fixes 50 % without training (first_epoch 0); round 1 fine-tunes global steps 1..44.
    # The kill after step 33 leaves the checkpoint of step 30 (or 25, when the asynchronous
    # write of 30 was unfinished) in checkpoints/round_01.
    ref = _start(full)
    victim = _start(killed, "--stall-at", "33")
    kill_when_stalled(victim, killed / "stalled", timeout=400)
    assert (killed / "rounds" / "round_00").is_dir() and not (killed / "rounds" / "round_01").exists()
    assert (killed / "checkpoints" / "round_01").is_dir()

    out = _finish(_start(killed, "--resume", "auto"))
    assert "resumed_from_round 0" in out, out[-2000:]
    ref_out = _finish(ref)
    assert not (killed / "checkpoints" / "round_01").exists()  # superseded by rounds/round_01

    a, b = _params(full), _params(killed)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k  # bitwise
    assert out.split("final_accuracy")[1].split()[0] == ref_out.split("final_accuracy")[1].split()[0]

    # the metrics read as one run: no step logged twice, the same rows as the uninterrupted run
    rows = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    ref_rows = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    keys = [(r["phase"], r.get("round"), r["step"]) for r in rows]
    assert keys == [(r["phase"], r.get("round"), r["step"]) for r in ref_rows]
    assert len(set(keys)) == len(keys)
    res_a = json.loads((full / "results.json").read_text())
    res_b = json.loads((killed / "results.json").read_text())
    assert res_a["unique_params"] == res_b["unique_params"]
    assert [r["fixed"] for r in res_a["rounds"]] == [r["fixed"] for r in res_b["rounds"]]
