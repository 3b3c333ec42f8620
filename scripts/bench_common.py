"""Shared helpers for the ``scripts/bench_*.py`` benchmarks.

- :func:`pin_threads` — give both frameworks the same cores (call it *before* importing jax or
  torch: XLA sizes its thread pool from the process's CPU affinity when the client starts);
- :func:`machine_info`, :func:`library_versions`, :func:`load_average` — what a recorded table
  needs to be reproducible;
- :func:`measure` — warm-up, then the median of N timed repeats of a step that is synchronised
  (``block_until_ready`` / a host fetch) at the end of every repeat;
- :class:`JsonWorker`, :class:`RemoteSide`, :func:`serve_requests` — a side in another process
  (a Python with torch; jax under other XLA flags), its repeats interleaved with this one's;
- :func:`markdown_table`, :func:`append_section`, :func:`append_table` and
  :func:`append_method_table` — write dated sections to ``docs/benchmarks-history.md``.

This module imports neither jax nor torch, so a script can use it before deciding its threads.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Recorded sections are appended to the history; docs/benchmarks.md holds the current tables.
DEFAULT_DOC = ROOT / "docs" / "benchmarks-history.md"
# The project's checkpoints and data (never copied into the repository).
SHARED = Path(os.environ.get("JAXNETS_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Scripts import the package and the PyTorch reference modules of tests/reference.
for _path in (ROOT / "tests", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

VERSION_PACKAGES = ("jax", "jaxlib", "flax", "optax", "torch", "numpy")


# --------------------------------------------------------------------------- threads


def available_cpus() -> list[int]:
    """CPUs this process may run on (affinity), sorted."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def pin_threads(threads: int | None = None) -> int:
    """Restrict the process to ``threads`` CPUs and tell every thread pool so.

    Must run before jax/torch are imported. The affinity mask bounds XLA's CPU thread pool
    (it asks for the schedulable CPUs) and torch's intra-op pool; the OpenMP/MKL variables
    cover libraries that read them at load time. Returns the thread count in force.
    """
    cpus = available_cpus()
    if threads is None or threads <= 0:
        threads = len(cpus)
    if threads > len(cpus):
        raise SystemExit(f"--threads {threads}: only {len(cpus)} CPU(s) available to this process")
    if threads < len(cpus) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus[:threads])
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return threads


def torch_importable() -> bool:
    """Whether torch is installed in this interpreter (found without importing it)."""
    return importlib.util.find_spec("torch") is not None


def set_torch_threads(threads: int) -> None:
    """torch's intra-op threads; nothing where torch is not installed."""
    if not torch_importable():
        return
    import torch

    torch.set_num_threads(threads)
    with contextlib.suppress(RuntimeError):  # settable once, before any inter-op work
        torch.set_num_interop_threads(1)


