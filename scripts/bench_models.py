#!/usr/bin/env python
"""Eval and train-step throughput of jaxnets models vs their PyTorch reference modules.

Both sides run on the same machine, with the same weights (the PyTorch module's random init
converted through ``jaxnets.converters.convert``), the same uint8 batch, the same batch size and the
same thread count (CPU affinity pinned to T CPUs before either library is imported;
``torch.set_num_threads(T)``; XLA sizes its pool from the affinity).

- eval: jaxnets' jitted eval step (``jaxnets.train.steps.make_eval_step``: uint8 → normalise
  → forward → logits, top-1/top-5 flags, all inside one jit) vs PyTorch ``model.eval()`` under
  ``torch.inference_mode()`` with the same normalisation in the timed region.
- train: ``jaxnets.train.steps.make_train_step`` on a ``jaxnets.train.state.TrainState``
  (state donated, BN in train mode, cross-entropy) vs PyTorch ``model.train()``,
  ``zero_grad / backward / step``. Both: SGD momentum 0.9, lr 0.1, coupled weight decay 5e-4.
- PyTorch runs in its strongest forms (``--torch-variants``, see ``bench_torch.py``): eager
  NCHW, eager channels_last and ``torch.compile``; the ratio is taken against the fastest.
  Where torch is not installed (the Python 3.12 venv) the PyTorch side runs in a worker process
  under ``--torch-python`` (default ``.venv/bin/python``) on the same weights and batch.
- timing: warm-up steps, then the median of ``--repeats`` repeats, the sides' repeats
  interleaved (A/B); a repeat runs enough steps back to back to last ``--min-time`` seconds and
  synchronises once at its end (``jax.block_until_ready``). jaxnets' compile time (trace +
  lower + XLA compile, no persistent cache) is reported separately, outside every repeat.
- ``--onednn-ab`` (jaxlib ≥ 0.12 on x86): XLA reads its flags once per process, so jaxnets on
  plain XLA (the oneDNN convolution flags off) runs in a worker process of this script, on the
  same weights and batch, timed as one more interleaved side.
- ``--device gpu``: jax's GPU backend vs PyTorch on CUDA (``scripts/bench_gpu.sh``).

Usage::

    python scripts/bench_models.py                      # resnet20 + resnet18
    python scripts/bench_models.py --all --record       # + vgg16_bn_cifar, densenet121 → docs
    python scripts/bench_models.py --models resnet20 --threads 1 --repeats 7
    python scripts/bench_models.py --models resnet20 --quick   # smoke run (1 step, 1 repeat)
    python scripts/bench_models.py --all --onednn-ab    # + jaxnets on plain XLA (jaxlib >= 0.12)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bench_common as bc  # also puts the package and tests/reference on sys.path
import bench_torch
from bench_torch import torch_reference  # noqa: F401  (re-exported: bench_ops, bench_epoch)

if TYPE_CHECKING:
    from jaxnets.models.registry import ModelSpec

DEFAULT_MODELS = ("resnet20", "resnet18")
ALL_EXTRA = ("vgg16_bn_cifar", "densenet121")
# CPU-sized defaults: the CIFAR batch of the papers; 224-px models smaller (2-core machine).
DEFAULT_BATCH = {32: 128, 224: 32}
MODEL_BATCH = {"densenet121": 16}
LR, MOMENTUM, WEIGHT_DECAY = bench_torch.LR, bench_torch.MOMENTUM, bench_torch.WEIGHT_DECAY
# The Python of the main test leg (torch installed): the PyTorch worker where torch is missing.
DEFAULT_TORCH_PYTHON = bc.ROOT / ".venv" / "bin" / "python"
PARITY_LIMIT = 1e-4  # max |Δ logits| in fp32 at the highest matmul precision
PLAIN = "jaxnets:plain"  # the side name of jaxnets on plain XLA (--onednn-ab)


# --------------------------------------------------------------------------- one model


@dataclass
class Row:
    model: str
    size: int
    batch: int
    mode: str  # "eval" | "train"
    jax_rate: float
    jax_spread: float
    torch_rates: dict[str, float]  # PyTorch variant (bench_torch.VARIANTS) → img/s
    torch_spreads: dict[str, float]
    compile_s: float
    jax_steps: int
    torch_steps: dict[str, int]
    jax_other: float | None = None  # cores other processes used while each side was timed
    torch_other: float | None = None  # the most any PyTorch variant saw
    flops_per_item: float | None = None  # XLA's cost analysis of the jaxnets step, per image
    # --onednn-ab: the same step in a worker process on plain XLA (the oneDNN flags off)
    jax_plain_rate: float | None = None
    jax_plain_spread: float | None = None
    jax_plain_other: float | None = None

    @property
    def onednn_gain(self) -> float | None:
        """jaxnets with the oneDNN flags over jaxnets on plain XLA (> 1: the flags help)."""
        return self.jax_rate / self.jax_plain_rate if self.jax_plain_rate else None

    @property
    def torch_best(self) -> str | None:
        """The fastest PyTorch variant: the one jaxnets is compared with."""
        return max(self.torch_rates, key=self.torch_rates.__getitem__) if self.torch_rates else None

    @property
    def torch_rate(self) -> float | None:
        return self.torch_rates[self.torch_best] if self.torch_best else None

    @property
    def ratio(self) -> float | None:
        return self.jax_rate / self.torch_rate if self.torch_rate else None

    def peak_fraction(self, rate: float | None, peak: float | None) -> float | None:
        """Achieved FLOP/s (the model's FLOPs × images/s; the same FLOPs for both sides) as a
        fraction of the machine's measured GEMM peak."""
        if not (rate and peak and self.flops_per_item):
            return None
        return self.flops_per_item * rate / 1e9 / peak


def step_flops(lowered: Any, items: int) -> float | None:
    """FLOPs per item of a step, from XLA's cost analysis of the HLO before optimisation (None
    where unavailable): the compiled module's analysis does not count convolutions lowered to
    custom calls (oneDNN on XLA:CPU with jaxlib >= 0.12)."""
    try:
        cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) / items if flops else None


