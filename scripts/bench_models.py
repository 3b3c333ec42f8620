#!/usr/bin/env python
"""Eval and train-step throughput of jaxnets models vs their PyTorch reference modules.

Both sides run in one process on the same machine, with the same weights (the PyTorch
module's random init converted through ``converters.convert``), the same uint8 batch, the same
batch size and the same thread count (CPU affinity pinned to T CPUs before either library is
imported; ``torch.set_num_threads(T)``; XLA sizes its pool from the affinity).

- eval: jaxnets' jitted eval step (``jaxnets.train.steps.make_eval_step``: uint8 → normalise
  → forward → logits, top-1/top-5 flags, all inside one jit) vs PyTorch ``model.eval()`` under
  ``torch.inference_mode()`` with the same normalisation in the timed region.
- train: ``jaxnets.train.steps.make_train_step`` on a ``jaxnets.train.state.TrainState``
  (state donated, BN in train mode, cross-entropy) vs PyTorch ``model.train()``,
  ``zero_grad / backward / step``. Both: SGD momentum 0.9, lr 0.1, coupled weight decay 5e-4.
- timing: warm-up steps, then the median of ``--repeats`` repeats; a repeat runs enough steps
  back to back to last ``--min-time`` seconds and synchronises once at its end
  (``jax.block_until_ready``). jaxnets' compile time (trace + lower + XLA compile, no
  persistent cache) is reported separately and is not part of any timed repeat.

Usage::

    python scripts/bench_models.py                      # resnet20 + resnet18
    python scripts/bench_models.py --all --record       # + vgg16_bn_cifar, densenet121 → docs
    python scripts/bench_models.py --models resnet20 --threads 1 --repeats 7
    python scripts/bench_models.py --models resnet20 --quick   # smoke run (1 step, 1 repeat)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bench_common as bc  # also puts the package and tests/reference on sys.path

DEFAULT_MODELS = ("resnet20", "resnet18")
ALL_EXTRA = ("vgg16_bn_cifar", "densenet121")
# CPU-sized defaults: the CIFAR batch of the papers; 224-px models smaller (2-core machine).
DEFAULT_BATCH = {32: 128, 224: 32}
MODEL_BATCH = {"densenet121": 16}
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4


# --------------------------------------------------------------------------- references


def torch_reference(name: str) -> Any:
    """The PyTorch reference module (from tests/reference) with the registry's architecture."""
    import re

    if name == "vgg16_bn_cifar":
        from reference.torch_vgg import cifar_vgg16_bn

        return cifar_vgg16_bn(10)
    if name == "densenet121":
        from reference.torch_densenet import densenet121

        return densenet121()
    m = re.fullmatch(r"resnet(\d+)(_b)?", name)
    if m and int(m.group(1)) in (20, 32, 44, 56, 110):
        from reference.torch_cifar_resnet import cifar_resnet

        return cifar_resnet(int(m.group(1)), "B" if m.group(2) else "A")
    from reference.torch_resnet import ARCH_NAMES, torch_resnet

    if name in ARCH_NAMES:
        return torch_resnet(name)
    m = re.fullmatch(r"vgg(11|13|16|19)(_bn)?", name)
    if m:
        from reference.torch_vgg import vgg

        return vgg(int(m.group(1)), bool(m.group(2)))
    raise SystemExit(f"no PyTorch reference module known for {name!r}")


# --------------------------------------------------------------------------- one model


@dataclass
class Row:
    model: str
    size: int
    batch: int
    mode: str  # "eval" | "train"
    jax_rate: float
    jax_spread: float
    torch_rate: float | None
    torch_spread: float | None
    compile_s: float
    jax_steps: int
    torch_steps: int | None
    jax_other: float | None = None  # cores other processes used while each side was timed
    torch_other: float | None = None
    flops_per_item: float | None = None  # XLA's cost analysis of the jaxnets step, per image

    @property
    def ratio(self) -> float | None:
        return self.jax_rate / self.torch_rate if self.torch_rate else None

    def peak_fraction(self, rate: float | None, peak: float | None) -> float | None:
        """Achieved FLOP/s (the model's FLOPs × images/s; the same FLOPs for both sides) as a
        fraction of the machine's measured GEMM peak."""
        if not (rate and peak and self.flops_per_item):
            return None
        return self.flops_per_item * rate / 1e9 / peak


