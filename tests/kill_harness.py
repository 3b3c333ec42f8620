"""The SIGKILL tests' shared steps: run a script as a subprocess, kill it where it stalls, finish one.

A kill script calls :func:`prepare_script` before importing jaxnets and :func:`stall_fit_at` before
its run; the test drives it with :func:`start`, :func:`kill_when_stalled` and :func:`finish`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare_script() -> None:
    """In a kill script, before jaxnets is imported: the CPU backend and the checkout's compile
    cache (the killed run and its resumption compile the same steps)."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_compilation_cache_dir", str(ROOT / ".jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def stall_fit_at(run_dir: Path, step: int | None) -> None:
    """From now on, ``train.loop.fit`` writes RUN_DIR/stalled after global step ``step`` and sleeps
    there until :func:`kill_when_stalled` kills the process (None: no stall). The methods look
    ``fit`` up in its module at call time, so replacing it there reaches them."""
    if step is None:
        return
    import jaxnets.train.loop as loop

    def stall(state: object, info: dict) -> None:
        if info["global_step"] == step:
            (run_dir / "stalled").write_text(str(info))
            sys.stdout.flush()
            time.sleep(600)  # killed here

    fit = loop.fit

    def fit_with_stall(*args: object, on_step: tuple = (), **kwargs: object) -> object:
        return fit(*args, on_step=[*on_step, stall], **kwargs)

    loop.fit = fit_with_stall


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