def torch_side(args: argparse.Namespace, folder: Path) -> Any:
    """Where the PyTorch side runs: this process (torch importable, no ``--torch-python``), a
    worker process under ``--torch-python``, or nowhere (``--no-torch``)."""
    if args.no_torch:
        return None
    if args.torch_python is None and bc.torch_importable():
        return "local"
    python = args.torch_python or os.environ.get("JAXNETS_TORCH_PYTHON") or str(DEFAULT_TORCH_PYTHON)
    if not Path(python).exists():
        raise SystemExit(f"torch is not installed here and the PyTorch worker's Python {python} does "
                         "not exist: pass --torch-python PATH (a Python with torch) or --no-torch")
    return bench_torch.TorchWorker(python, args.threads_in_force, folder)


def random_batch(spec: ModelSpec, batch: int, size: int | None = None,
                 seed: int = 0) -> tuple[Any, Any]:
    """One seeded uint8 NHWC batch and its int32 labels for ``spec`` (every side times these)."""
    import numpy as np  # after the threads are pinned (OpenBLAS reads them at import)

    rng = np.random.default_rng(seed)
    size = size or spec.input_size
    images = rng.integers(0, 256, (batch, size, size, spec.in_channels), dtype=np.uint8)
    return images, rng.integers(0, spec.num_classes, (batch,), dtype=np.int32)