def step_flops(compiled: Any, items: int) -> float | None:
    """FLOPs per item of a compiled step, from XLA's cost analysis (None where unavailable)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) / items if flops else None


def bench_model(name: str, batch: int, args: argparse.Namespace) -> tuple[list[Row], dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch
    import torch.nn.functional as F

    from converters.convert import state_dict_to_variables
    from jaxnets.models.api import abstract_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_eval_step, make_train_step

    spec = get_spec(name)
    module = spec.create()
    size = spec.input_size
    mean, std = NORMALIZATIONS[spec.normalization]

    # Same weights on both sides: the reference's random init, converted strictly.
    torch.manual_seed(args.seed)
    ref = torch_reference(spec.name)
    # copies: JAX may alias host memory, and the donated train state must not be torch's
    state_dict = {k: v.detach().cpu().numpy().copy() for k, v in ref.state_dict().items()}
    variables = state_dict_to_variables(state_dict, abstract_variables(spec, module), spec.keymap,
                                        model_name=spec.name)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)

    rng = np.random.default_rng(args.seed)
    images_np = rng.integers(0, 256, (batch, size, size, spec.in_channels), dtype=np.uint8)
    labels_np = rng.integers(0, spec.num_classes, (batch,), dtype=np.int32)
    images, labels = jnp.asarray(images_np), jnp.asarray(labels_np)
    valid = jnp.ones((batch,), jnp.int32)
    x_t = torch.from_numpy(np.ascontiguousarray(images_np.transpose(0, 3, 1, 2)))
    y_t = torch.from_numpy(labels_np.astype(np.int64))
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def torch_input() -> torch.Tensor:
        # torchvision's order (ToTensor then Normalize), as jaxnets normalises inside its jit.
        return x_t.to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t)

    bf16 = args.precision == "bf16"

    def autocast() -> Any:
        # PyTorch's counterpart of jaxnets' bf16 compute: CPU autocast (fp32 master weights)
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    timing = dict(repeats=args.repeats, warmup=args.warmup, steps=args.steps,
                  min_time=args.min_time, items=batch, max_other=args.max_other_load,
                  retries=args.retries, wait=args.retry_wait)
    rows: list[Row] = []
    info: dict[str, Any] = {"model": spec.name}

    if "eval" in args.modes:
        eval_step = make_eval_step(module, normalize=(mean, std), precision=args.precision)
        compiled, compile_s = bc.timed(
            lambda: eval_step.jitted.lower(variables, images, labels, valid, None).compile())

        def jax_eval() -> Any:
            return compiled(variables, images, labels, valid, None)["logits"]

        jt = bc.measure_when_quiet(jax_eval, jax.block_until_ready, **timing)
        jax_logits = np.asarray(jax_eval())

        ref.eval()

        def torch_eval() -> torch.Tensor:
            with torch.inference_mode(), autocast():
                return ref(torch_input()).float()

        tt = None if args.no_torch else bc.measure_when_quiet(torch_eval, lambda out: out, **timing)
        if not args.no_torch:
            info["eval_max_abs_logit_diff"] = float(
                np.max(np.abs(jax_logits - torch_eval().numpy())))
        rows.append(Row(spec.name, size, batch, "eval", jt.median_rate, jt.spread,
                        tt.median_rate if tt else None, tt.spread if tt else None, compile_s,
                        jt.steps, tt.steps if tt else None, jt.other_load,
                        tt.other_load if tt else None, step_flops(compiled, batch)))
        del compiled

    if "train" in args.modes:
        tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY),  # PyTorch's coupled decay
                         optax.sgd(LR, momentum=MOMENTUM))
        train_step = make_train_step(module, normalize=(mean, std), donate=True,
                                     precision=args.precision)
        mask = jnp.ones((batch,), bool)
        holder = {"state": TrainState.create(module, variables, tx, seed=args.seed)}
        compiled, compile_s = bc.timed(
            lambda: train_step.jitted.lower(holder["state"], images, labels, mask, None).compile())

        def jax_train() -> Any:
            holder["state"], metrics = compiled(holder["state"], images, labels, mask, None)
            return metrics

        jt = bc.measure_when_quiet(jax_train, lambda m: jax.block_until_ready((m, holder["state"])), **timing)
        info["jax_final_loss"] = float(jax_train()["loss"])

        ref.train()
        opt = torch.optim.SGD(ref.parameters(), lr=LR, momentum=MOMENTUM,
                              weight_decay=WEIGHT_DECAY)

        def torch_train() -> torch.Tensor:
            with autocast():
                loss = F.cross_entropy(ref(torch_input()).float(), y_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        tt = None if args.no_torch else bc.measure_when_quiet(torch_train, lambda out: out.item(), **timing)
        if not args.no_torch:
            info["torch_final_loss"] = float(torch_train().item())
        rows.append(Row(spec.name, size, batch, "train", jt.median_rate, jt.spread,
                        tt.median_rate if tt else None, tt.spread if tt else None, compile_s,
                        jt.steps, tt.steps if tt else None, jt.other_load,
                        tt.other_load if tt else None, step_flops(compiled, batch)))
        del compiled, holder
    return rows, info


# --------------------------------------------------------------------------- output

HEADERS = ("model", "input", "batch", "step", "jaxnets img/s", "PyTorch img/s",
           "jaxnets / PyTorch", "GFLOP/img", "% of peak (jax, torch)", "jaxnets compile s",
           "steps/repeat (jax, torch)", "other procs, cores (jax, torch)")
ALIGN = ("l", "r", "r", "l", "r", "r", "r", "r", "r", "r", "r", "r")


def _cores(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def _percent(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def table_rows(rows: Sequence[Row], peak: float | None = None) -> list[list[str]]:
    return [[r.model, f"{r.size} px", str(r.batch), r.mode, bc.fmt_rate(r.jax_rate, r.jax_spread),
             bc.fmt_rate(r.torch_rate, r.torch_spread), bc.fmt_ratio(r.ratio),
             "—" if r.flops_per_item is None else f"{r.flops_per_item / 1e9:.3g}",
             f"{_percent(r.peak_fraction(r.jax_rate, peak))}, "
             f"{_percent(r.peak_fraction(r.torch_rate, peak))}",
             f"{r.compile_s:.1f}", f"{r.jax_steps}, {r.torch_steps or '—'}",
             f"{_cores(r.jax_other)}, {_cores(r.torch_other)}"] for r in rows]


def notes(args: argparse.Namespace, infos: Sequence[dict]) -> list[str]:
    out = [
        f"Median of {args.repeats} timed repeats after {args.warmup} warm-up step(s); "
        "±% is half the min–max range of the repeats. Ratio > 1 means jaxnets is faster. "
        "'other procs' is the CPU other processes used while each side was timed (from "
        "/proc/stat; with 2 threads, anything near 1 means a core was taken): PyTorch's "
        "OpenMP kernels slow down far more than XLA's pool when a core is taken, so rows "
        "with other load > 0.3 are not a fair comparison.",
        "eval: jitted uint8 → normalise → forward → top-1/5 counts (jaxnets) vs "
        "`model.eval()` + `torch.inference_mode()` with the same normalisation (PyTorch, "
        f"eager, NCHW, {args.precision}). train: `make_train_step` (donated state, BN train mode, CE) vs "
        "zero_grad/backward/step; both SGD lr 0.1, momentum 0.9, weight decay 5e-4.",
        "GFLOP/img: XLA's cost analysis of the compiled jaxnets step (the same model, so the "
        "same FLOPs for PyTorch); % of peak: FLOPs × img/s over the machine's GEMM peak at this "
        "precision (the better of jax's and PyTorch's n=2048 matmul, see the header).",
    ]
    if args.precision == "bf16":
        out.append("bf16: jaxnets `precision='bf16'` (bf16 compute, fp32 parameters and BN "
                   "statistics) vs PyTorch `torch.autocast('cpu', dtype=torch.bfloat16)`.")
    checks = []
    for info in infos:
        parts = []
        if "eval_max_abs_logit_diff" in info:
            parts.append(f"eval max |Δ logits| {info['eval_max_abs_logit_diff']:.1e}")
        if "jax_final_loss" in info:
            loss = f"train loss after the timed steps (one batch, memorised) jaxnets {info['jax_final_loss']:.3f}"
            if "torch_final_loss" in info:
                loss += f" / PyTorch {info['torch_final_loss']:.3f}"
            parts.append(loss)
        if parts:
            checks.append(f"{info['model']}: " + "; ".join(parts))
    if checks:
        out.append("Same weights on both sides (checks): " + " · ".join(checks) + ".")
    return out


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
    p.add_argument("--no-torch", action="store_true", help="time jaxnets only")
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
    if not set(args.modes) <= {"eval", "train"} or not args.modes:
        p.error("--modes takes eval, train or eval,train")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = bc.load_average()
    # Threads and XLA flags must be settled before jax or torch is imported.
    threads = bc.pin_threads(args.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
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
    for name in names:
        spec = get_spec(name)
        batch = per_batch.get(spec.name) or all_batch or MODEL_BATCH.get(spec.name) \
            or DEFAULT_BATCH.get(spec.input_size, 32)
        print(f"… {spec.name}: {spec.input_size} px, batch {batch}, {threads} thread(s)",
              file=sys.stderr, flush=True)
        model_rows, info = bench_model(spec.name, batch, args)
        gc.collect()  # the previous model's buffers go before the next one is timed
        rows += model_rows
        infos.append(info)

    epoch_rows = []
    if args.epoch_data:
        import bench_epoch

        for name in [n.strip() for n in args.epoch_models.split(",") if n.strip()]:
            for devices in epoch_devices:
                print(f"… epoch {name}: jaxnets on {devices} device(s)", file=sys.stderr, flush=True)
                epoch_rows.append(bench_epoch.jaxnets_epoch(name, args.epoch_data, args.epoch_batch,
                                                            args.epoch_limit, devices, args.seed))
                gc.collect()
            if not args.no_torch:
                print(f"… epoch {name}: PyTorch", file=sys.stderr, flush=True)
                epoch_rows.append(bench_epoch.torch_epoch(name, args.epoch_data, args.epoch_batch,
                                                          args.epoch_limit, args.seed))
                gc.collect()

    peak = None
    extra = {}
    if rows and not args.quick:
        gemm = bc.gemm_peak_gflops(args.precision)
        peak = max(gemm.values())
        extra["GEMM peak"] = (f"{args.precision} n=2048 matmul, jax {gemm['jax']:.0f} GFLOP/s, "
                              f"PyTorch {gemm['torch']:.0f} GFLOP/s")
    load_after = bc.load_average()
    import jax

    extra["JAX backend"] = (f"{jax.default_backend()} ({jax.devices()[0].device_kind}); "
                            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '') or '(unset)'}")
    if args.note:
        extra["Note"] = args.note
    header = bc.header_lines(threads, load_before=load_before, load_after=load_after,
                             extra=extra)
    body = bc.markdown_table(HEADERS, table_rows(rows, peak), ALIGN) if rows else ""
    note_lines = notes(args, infos) if rows else []
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
    print("\n".join(header) + "\n\n" + body + "\n\n" + "\n".join(note_lines))
    if args.json:
        args.json.write_text(json.dumps(
            {"rows": [asdict(r) | {"ratio": r.ratio} for r in rows], "checks": infos,
             "threads": threads, "gemm_peak_gflops": peak, "machine": bc.machine_info(),
             "versions": bc.library_versions()}, indent=2) + "\n")
    if args.record:
        path = bc.append_section(f"bench_models.py — jaxnets vs PyTorch ({threads} thread(s))",
                                 ["\n".join(header), body, "\n".join(note_lines)], path=args.doc)
        print(f"recorded in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
