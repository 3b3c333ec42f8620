"""The SIGKILL tests' shared steps: run a script as a subprocess, kill it where it stalls, finish one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(script: Path, *args: str) -> subprocess.Popen:
    """``python SCRIPT ARGS`` on the CPU backend with the checkout on the path (output captured)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen([sys.executable, str(script), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_when_stalled(victim: subprocess.Popen, marker: Path, timeout: float) -> None:
    """Wait for the script to write ``marker`` (it then sleeps), and SIGKILL it there."""
    deadline = time.time() + timeout
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[0][-3000:]
        assert time.time() < deadline, "the run never reached the stall point"
        time.sleep(0.2)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL


def finish(proc: subprocess.Popen, timeout: float) -> str:
    """The process's output once it has exited with code 0."""
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    return out