class JaxBench:
    """The jaxnets side of one model: its jitted eval and train steps on one fixed batch.

    ``state_dict``: the PyTorch reference's initial weights (numpy), converted strictly so both
    sides hold the same weights; None = the registry's own init with ``seed``."""

    def __init__(self, name: str, images: Any, labels: Any, state_dict: dict[str, Any] | None, *,
                 seed: int = 0, precision: str = "fp32") -> None:
        import jax
        import jax.numpy as jnp
        from jaxnets.converters.convert import state_dict_to_variables

        from jaxnets.models.api import abstract_variables, init_variables
        from jaxnets.models.registry import NORMALIZATIONS, get_spec

        self.spec = get_spec(name)
        self.module = self.spec.create()
        self.normalize = NORMALIZATIONS[self.spec.normalization]
        self.seed, self.precision = seed, precision
        if state_dict is not None:
            variables = state_dict_to_variables(state_dict, abstract_variables(self.spec, self.module),
                                                self.spec.keymap, model_name=self.spec.name)
            self.variables = jax.tree_util.tree_map(jnp.asarray, variables)
        else:
            self.variables = init_variables(self.spec, self.module, seed=seed)
        self.images, self.labels = jnp.asarray(images), jnp.asarray(labels)
        self.batch = int(self.labels.shape[0])
        self._live: dict[str, Any] = {}  # mode → what its side needs (compiled step, state)

    def parity_logits(self) -> Any:
        """Eval logits in fp32 at the highest matmul precision (compared with PyTorch's)."""
        import jax
        import jax.numpy as jnp
        import numpy as np

        from jaxnets.train.steps import make_eval_step

        with jax.default_matmul_precision("highest"):
            exact = make_eval_step(self.module, normalize=self.normalize, precision="fp32")
            out = exact(self.variables, self.images, self.labels, jnp.ones((self.batch,), jnp.int32),
                        None)
            return np.asarray(out["logits"])

    def prepare(self, mode: str, name: str = "jaxnets") -> tuple[bc.LocalSide, float, float | None]:
        """Compile ``mode``'s step (timed: trace + lower + XLA compile, no persistent cache);
        returns its side, the compile seconds and XLA's FLOPs per image."""
        import jax
        import jax.numpy as jnp
        import optax

        from jaxnets.train.state import TrainState
        from jaxnets.train.steps import make_eval_step, make_train_step

        images, labels = self.images, self.labels
        if mode == "eval":
            valid = jnp.ones((self.batch,), jnp.int32)
            step = make_eval_step(self.module, normalize=self.normalize, precision=self.precision)
            args: tuple = (self.variables, images, labels, valid, None)
            lowered = step.jitted.lower(*args)
            compiled, compile_s = bc.timed(lambda: step.jitted.lower(*args).compile())
            self._live[mode] = compiled

            def run() -> Any:
                return compiled(*args)["logits"]

            side = bc.LocalSide(name, run, jax.block_until_ready)
            return side, compile_s, step_flops(lowered, self.batch)
        tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),  # PyTorch's coupled decay
                         optax.sgd(LR, momentum=MOMENTUM))
        step = make_train_step(self.module, normalize=self.normalize, donate=True,
                               precision=self.precision)
        mask = jnp.ones((self.batch,), bool)
        holder = {"state": TrainState.create(self.module, self.variables, tx, seed=self.seed)}
        lowered = step.jitted.lower(holder["state"], images, labels, mask, None)
        compiled, compile_s = bc.timed(
            lambda: step.jitted.lower(holder["state"], images, labels, mask, None).compile())

        def train() -> Any:
            holder["state"], metrics = compiled(holder["state"], images, labels, mask, None)
            return metrics

        self._live[mode] = train
        side = bc.LocalSide(name, train, lambda m: jax.block_until_ready((m, holder["state"])))
        return side, compile_s, step_flops(lowered, self.batch)

    def final_loss(self) -> float:
        """The loss of one more train step after the timed ones (the batch is memorised)."""
        return float(self._live["train"]()["loss"])

    def release(self, mode: str) -> None:
        """Drop a mode's compiled step and state before the next one is timed."""
        self._live.pop(mode, None)


