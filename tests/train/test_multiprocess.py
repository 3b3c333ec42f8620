"""Multi-process data parallelism on one machine: ``jaxnets train`` launched twice with
``--coordinator 127.0.0.1:PORT --num-processes 2 --process-id i`` (one CPU device each, gloo
collectives) trains exactly like one process with two devices, only process 0 writes the run
folder, and a checkpoint written by the pair resumes in a single process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240
# digits_cnn has BatchNorm: the pair must also agree on the synchronised batch statistics.
TRAIN = ["train", "digits_cnn", "--data", "digits", "--limit", "256", "--batch-size", "32",
         "--lr", "0.05", "--shuffle", "--snapshot-every", "1", "--devices", "2", "--seed", "3"]

pytestmark = [pytest.mark.slow, pytest.mark.multidevice]


def _free_port() -> int:
    # Bound and released at once; the coordinator binds it again a moment later (localhost only).
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(cpu_devices: int, cache: Path | None) -> dict[str, str]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "JAX_NUM_CPU_DEVICES": str(cpu_devices)}
    if cache is not None:
        env["JAXNETS_CACHE_DIR"] = str(cache)
    # only the device count matters here; a forced host device count would override it
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split()
                                if "xla_force_host_platform_device_count" not in f)
    return env


def _start(args: list[str], cpu_devices: int, cache: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "jaxnets.cli.app", *args], cwd=ROOT,
                            env=_env(cpu_devices, cache), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(procs: list[subprocess.Popen]) -> None:
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT_S)[0])
    finally:
        for proc in procs:  # a process whose peer died would wait for it: never leave one
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]


def _variables(snapshot: Path) -> dict:
    with ocp.StandardCheckpointer() as ckpt:
        return ckpt.restore(snapshot / "variables")


def _assert_same_variables(a: Path, b: Path) -> None:
    left, right = _variables(a), _variables(b)
    assert jax.tree_util.tree_structure(left) == jax.tree_util.tree_structure(right)
    # Each device runs the same per-device program in both set-ups and a 2-way all-reduce is
    # a single addition (commutative, so independent of gloo's order): the results agree to the
    # last bit in practice. The small tolerance only allows for XLA partitioning the one-process
    # program differently someday (a different grouping of the same sums, ~1e-7 relative).
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(left),
                            jax.tree_util.tree_leaves(right), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7,
                                   err_msg=f"{a.name}{jax.tree_util.keystr(path)}")


def _epoch_rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    timing = {"time", "images_per_sec", "epoch_time", "first_step_time"}
    return [{k: v for k, v in r.items() if k not in timing} for r in rows if r["phase"] == "epoch"]


def test_two_processes_train_like_one_process_with_two_devices(tmp_path: Path) -> None:
    pair, single, resumed = tmp_path / "pair", tmp_path / "single", tmp_path / "resumed"
    port = _free_port()
    coordinator = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
    pair_cache = tmp_path / "pair_cache"
    procs = [_start([*TRAIN, "--epochs", "2", "--out", str(pair), *coordinator,
                     "--process-id", str(i)], cpu_devices=1, cache=pair_cache) for i in range(2)]
    # the single-process reference runs one epoch further, for the resume check below
    reference = _start([*TRAIN, "--epochs", "3", "--out", str(single)], cpu_devices=2)
    _finish([*procs, reference])

    # Nothing went to the persistent compilation cache: under jaxlib 0.12 a pair whose process 0
    # loaded its train step from there hung in the first all-reduce (the second run of a command).
    assert not [p.name for p in pair_cache.rglob("*train_step*")]

    # process 0 wrote the run folder once: one config, one row per epoch, one results file
    rows = _epoch_rows(pair)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows == _epoch_rows(single)[:2]  # same losses, accuracies and evaluations
    assert json.loads((pair / "config.json").read_text())["options"]["process_id"] == 0
    report = json.loads((pair / "results.json").read_text())
    assert report["epochs_completed"] == 2
    assert not list(pair.glob("*.tmp"))
    snapshots = sorted(p.name for p in (pair / "snapshots").iterdir())
    assert snapshots == ["digits_cnn_0", "digits_cnn_1", "digits_cnn_final_2", "digits_cnn_init_0"]
    # the pair's final parameters are those of one process with two devices after 2 epochs
    _assert_same_variables(pair / "snapshots" / "digits_cnn_final_2",
                           single / "snapshots" / "digits_cnn_1")

    # the pair's last checkpoint resumes in one process (2 devices) and continues exactly
    _finish([_start([*TRAIN, "--epochs", "3", "--out", str(resumed), "--resume", str(pair)],
                    cpu_devices=2)])
    assert [r["epoch"] for r in _epoch_rows(resumed)] == [2]
    assert _epoch_rows(resumed) == _epoch_rows(single)[2:]
    _assert_same_variables(resumed / "snapshots" / "digits_cnn_final_3",
                           single / "snapshots" / "digits_cnn_final_3")