# --------------------------------------------------------------------------- machine


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS — from /proc where it exists, ``platform`` otherwise."""
    cpuinfo = _read("/proc/cpuinfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    # SIMD features that decide which kernels XLA / oneDNN can use.
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16",
                        "amx_tile") if f in flags]
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), None)
    os_name = next((line.split("=", 1)[1].strip().strip('"')
                    for line in _read("/etc/os-release").splitlines()
                    if line.startswith("PRETTY_NAME=")), "")
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(available_cpus()),
        "simd": simd,
        "ram_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
        "os": f"{os_name} ({platform.system()} {platform.release()})" if os_name
        else platform.platform(),
    }


def gpu_info() -> str:
    """The accelerator as the two frameworks see it: jax's devices, the CUDA plugin, torch's
    CUDA build and device (whichever are installed), and the driver from ``nvidia-smi``."""
    parts = []
    with contextlib.suppress(Exception):
        import jax

        devices = jax.devices()
        parts.append(f"jax: {len(devices)} × {devices[0].device_kind} ({devices[0].platform})")
    for plugin in ("jax-cuda13-plugin", "jax-cuda12-plugin"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            parts.append(f"{plugin} {importlib.metadata.version(plugin)}")
    if torch_importable():
        import torch

        if torch.cuda.is_available():
            parts.append(f"torch: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, "
                         f"cuDNN {torch.backends.cudnn.version()}")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
        if smi.returncode == 0 and smi.stdout.strip():
            parts.append("nvidia-smi: " + "; ".join(smi.stdout.strip().splitlines()))
    return "; ".join(parts) or "no GPU information"


def library_versions(packages: Iterable[str] = VERSION_PACKAGES) -> dict[str, str]:
    """Python plus each package's installed version (distribution metadata: no import)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def command_line(argv: Sequence[str] | None = None) -> str:
    """The exact invocation, as one could paste it back into a shell."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0].endswith(".py"):
        argv[0] = os.path.relpath(argv[0], ROOT) if os.path.isabs(argv[0]) else argv[0]
        argv = ["python", *argv]
    return shlex.join(argv)


def _fmt_load(load: tuple[float, float, float] | None) -> str:
    return "n/a" if load is None else ", ".join(f"{x:.2f}" for x in load)


def header_lines(threads: int, *, argv: Sequence[str] | None = None,
                 extra: Mapping[str, str] | None = None,
                 load_before: tuple[float, float, float] | None = None,
                 load_after: tuple[float, float, float] | None = None) -> list[str]:
    """Markdown bullet lines: machine, versions, threads, load, command."""
    m = machine_info()
    v = library_versions()
    lines = [
        f"- **Machine:** {m['cpu']}; {m['usable_cpus']} usable of {m['logical_cpus']} logical "
        f"CPUs; {m['ram_gib']} GiB RAM; {m['os']}; SIMD: {', '.join(m['simd']) or 'n/a'}",
        "- **Versions:** " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- **Threads:** {threads} for both frameworks (CPU affinity pinned to {threads} CPU(s); "
        f"`torch.set_num_threads({threads})`; XLA's pool sized by the affinity)",
        f"- **Load average (1/5/15 min):** before {_fmt_load(load_before)}; "
        f"after {_fmt_load(load_after)}",
    ]
    for key, value in (extra or {}).items():
        lines.append(f"- **{key}:** {value}")
    lines.append(f"- **Command:** `{command_line(argv)}`")
    return lines


# --------------------------------------------------------------------------- contention


def _system_busy_ticks() -> int | None:
    """Busy CPU ticks of the whole machine since boot (``/proc/stat``), None off Linux."""
    first = _read("/proc/stat").split("\n", 1)[0].split()
    if not first or first[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return user + nice + system + irq + softirq + steal


def _own_ticks() -> int | None:
    fields = _read("/proc/self/stat").rsplit(")", 1)[-1].split()
    return int(fields[11]) + int(fields[12]) if len(fields) > 12 else None  # utime + stime


class OtherLoad:
    """CPU used by *other* processes while a block runs, in cores (0.0 = the machine was ours).

    The load average lags by a minute; this is measured over exactly the timed repeats, so a
    row disturbed by a neighbour's test run shows it. ``None`` where /proc is missing.
    """

    def __enter__(self) -> OtherLoad:
        self.cores: float | None = None
        self._t = time.perf_counter()
        self._sys, self._own = _system_busy_ticks(), _own_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        sys_now, own_now = _system_busy_ticks(), _own_ticks()
        elapsed = time.perf_counter() - self._t
        if None in (self._sys, self._own, sys_now, own_now) or elapsed <= 0:
            return
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        other = (sys_now - self._sys) - (own_now - self._own)
        self.cores = max(0.0, other / hz / elapsed)


# --------------------------------------------------------------------------- timing


@dataclass
class Timing:
    """Seconds per repeat (each repeat runs ``steps`` steps of ``items`` items)."""

    seconds: list[float]
    steps: int
    items: int
    warmup_s: float = 0.0
    other_load: float | None = None  # cores used by other processes during the repeats
    extra: dict = field(default_factory=dict)

    def rates(self) -> list[float]:
        return [self.steps * self.items / s for s in self.seconds]

    @property
    def median_rate(self) -> float:
        """Items per second of the median repeat."""
        return statistics.median(self.rates())

    @property
    def median_step_s(self) -> float:
        return statistics.median(self.seconds) / self.steps

    @property
    def spread(self) -> float:
        """Half the min–max range of the rates, relative to the median (0.03 = ±3 %)."""
        r = self.rates()
        return (max(r) - min(r)) / 2 / self.median_rate if len(r) > 1 else 0.0


def measure(step: Callable[[], Any], sync: Callable[[Any], Any], *, items: int, repeats: int = 5,
            warmup: int = 2, steps: int | None = None, min_time: float = 1.0) -> Timing:
    """Time ``step`` (one batch); the median of ``repeats`` repeats after ``warmup`` steps.

    ``sync(result)`` must block until the step's work is done (``jax.block_until_ready``;
    torch on CPU is synchronous, so identity). Each repeat runs ``steps`` steps back to back
    and syncs once at its end, so asynchronous dispatch overlaps as in a real loop. With
    ``steps=None`` the count is calibrated from the last warm-up step so that one repeat takes
    at least ``min_time`` seconds.
    """
    t0 = time.perf_counter()
    last = 0.0
    for _ in range(warmup):
        t = time.perf_counter()
        sync(step())
        last = time.perf_counter() - t
    warmup_s = time.perf_counter() - t0
    if steps is None:
        if last == 0.0:  # no warm-up: time one step (it counts as warm-up)
            t = time.perf_counter()
            sync(step())
            last = time.perf_counter() - t
        steps = max(1, math.ceil(min_time / max(last, 1e-9)))
    seconds = []
    with OtherLoad() as other:
        for _ in range(max(1, repeats)):
            t = time.perf_counter()
            out = None
            for _ in range(steps):
                out = step()
            sync(out)
            seconds.append(time.perf_counter() - t)
    return Timing(seconds=seconds, steps=steps, items=items, warmup_s=warmup_s,
                  other_load=other.cores)


def measure_when_quiet(step: Callable[[], Any], sync: Callable[[Any], Any], *,
                       max_other: float = 0.3, retries: int = 2, wait: float = 20.0,
                       **kwargs: Any) -> Timing:
    """:func:`measure`, repeated (after ``wait`` s) while other processes used more than
    ``max_other`` cores during the repeats; returns the least disturbed attempt. On a shared
    machine a neighbour's burst skews one side only, which a ratio cannot hide."""
    best: Timing | None = None
    for attempt in range(retries + 1):
        if attempt:
            print(f"  (other processes used {best.other_load:.2f} cores; measuring again in "
                  f"{wait:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(wait)
        t = measure(step, sync, **kwargs)
        if best is None or (t.other_load or 0.0) < (best.other_load or 0.0):
            best = t
        if best.other_load is None or best.other_load <= max_other:
            break
    assert best is not None
    return best


class Side:
    """One contender of an interleaved measurement: ``warmup(n)`` runs n untimed steps and
    returns the last one's seconds; ``repeat(n)`` runs n steps back to back, synchronised once
    at the end, and returns ``(seconds, cores other processes used meanwhile)``."""

    name: str

    def warmup(self, steps: int) -> float:
        raise NotImplementedError

    def repeat(self, steps: int) -> tuple[float, float | None]:
        raise NotImplementedError


@dataclass
class LocalSide(Side):
    """A step in this process; ``sync(result)`` blocks until its work is done."""

    name: str
    step: Callable[[], Any]
    sync: Callable[[Any], Any]

    def warmup(self, steps: int) -> float:
        last = 0.0
        for _ in range(steps):
            t = time.perf_counter()
            self.sync(self.step())
            last = time.perf_counter() - t
        return last

    def repeat(self, steps: int) -> tuple[float, float | None]:
        with OtherLoad() as other:
            t = time.perf_counter()
            out = None
            for _ in range(steps):
                out = self.step()
            self.sync(out)
            seconds = time.perf_counter() - t
        return seconds, other.cores


def measure_interleaved(sides: Sequence[Side], *, items: int, repeats: int = 5, warmup: int = 2,
                        steps: int | None = None, min_time: float = 1.0,
                        max_other: float = 0.3, retries: int = 2,
                        wait: float = 20.0) -> dict[str, Timing]:
    """Time several sides A/B-style: warm every side up, calibrate each one's steps per repeat
    (≥ ``min_time`` s unless ``steps`` is given), then run the repeats round-robin (A B C A B C
    …), so a burst of load from elsewhere lands on all sides alike instead of on one. Repeated
    (after ``wait`` s) while a side saw more than ``max_other`` cores of other load; the least
    disturbed attempt is returned, one :class:`Timing` per side name."""
    per_side: dict[str, int] = {}
    warm_s: dict[str, float] = {}
    for side in sides:
        t = time.perf_counter()
        last = side.warmup(max(warmup, 1 if steps is None else 0))
        warm_s[side.name] = time.perf_counter() - t
        per_side[side.name] = steps or max(1, math.ceil(min_time / max(last, 1e-9)))
    best: dict[str, Timing] | None = None

    def worst(result: Mapping[str, Timing]) -> float:
        return max((t.other_load or 0.0) for t in result.values())

    for attempt in range(retries + 1):
        if attempt:
            print(f"  (other processes used up to {worst(best):.2f} cores; measuring again in "
                  f"{wait:.0f} s)", file=sys.stderr, flush=True)
            time.sleep(wait)
        seconds: dict[str, list[float]] = {side.name: [] for side in sides}
        others: dict[str, list[float]] = {side.name: [] for side in sides}
        for _ in range(max(1, repeats)):
            for side in sides:
                s, other = side.repeat(per_side[side.name])
                seconds[side.name].append(s)
                if other is not None:
                    others[side.name].append(other)
        result = {name: Timing(seconds=seconds[name], steps=per_side[name], items=items,
                               warmup_s=warm_s[name],
                               other_load=statistics.mean(others[name]) if others[name] else None)
                  for name in seconds}
        if best is None or worst(result) < worst(best):
            best = result
        if worst(best) <= max_other:
            break
    assert best is not None
    return best


def gemm_peak_gflops(precision: str = "fp32", n: int = 2048, reps: int = 10) -> dict[str, float]:
    """The best GEMM rate each framework reaches here (an n×n matmul, median of 3 runs of
    ``reps``): the practical peak a model's achieved FLOP/s is compared with. Call after
    :func:`pin_threads` / :func:`set_torch_threads`. jax only where torch is not installed."""
    import jax
    import jax.numpy as jnp

    flops = 2.0 * n ** 3 * reps
    a_j = jnp.ones((n, n), jnp.bfloat16 if precision == "bf16" else jnp.float32)
    matmul = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))

    def jax_run() -> None:
        for _ in range(reps):
            out = matmul(a_j, a_j)
        out.block_until_ready()

    runs: list[tuple[str, Callable[[], None]]] = [("jax", jax_run)]
    if torch_importable():
        import torch

        a_t = torch.ones(n, n, dtype=torch.bfloat16 if precision == "bf16" else torch.float32)

        def torch_run() -> None:
            for _ in range(reps):
                a_t @ a_t

        runs.append(("torch", torch_run))
    rates = {}
    for side, run in runs:
        run()
        times = [timed(run)[1] for _ in range(3)]
        rates[side] = flops / statistics.median(times) / 1e9
    return rates


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` — for one-off costs such as compilation."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# --------------------------------------------------------------------------- worker processes

ANSWER = "BENCH "  # prefix of a worker's answer lines (anything else is a library's chatter)


class JsonWorker:
    """A benchmark side in another process (another Python, or other XLA flags): one JSON
    request per line on its stdin, one ``BENCH {json}`` answer per line on its stdout (see
    :func:`serve_requests`). Its repeats interleave with this process' ones through
    :class:`RemoteSide`, so a measurement stays A/B across processes."""

    label = "worker"

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> None:
        self.process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=dict(env or os.environ), cwd=ROOT)
        self.versions: dict[str, str] = self.ask("versions")["versions"]

    def ask(self, op: str, **fields: Any) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        for line in self.process.stdout:
            if line.startswith(ANSWER):
                answer = json.loads(line[len(ANSWER):])
                if "error" in answer:
                    raise RuntimeError(f"{self.label}: {answer['error']}")
                return answer
        raise RuntimeError(f"{self.label} exited (code {self.process.wait()}) during {op!r}")

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(RuntimeError):  # it may have died already
                self.ask("quit")
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RemoteSide(Side):
    """A side that lives in a :class:`JsonWorker`; ``fields`` name it there (mode, variant)."""

    def __init__(self, worker: JsonWorker, name: str, **fields: Any) -> None:
        self.worker, self.name, self.fields = worker, name, fields

    def warmup(self, steps: int) -> float:
        return self.worker.ask("warmup", steps=steps, **self.fields)["last"]

    def repeat(self, steps: int) -> tuple[float, float | None]:
        answer = self.worker.ask("repeat", steps=steps, **self.fields)
        return answer["seconds"], answer["other"]


def serve_requests(handle: Callable[[str, dict], dict]) -> int:
    """A worker's loop: ``quit`` and ``versions`` here, every other request to
    ``handle(op, fields) -> answer``; an exception goes back to the parent as its error."""
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        try:
            if op == "quit":
                answer: dict = {"ok": True}
            elif op == "versions":
                answer = {"versions": library_versions()}
            else:
                answer = handle(op, request)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(ANSWER + json.dumps(answer) + "\n")
        sys.stdout.flush()
        if op == "quit":
            break
    return 0


# --------------------------------------------------------------------------- markdown


def fmt_rate(rate: float | None, spread: float | None = None) -> str:
    if rate is None or not math.isfinite(rate):
        return "—"
    text = f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}"
    if spread is not None and spread > 0:
        text += f" ±{100 * spread:.0f}%"
    return text


def fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None or not math.isfinite(ratio) else f"{ratio:.2f}×"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]],
                   align: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured table; ``align`` per column: "l", "r" or "c" (default "l")."""
    rows = [[str(c) for c in row] for row in rows]
    align = list(align or ["l"] * len(headers))
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def section_title(title: str, when: _dt.datetime | None = None) -> str:
    when = when or _dt.datetime.now().astimezone()
    return f"## {when:%Y-%m-%d %H:%M %Z} — {title}".replace("  ", " ")


def append_section(title: str, blocks: Sequence[str], path: Path | str = DEFAULT_DOC) -> Path:
    """Append ``## <date> — title`` and the given markdown blocks to ``path`` (created with a
    one-line heading if missing). Earlier sections are kept: the latest is the last one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or not path.read_text().strip():
        path.write_text("# Benchmarks\n")
    text = path.read_text().rstrip("\n")
    body = "\n\n".join(b.strip("\n") for b in blocks if b and b.strip())
    path.write_text(f"{text}\n\n{section_title(title)}\n\n{body}\n")
    return path


def append_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
                 align: Sequence[str] | None = None, header: Sequence[str] = (),
                 notes: Sequence[str] = (), path: Path | str = DEFAULT_DOC) -> Path:
    """Any named table: ``header`` lines (e.g. :func:`header_lines`) above, ``notes`` below."""
    blocks = ["\n".join(header), markdown_table(headers, rows, align), "\n".join(notes)]
    return append_section(title, blocks, path)


# Method-level tables (bench_decompose.py, bench_wfn.py, bench_probe.py, bench_seam.py, …):
# one row per method stage, jaxnets vs the original implementation on the same machine.
METHOD_HEADERS = ("method", "stage", "workload", "jaxnets s", "original s", "speed-up", "goal",
                  "notes")
METHOD_ALIGN = ("l", "l", "l", "r", "r", "r", "r", "l")


@dataclass
class MethodRow:
    method: str
    stage: str
    workload: str
    jaxnets_s: float | None
    original_s: float | None
    goal: float | None = None  # required speed-up (issue 9), e.g. 50.0 for WFN clustering
    notes: str = ""

    def cells(self) -> list[str]:
        speedup = (self.original_s / self.jaxnets_s
                   if self.jaxnets_s and self.original_s else None)
        sec = lambda s: "—" if s is None else f"{s:,.3g}"
        return [self.method, self.stage, self.workload, sec(self.jaxnets_s), sec(self.original_s),
                fmt_ratio(speedup), "—" if self.goal is None else f"≥ {self.goal:g}×",
                self.notes]


def append_method_table(title: str, rows: Sequence[MethodRow], *, header: Sequence[str] = (),
                        notes: Sequence[str] = (), path: Path | str = DEFAULT_DOC) -> Path:
    """Append a method-level table (see :data:`METHOD_HEADERS`)."""
    return append_table(title, METHOD_HEADERS, [r.cells() for r in rows], align=METHOD_ALIGN,
                        header=header, notes=notes, path=path)