class JaxWorker(bc.JsonWorker):
    """This script as a jaxnets-only worker under other XLA flags (``--onednn-ab``: the oneDNN
    flags off), pinned to the same threads; its repeats interleave with this process' ones."""

    label = "jaxnets worker"

    def __init__(self, threads: int, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        super().__init__([sys.executable, str(Path(__file__).resolve()), "--jax-worker",
                          "--threads", str(threads)], env=env)
        self.xla_flags = self.ask("xla_flags")["xla_flags"]

    def setup(self, name: str, images: Any, labels: Any, state_dict: dict[str, Any] | None, *,
              seed: int, precision: str) -> None:
        import numpy as np

        batch, weights = self.folder / "jax_batch.npz", self.folder / "jax_weights.npz"
        np.savez(batch, images=np.asarray(images), labels=np.asarray(labels))
        if state_dict is not None:
            np.savez(weights, **state_dict)
        self.ask("setup", name=name, batch=str(batch),
                 weights=str(weights) if state_dict is not None else None, seed=seed,
                 precision=precision)

    def side(self, mode: str, name: str) -> bc.RemoteSide:
        return bc.RemoteSide(self, name, mode=mode)


def without_onednn(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` for a process on plain XLA: JAXNETS_ONEDNN=0 and the oneDNN flags removed."""
    from jaxnets.runtime import ONEDNN_XLA_FLAGS

    names = {flag.split("=", 1)[0] for flag in ONEDNN_XLA_FLAGS}
    flags = [f for f in environ.get("XLA_FLAGS", "").split() if f.split("=", 1)[0] not in names]
    return {**environ, "JAXNETS_ONEDNN": "0", "XLA_FLAGS": " ".join(flags)}


def _serve_jax(threads: int) -> int:
    """The ``--jax-worker`` loop: a :class:`JaxBench` per ``setup``, its steps timed on request."""
    import numpy as np

    bench: JaxBench | None = None
    sides: dict[str, bc.LocalSide] = {}

    def handle(op: str, request: dict) -> dict:
        nonlocal bench
        if op == "xla_flags":
            return {"xla_flags": os.environ.get("XLA_FLAGS", "")}
        if op == "setup":
            with np.load(request["batch"]) as data:
                images, labels = data["images"], data["labels"]
            state_dict = None
            if request["weights"]:
                with np.load(request["weights"]) as data:
                    state_dict = {k: data[k].copy() for k in data.files}
            bench = JaxBench(request["name"], images, labels, state_dict, seed=request["seed"],
                             precision=request["precision"])
            sides.clear()
            return {"ok": True}
        if bench is None:
            raise RuntimeError(f"{op!r} before 'setup'")
        mode = request.get("mode", "train")
        if op in ("warmup", "repeat"):
            if mode not in sides:
                sides[mode] = bench.prepare(mode)[0]
            if op == "warmup":
                return {"last": sides[mode].warmup(request["steps"])}
            seconds, other = sides[mode].repeat(request["steps"])
            return {"seconds": seconds, "other": other}
        if op == "final_loss":
            return {"loss": bench.final_loss()}
        if op == "release":
            sides.pop(mode, None)
            bench.release(mode)
            return {"ok": True}
        raise RuntimeError(f"unknown request {op!r}")

    return bc.serve_requests(handle)


def bench_model(name: str, batch: int, args: argparse.Namespace, worker: Any,
                plain: JaxWorker | None = None) -> tuple[list[Row], dict]:
    """``worker``: "local", a :class:`bench_torch.TorchWorker`, or None (jaxnets only);
    ``plain``: a :class:`JaxWorker` on plain XLA, timed as a fourth side (``--onednn-ab``)."""
    import numpy as np

    from jaxnets.models.registry import NORMALIZATIONS, get_spec

    spec = get_spec(name)
    size = args.image_size or spec.input_size
    mean, std = NORMALIZATIONS[spec.normalization]
    images_np, labels_np = random_batch(spec, batch, size, args.seed)

    # Same weights on every side: the PyTorch reference's random init, converted strictly.
    ref: Any = None
    state_dict = None
    if worker == "local":
        ref = bench_torch.TorchBench(spec.name, images_np, labels_np, mean=mean, std=std,
                                     seed=args.seed, precision=args.precision, device=args.device)
        state_dict = ref.state_dict()
    elif worker is not None:
        ref = worker
        state_dict = worker.setup(spec.name, images_np, labels_np, mean=mean, std=std,
                                  seed=args.seed, precision=args.precision, device=args.device)
    jax_bench = JaxBench(spec.name, images_np, labels_np, state_dict, seed=args.seed,
                         precision=args.precision)
    if plain is not None:
        plain.setup(spec.name, images_np, labels_np, state_dict, seed=args.seed,
                    precision=args.precision)

    timing = dict(repeats=args.repeats, warmup=args.warmup, steps=args.steps,
                  min_time=args.min_time, items=batch, max_other=args.max_other_load,
                  retries=args.retries, wait=args.retry_wait)
    variants = args.torch_variants if ref is not None else []
    rows: list[Row] = []
    info: dict[str, Any] = {"model": spec.name}

    def row(mode: str, timings: dict[str, bc.Timing], compile_s: float, flops: float | None) -> Row:
        jt = timings["jaxnets"]
        tts = {v: timings[f"torch:{v}"] for v in variants}
        others = [t.other_load for t in tts.values() if t.other_load is not None]
        pt = timings.get(PLAIN)
        return Row(spec.name, size, batch, mode, jt.median_rate, jt.spread,
                   {v: t.median_rate for v, t in tts.items()}, {v: t.spread for v, t in tts.items()},
                   compile_s, jt.steps, {v: t.steps for v, t in tts.items()}, jt.other_load,
                   max(others) if others else None, flops,
                   pt.median_rate if pt else None, pt.spread if pt else None,
                   pt.other_load if pt else None)

    if ref is not None:
        # Parity: fp32 logits at the highest matmul precision (no TF32 / bf16 passes) on both sides.
        diff = np.abs(jax_bench.parity_logits() - ref.parity_logits())
        info["eval_max_abs_logit_diff"] = float(np.max(diff))

    for mode in [m for m in ("eval", "train") if m in args.modes]:
        side, compile_s, flops = jax_bench.prepare(mode)
        sides: list[bc.Side] = [side]
        if plain is not None:
            sides.append(plain.side(mode, PLAIN))
        sides += [ref.side(mode, v) for v in variants]
        rows.append(row(mode, bc.measure_interleaved(sides, **timing), compile_s, flops))
        if mode == "train":
            info["jax_final_loss"] = jax_bench.final_loss()
            if plain is not None:
                info["jax_plain_final_loss"] = plain.ask("final_loss")["loss"]
            if variants:
                info["torch_final_loss"] = ref.final_loss(variants[0])
        jax_bench.release(mode)
        if plain is not None:
            plain.ask("release", mode=mode)
    return rows, info


# --------------------------------------------------------------------------- output

VARIANT_TITLES = {"eager": "PyTorch img/s", "channels_last": "PyTorch channels_last img/s",
                  "compile": "PyTorch compile img/s"}


def headers(variants: Sequence[str], ab: bool = False) -> tuple[list[str], list[str]]:
    jax_cols = ["jaxnets oneDNN img/s", "jaxnets plain XLA img/s", "oneDNN / plain"] if ab \
        else ["jaxnets img/s"]
    names = ["model", "input", "batch", "step", *jax_cols,
             *[VARIANT_TITLES[v] for v in variants], "jaxnets / fastest PyTorch", "GFLOP/img",
             "% of peak (jax, torch)", "jaxnets compile s", "steps/repeat (jax, torch)",
             "other procs, cores (jax, torch)"]
    align = ["l", "r", "r", "l", *["r"] * len(jax_cols), *["r"] * len(variants), "r", "r", "r",
             "r", "r", "r"]
    return names, align


def _cores(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def table_rows(rows: Sequence[Row], variants: Sequence[str],
               peak: float | None = None, ab: bool = False) -> list[list[str]]:
    out = []
    for r in rows:
        jax_cells = [bc.fmt_rate(r.jax_rate, r.jax_spread)]
        if ab:
            jax_cells += [bc.fmt_rate(r.jax_plain_rate, r.jax_plain_spread),
                          bc.fmt_ratio(r.onednn_gain)]
        ratio = bc.fmt_ratio(r.ratio)
        if r.torch_best and len(variants) > 1:
            ratio += f" ({r.torch_best})"
        steps = ", ".join(str(r.torch_steps[v]) for v in variants) or "—"
        out.append([r.model, f"{r.size} px", str(r.batch), r.mode, *jax_cells,
                    *[bc.fmt_rate(r.torch_rates.get(v), r.torch_spreads.get(v)) for v in variants],
                    ratio, "—" if r.flops_per_item is None else f"{r.flops_per_item / 1e9:.3g}",
                    f"{_percent(r.peak_fraction(r.jax_rate, peak))}, "
                    f"{_percent(r.peak_fraction(r.torch_rate, peak))}",
                    f"{r.compile_s:.1f}", f"{r.jax_steps}, {steps}",
                    f"{_cores(r.jax_other)}, {_cores(r.torch_other)}"])
    return out


def notes(args: argparse.Namespace, infos: Sequence[dict], torch_where: str) -> list[str]:
    variants = ", ".join(args.torch_variants)
    out = [
        f"Median of {args.repeats} timed repeats after {args.warmup} warm-up step(s), the sides' "
        "repeats interleaved (jaxnets, then each PyTorch variant, round after round); ±% is half "
        "the min–max range of the repeats. Ratio > 1 means jaxnets is faster; it is taken against "
        "the fastest PyTorch variant (named in brackets). 'other procs' is the CPU other processes "
        "used while each side was timed (from /proc/stat; with 2 threads, anything near 1 means a "
        "core was taken): PyTorch's OpenMP kernels slow down far more than XLA's pool when a core "
        "is taken, so rows with other load > 0.3 are not a fair comparison.",
        f"eval: jitted uint8 → normalise → forward → top-1/5 counts (jaxnets) vs `model.eval()` + "
        f"`torch.inference_mode()` with the same normalisation (PyTorch). train: `make_train_step` "
        "(donated state, BN train mode, CE) vs zero_grad/backward/step; both SGD lr 0.1, momentum "
        f"0.9, weight decay 5e-4. PyTorch variants ({variants}; {torch_where}): eager NCHW; eager "
        "channels_last (model and input); `torch.compile` (inductor) of the channels_last model.",
        "GFLOP/img: XLA's cost analysis of the compiled jaxnets step (the same model, so the "
        "same FLOPs for PyTorch); % of peak: FLOPs × img/s over the machine's GEMM peak at this "
        "precision (the better of jax's and PyTorch's n=2048 matmul, see the header).",
    ]
    if args.onednn_ab:
        out.append("oneDNN A/B (`--onednn-ab`): the jaxnets step timed twice, in this process with "
                   "the oneDNN convolution flags (`jaxnets.runtime.ONEDNN_XLA_FLAGS`, the default on "
                   "jaxlib ≥ 0.12 on x86) and in a worker process on plain XLA (`JAXNETS_ONEDNN=0`), "
                   "same weights, batch and threads; its repeats interleave with the others (jaxnets, "
                   "plain XLA, each PyTorch variant, round after round). 'oneDNN / plain' > 1: the "
                   "flags help. The ratio to PyTorch is the oneDNN (default) side's.")
    if args.precision == "bf16":
        out.append("bf16: jaxnets `precision='bf16'` (bf16 compute, fp32 parameters and BN "
                   f"statistics) vs PyTorch `torch.autocast('{'cuda' if args.device == 'gpu' else 'cpu'}', "
                   "dtype=torch.bfloat16)` (AMP: fp32 master weights).")
    checks = []
    for info in infos:
        parts = []
        if "eval_max_abs_logit_diff" in info:
            parts.append(f"fp32 eval max |Δ logits| {info['eval_max_abs_logit_diff']:.1e} at the "
                         "highest matmul precision")
        if "jax_final_loss" in info:
            loss = f"train loss after the timed steps (one batch, memorised) jaxnets {info['jax_final_loss']:.3f}"
            if "jax_plain_final_loss" in info:
                loss += f" (plain XLA {info['jax_plain_final_loss']:.3f})"
            if "torch_final_loss" in info:
                loss += f" / PyTorch {info['torch_final_loss']:.3f}"
            parts.append(loss)
        if parts:
            checks.append(f"{info['model']}: " + "; ".join(parts))
    if checks:
        out.append("Same weights on both sides (checks): " + " · ".join(checks) + ".")
    return out


def parity_line(infos: Sequence[dict], limit: float = PARITY_LIMIT) -> str | None:
    diffs = {i["model"]: i["eval_max_abs_logit_diff"] for i in infos if "eval_max_abs_logit_diff" in i}
    if not diffs:
        return None
    ok = all(d <= limit for d in diffs.values())
    listed = ", ".join(f"{m} {d:.1e}" for m, d in diffs.items())
    return (f"parity: fp32 logits at the highest matmul precision, max |Δ| {listed} "
            f"({'all' if ok else 'NOT all'} ≤ {limit:g})")


def parse_batch(text: str | None) -> tuple[int | None, dict[str, int]]:
    """``--batch 64`` (all models) or ``--batch resnet18=16,densenet121=8``."""
    if not text:
        return None, {}
    if "=" not in text:
        return int(text), {}
    per = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        per[key.strip()] = int(value)
    return None, per


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS),
                   help="comma-separated registry names (default: %(default)s)")
    p.add_argument("--all", action="store_true",
                   help=f"add {', '.join(ALL_EXTRA)} (where registered)")
    p.add_argument("--modes", default="eval,train", help="eval, train or both (default)")
    p.add_argument("--batch", default=None,
                   help="N for every model, or name=N,…; default 128 at 32 px, 32 at 224 px "
                        "(densenet121 16)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--steps", type=int, default=None,
                   help="steps per repeat (default: calibrated to --min-time)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per repeat when calibrating")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both frameworks (default: every CPU this process may use)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-other-load", type=float, default=0.3,
                   help="re-measure when other processes used more CPU cores than this")
    p.add_argument("--retries", type=int, default=2, help="re-measurements on a busy machine")
    p.add_argument("--retry-wait", type=float, default=20.0, help="seconds before re-measuring")
    p.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS (recorded)")
    p.add_argument("--onednn-ab", action="store_true",
                   help="also time jaxnets on plain XLA (oneDNN flags off) in a worker process, "
                        "interleaved with the default side (jaxlib >= 0.12 on x86)")
    p.add_argument("--jax-worker", action="store_true", help=argparse.SUPPRESS)  # --onednn-ab's side
    p.add_argument("--no-torch", action="store_true", help="time jaxnets only")
    p.add_argument("--torch-variants", default=",".join(bench_torch.VARIANTS),
                   help="PyTorch forms to time: eager, channels_last, compile (default: all)")
    p.add_argument("--torch-python", default=None,
                   help="run the PyTorch side in a worker process under this Python (default: in "
                        "this process where torch is installed, else $JAXNETS_TORCH_PYTHON or "
                        f"{DEFAULT_TORCH_PYTHON.relative_to(bc.ROOT)})")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                   help="cpu (default) or gpu: jax's GPU backend vs PyTorch on CUDA")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size for every model (default: each model's own; smoke runs)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="compute precision: jaxnets precision=… vs PyTorch autocast (bf16)")
    p.add_argument("--quick", action="store_true",
                   help="smoke settings: batch 2, 1 warm-up step, 1 step, 1 repeat")
    p.add_argument("--record", action="store_true", help="append the table to --doc")
    p.add_argument("--doc", type=Path, default=bc.DEFAULT_DOC, help="default: %(default)s")
    p.add_argument("--note", default="", help="a line added to the recorded section")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    p.add_argument("--epoch-data", default=None,
                   help="image folder with train/<class>/ (e.g. the JPEG CIFAR-10): also time full "
                        "training epochs, jaxnets vs a PyTorch loop (see bench_epoch.py)")
    p.add_argument("--epoch-models", default="resnet20", help="models for --epoch-data")
    p.add_argument("--epoch-limit", type=int, default=None,
                   help="train on the first N images only (default: the whole train split)")
    p.add_argument("--epoch-batch", type=int, default=128)
    p.add_argument("--epoch-devices", default="1",
                   help="jaxnets device counts to time, e.g. 1,4 (fake CPU devices beyond 1)")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.steps, args.retries = 1, 1, 1, 0
        args.batch = args.batch or "2"
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.torch_variants = [v.strip() for v in args.torch_variants.split(",") if v.strip()]
    unknown = sorted(set(args.torch_variants) - set(bench_torch.VARIANTS))
    if unknown:
        p.error(f"--torch-variants: unknown {', '.join(unknown)} (choose from "
                f"{', '.join(bench_torch.VARIANTS)})")
    if not args.torch_variants:
        args.no_torch = True
    if not set(args.modes) <= {"eval", "train"} or not args.modes:
        p.error("--modes takes eval, train or eval,train")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.jax_worker:
        threads = bc.pin_threads(args.threads)  # before jax is imported
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        return _serve_jax(threads)
    load_before = bc.load_average()
    # Threads and XLA flags must be settled before jax or torch is imported.
    threads = args.threads_in_force = bc.pin_threads(args.threads)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    # (models pick their conv implementation by backend: conv_impl="auto" is the custom conv VJP
    # on CPU, plain XLA convolutions on GPU; JAXNETS_CONV overrides that for an A/B)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    from jaxnets.runtime import configure_xla_flags

    configure_xla_flags()  # what the CLI runs with (oneDNN convolutions on jaxlib >= 0.12, x86)
    if args.onednn_ab:
        from jaxnets.runtime import ONEDNN_XLA_FLAGS, onednn_supported

        in_force = os.environ.get("XLA_FLAGS", "")
        if args.device != "cpu" or not onednn_supported() or \
                not all(flag in in_force for flag in ONEDNN_XLA_FLAGS):
            raise SystemExit("--onednn-ab needs the CPU, jaxlib >= 0.12 on x86 and the oneDNN "
                             f"flags in force (XLA_FLAGS={in_force!r}; JAXNETS_ONEDNN unset)")
    bc.set_torch_threads(threads)
    epoch_devices = [int(d) for d in args.epoch_devices.split(",") if d.strip()]
    if args.epoch_data and max(epoch_devices) > 1:
        import jax

        jax.config.update("jax_num_cpu_devices", max(epoch_devices))

    from jaxnets.models.registry import get_spec, model_names

    names = [n.strip() for n in args.models.split(",") if n.strip()] if args.models else []
    if args.all:
        names += [n for n in ALL_EXTRA if n in model_names() and n not in names]
    all_batch, per_batch = parse_batch(args.batch)

    rows: list[Row] = []
    infos: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench_models-") as scratch:
        worker = torch_side(args, Path(scratch)) if names else None
        plain = JaxWorker(threads, Path(scratch), without_onednn(dict(os.environ))) \
            if names and args.onednn_ab else None
        torch_where = ("in this process" if worker == "local" else
                       f"worker process, {worker.versions.get('python')} with torch "
                       f"{worker.versions.get('torch')}" if worker is not None else "not run")
        try:
            for name in names:
                spec = get_spec(name)
                batch = per_batch.get(spec.name) or all_batch or MODEL_BATCH.get(spec.name) \
                    or DEFAULT_BATCH.get(spec.input_size, 32)
                print(f"… {spec.name}: {args.image_size or spec.input_size} px, batch {batch}, "
                      f"{threads} thread(s), {args.device}", file=sys.stderr, flush=True)
                model_rows, info = bench_model(spec.name, batch, args, worker, plain)
                gc.collect()  # the previous model's buffers go before the next one is timed
                for r in model_rows:
                    plain_rate = f" (plain XLA {r.jax_plain_rate:,.1f})" if r.jax_plain_rate else ""
                    print(f"  {r.mode}: jaxnets {r.jax_rate:,.1f} img/s{plain_rate}, PyTorch "
                          + ", ".join(f"{v} {x:,.1f}" for v, x in r.torch_rates.items()),
                          file=sys.stderr, flush=True)
                rows += model_rows
                infos.append(info)
        finally:
            if isinstance(worker, bench_torch.TorchWorker):
                worker.close()
            if plain is not None:
                plain_flags = plain.xla_flags
                plain.close()

    epoch_rows = []
    if args.epoch_data:
        import bench_epoch

        for name in [n.strip() for n in args.epoch_models.split(",") if n.strip()]:
            for devices in epoch_devices:
                print(f"… epoch {name}: jaxnets on {devices} device(s)", file=sys.stderr, flush=True)
                epoch_rows.append(bench_epoch.jaxnets_epoch(name, args.epoch_data, args.epoch_batch,
                                                            args.epoch_limit, devices, args.seed))
                gc.collect()
            if not args.no_torch and bc.torch_importable():
                print(f"… epoch {name}: PyTorch", file=sys.stderr, flush=True)
                epoch_rows.append(bench_epoch.torch_epoch(name, args.epoch_data, args.epoch_batch,
                                                          args.epoch_limit, args.seed))
                gc.collect()

    peak = None
    extra = {}
    if rows and not args.quick and args.device == "cpu":
        gemm = bc.gemm_peak_gflops(args.precision)
        peak = max(gemm.values())
        extra["GEMM peak"] = (f"{args.precision} n=2048 matmul, "
                              + ", ".join(f"{'PyTorch' if k == 'torch' else k} {v:.0f} GFLOP/s"
                                          for k, v in gemm.items()))
    load_after = bc.load_average()
    import jax

    from jaxnets.models.layers import resolve_conv_impl

    extra["JAX backend"] = (f"{jax.default_backend()} ({jax.devices()[0].device_kind}); "
                            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(unset)'}; "
                            f"conv_impl={resolve_conv_impl('auto')} "
                            f"(JAXNETS_CONV={os.environ.get('JAXNETS_CONV', '') or 'unset'})")
    if args.device == "gpu":
        extra["GPU"] = bc.gpu_info()
    if rows and not args.no_torch:
        extra["PyTorch side"] = torch_where
    if rows and args.onednn_ab:
        extra["jaxnets plain-XLA side"] = ("worker process, JAXNETS_ONEDNN=0, "
                                           f"XLA_FLAGS={plain_flags or '(unset)'}")
    if args.note:
        extra["Note"] = args.note
    header = bc.header_lines(threads, load_before=load_before, load_after=load_after,
                             extra=extra)
    variants = [] if args.no_torch else args.torch_variants
    names_, align = headers(variants, args.onednn_ab)
    body = bc.markdown_table(names_, table_rows(rows, variants, peak, args.onednn_ab),
                             align) if rows else ""
    note_lines = notes(args, infos, torch_where) if rows else []
    if epoch_rows:
        import bench_epoch

        epoch_table = bc.markdown_table(bench_epoch.HEADERS, bench_epoch.table_rows(epoch_rows),
                                        bench_epoch.ALIGN)
        body = (body + "\n\n" if body else "") + "Full training epochs:\n\n" + epoch_table
        note_lines.append(
            f"Epochs: train split of {args.epoch_data} (limit {args.epoch_limit or 'none'}), batch "
            f"{args.epoch_batch}, SGD lr 0.1 momentum 0.9 wd 5e-4, flip + crop; jaxnets = train_loader "
            "(prefetch thread) + jitted donated step, first-batch compile excluded; PyTorch = "
            "the same numpy augmentation in the loop, eager NCHW fp32. Devices > 1 are fake CPU "
            "devices sharing the same cores (data-parallel overhead, not a speed-up).")
    parity = parity_line(infos)
    print("\n".join(header) + "\n\n" + body + "\n\n" + "\n".join(note_lines)
          + (f"\n\n{parity}" if parity else ""))
    if args.json:
        args.json.write_text(json.dumps(
            {"rows": [asdict(r) | {"ratio": r.ratio, "torch_rate": r.torch_rate,
                                   "torch_best": r.torch_best} for r in rows],
             "onednn_ab": args.onednn_ab, "checks": infos, "threads": threads, "gemm_peak_gflops": peak,
             "machine": bc.machine_info(), "versions": bc.library_versions(),
             "torch_side": torch_where}, indent=2) + "\n")
    if args.record:
        path = bc.append_section(f"bench_models.py — jaxnets vs PyTorch ({threads} thread(s))",
                                 ["\n".join(header), body, "\n".join(note_lines)], path=args.doc)
        print(f"recorded in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
