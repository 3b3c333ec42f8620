#!/usr/bin/env python
"""Per-op A/B microbenchmarks of the convolution and BN pieces of a CPU train step, and a
per-op profile of the whole jitted train step ("where the time goes").

Ops, at the layer shapes of a model (``--shapes resnet20`` or ``resnet18``):

- ``fwd``: the forward 3×3 convolution (XLA) vs ``torch.nn.functional.conv2d``;
- ``dgrad``: the input gradient — XLA autodiff vs ``aten.convolution_backward``;
- ``wgrad``: the filter gradient — XLA autodiff (one convolution contracting over batch × H ×
  W), the same computed per batch chunk and summed (``layers.conv_general_dilated``'s "fast"
  mode; chunk sizes 2–32 and the default ``filter_grad_chunks`` rule), vs PyTorch;
- ``bn``: train-mode BatchNorm forward + backward: Flax ``nn.BatchNorm`` (autodiff) and
  ``layers.BatchNorm`` (hand-written backward, a model's ``bn_impl="fast"``) vs ``F.batch_norm`` +
  autograd.

Every variant of a shape is compiled first, then timed in rounds: one round runs each variant
once (``--steps`` calls, synchronised at the end), so a neighbour's load hits all variants
alike; the table gives the median round. Threads are pinned as in bench_models.py.

``--step-ab MODELS`` times whole jitted train steps (autodiff, each fast VJP alone, both)
and PyTorch's train step, interleaved in one process.

``--profile MODEL`` instead traces the jitted train step (``make_train_step``, batch
``--batch``) once with plain autodiff convolutions and once with the default fast conv VJP,
and
sums the XLA:CPU thunk events by kind (filter-gradient convs, forward/input-gradient convs,
layout transposes, BN/elementwise fusions).

Usage::

    python scripts/bench_ops.py                       # resnet20 shapes, batch 128
    python scripts/bench_ops.py --shapes resnet18 --batch 32 --record
    python scripts/bench_ops.py --profile resnet20 --batch 128 --record
    python scripts/bench_ops.py --step-ab resnet20,resnet18 --rounds 5 --steps 1 --record
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bench_common as bc  # also puts the package and tests/reference on sys.path

ROOT = bc.ROOT

# (label, H=W of the input, C in, C out, stride) per distinct 3×3 conv of the model
SHAPES = {
    "resnet20": [("layer1 32px 16→16", 32, 16, 16, 1), ("layer2_0 32px 16→32 s2", 32, 16, 32, 2),
                 ("layer2 16px 32→32", 16, 32, 32, 1), ("layer3 8px 64→64", 8, 64, 64, 1)],
    "resnet18": [("layer1 56px 64→64", 56, 64, 64, 1), ("layer2 28px 128→128", 28, 128, 128, 1),
                 ("layer3 14px 256→256", 14, 256, 256, 1), ("layer4 7px 512→512", 7, 512, 512, 1)],
}
DEFAULT_BATCH = {"resnet20": 128, "resnet18": 32}
CHUNK_SIZES = (2, 4, 8, 16, 32)


# --------------------------------------------------------------------------- timing


def interleaved(fns: dict[str, Callable[[], Any]], sync: dict[str, Callable[[Any], Any]],
                rounds: int, steps: int) -> tuple[dict[str, float], float | None]:
    """Median seconds per call of each fn, timed in alternating rounds."""
    for name, fn in fns.items():  # warm-up (compilation happened before)
        sync[name](fn())
    times: dict[str, list[float]] = {k: [] for k in fns}
    with bc.OtherLoad() as other:
        for _ in range(rounds):
            for name, fn in fns.items():
                t = time.perf_counter()
                out = None
                for _ in range(steps):
                    out = fn()
                sync[name](out)
                times[name].append((time.perf_counter() - t) / steps)
    return {k: statistics.median(v) for k, v in times.items()}, other.cores


# --------------------------------------------------------------------------- ops


def _conv_rows(label: str, h: int, c: int, o: int, s: int, batch: int, rng: Any,
               args: argparse.Namespace) -> list[list[str]]:
    """The fwd / dgrad / wgrad rows of one conv shape."""
    import contextlib

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from jaxnets.models import layers

    dn = ("NHWC", "HWIO", "NHWC")
    rows: list[list[str]] = []
    pad = ((1, 1), (1, 1))
    x = jnp.asarray(rng.standard_normal((batch, h, h, c)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, c, o)) * 0.1, jnp.float32)

    def fwd(x_: jax.Array, w_: jax.Array, s: int = s) -> jax.Array:
        return lax.conv_general_dilated(x_, w_, (s, s), pad, dimension_numbers=dn)

    dy = jnp.asarray(rng.standard_normal(fwd(x, w).shape), jnp.float32)
    per_example = (x[0].size + dy[0].size) * 4

    def wgrad_chunked(x_: jax.Array, w_: jax.Array, dy_: jax.Array, chunks: int) -> jax.Array:
        parts = [jax.vjp(lambda b, i=i: fwd(layers._chunk(x_, 0, chunks, i), b), w_)[1](
            layers._chunk(dy_, 0, chunks, i))[0] for i in range(chunks)]
        return sum(parts[1:], parts[0])

    jfns: dict[str, Callable[..., Any]] = {
        "fwd": lambda x_, w_, dy_: fwd(x_, w_),
        "dgrad": lambda x_, w_, dy_: jax.vjp(lambda a: fwd(a, w_), x_)[1](dy_)[0],
        "wgrad": lambda x_, w_, dy_: jax.vjp(lambda b: fwd(x_, b), w_)[1](dy_)[0],
    }
    default_chunks = layers.filter_grad_chunks(batch, per_example)
    for m in CHUNK_SIZES:  # (more chunks than the library ever uses abort XLA's oneDNN fusion)
        if m < batch and batch % m == 0 and batch // m <= layers.MAX_FILTER_GRAD_CHUNKS:
            jfns[f"wgrad chunks of {m}"] = (
                lambda x_, w_, dy_, k=batch // m: wgrad_chunked(x_, w_, dy_, k))
    ref = {k: jax.jit(f)(x, w, dy) for k, f in jfns.items() if k in ("fwd", "dgrad", "wgrad")}
    compiled = {k: jax.jit(f).lower(x, w, dy).compile() for k, f in jfns.items()}
    errs = {}
    for k, fn in compiled.items():
        r = ref[k.split()[0]]
        errs[k] = float(jnp.max(jnp.abs(fn(x, w, dy) - r)) / jnp.max(jnp.abs(r)))

    fns: dict[str, Callable[[], Any]] = {
        f"jax {k}": (lambda fn=fn: fn(x, w, dy)) for k, fn in compiled.items()}
    syncs = {k: jax.block_until_ready for k in fns}
    no_grad: Any = contextlib.nullcontext()
    if not args.no_torch:
        import torch
        import torch.nn.functional as F

        # torch: NCHW, the same values
        xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
        wt = torch.from_numpy(np.ascontiguousarray(np.asarray(w).transpose(3, 2, 0, 1)))
        dyt = torch.from_numpy(np.ascontiguousarray(np.asarray(dy).transpose(0, 3, 1, 2)))

        def tback(mask: list[bool]) -> Callable[[], Any]:
            return lambda: torch.ops.aten.convolution_backward(
                dyt, xt, wt, None, [s, s], [1, 1], [1, 1], False, [0, 0], 1, mask)

        for k, fn in {"fwd": lambda: F.conv2d(xt, wt, None, s, 1),
                      "dgrad": tback([True, False, False]),
                      "wgrad": tback([False, True, False])}.items():
            fns[f"torch {k}"] = fn
            syncs[f"torch {k}"] = lambda out: out
        no_grad = torch.no_grad()
    with no_grad:
        med, other = interleaved(fns, syncs, args.rounds, args.steps)
    flops = 2 * batch * (h // s) ** 2 * c * o * 9
    for op in ("fwd", "dgrad", "wgrad"):
        t_torch = med.get(f"torch {op}")
        variants = [k for k in compiled if k.split()[0] == op]
        for k in variants:
            t = med[f"jax {k}"]
            name = k if k != "wgrad" else "wgrad (autodiff)"
            if k == f"wgrad chunks of {batch // default_chunks}" and default_chunks > 1:
                name += " ← default"
            rows.append([label, name, f"{t * 1e3:.2f}", f"{flops / t / 1e9:.0f}",
                         "—" if t_torch is None else f"{t_torch * 1e3:.2f}",
                         "—" if t_torch is None else bc.fmt_ratio(t_torch / t),
                         f"{errs[k]:.0e}", f"{other:.2f}" if other is not None else "—"])
    return rows


def op_rows(model: str, batch: int, args: argparse.Namespace) -> list[list[str]]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import linen as nn

    rows: list[list[str]] = []
    rng = np.random.default_rng(0)
    for label, h, c, o, s in SHAPES[model]:
        rows += _conv_rows(label, h, c, o, s, batch, rng, args)

    # BatchNorm train mode, forward + backward (sum of outputs as the loss), largest layer
    label, h, c, _, _ = SHAPES[model][0]
    x = jnp.asarray(rng.standard_normal((batch, h, h, c)), jnp.float32)
    from jaxnets.models import layers

    bns = {"flax": nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5),
           "fast": layers.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)}
    bv = bns["flax"].init(jax.random.key(0), x)
    g = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

    def bn_loss(params: Any, x_: jax.Array, bn: nn.Module) -> jax.Array:
        y, _ = bn.apply({"params": params, "batch_stats": bv["batch_stats"]}, x_,
                        mutable=["batch_stats"])
        return jnp.sum(y * g)

    bn_c = {k: jax.jit(jax.grad(functools.partial(bn_loss, bn=bn), argnums=(0, 1)))
            .lower(bv["params"], x).compile() for k, bn in bns.items()}
    fns = {k: (lambda c=c: c(bv["params"], x)) for k, c in bn_c.items()}
    syncs: dict[str, Callable[[Any], Any]] = {k: jax.block_until_ready for k in fns}
    if not args.no_torch:
        import torch
        import torch.nn.functional as F

        xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2))).requires_grad_()
        gt = torch.from_numpy(np.ascontiguousarray(np.asarray(g).transpose(0, 3, 1, 2)))
        wt, bt = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)
        rm, rv = torch.zeros(c), torch.ones(c)

        def torch_bn() -> Any:
            y = F.batch_norm(xt, rm, rv, wt, bt, training=True, momentum=0.1, eps=1e-5)
            return torch.autograd.grad((y * gt).sum(), (xt, wt, bt))

        fns["torch"], syncs["torch"] = torch_bn, (lambda out: out)
    med, other = interleaved(fns, syncs, args.rounds, args.steps)
    t_torch = med.get("torch")
    ref = bn_c["flax"](bv["params"], x)
    for k, label in (("flax", "bn fwd+bwd, nn.BatchNorm autodiff"),
                     ("fast", "bn fwd+bwd, layers.BatchNorm (bn_impl=fast)")):
        got = bn_c[k](bv["params"], x)
        err = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
                  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref),
                                  strict=True))
        rows.append([f"BN {h}px ×{c}", label, f"{med[k] * 1e3:.2f}", "—",
                     "—" if t_torch is None else f"{t_torch * 1e3:.2f}",
                     "—" if t_torch is None else bc.fmt_ratio(t_torch / med[k]), f"{err:.0e}",
                     f"{other:.2f}" if other is not None else "—"])
    return rows


OP_HEADERS = ("layer", "op / variant", "jax ms", "jax GFLOP/s", "PyTorch ms",
              "jax speed vs PyTorch", "max rel. err vs autodiff", "other procs, cores")
OP_ALIGN = ("l", "l", "r", "r", "r", "r", "r", "r")


# --------------------------------------------------------------------------- train-step profile


def _hlo_index(hlo: str) -> tuple[dict[str, str], dict[str, str]]:
    """instruction name → its defining line; computation name → its body."""
    defs, comps, cur, body = {}, {}, None, []
    for line in hlo.splitlines():
        head = re.match(r"^(?:ENTRY )?%([\w.\-]+) .*\{$", line)
        if head:
            cur, body = head.group(1), []
            continue
        if line.startswith("}") and cur:
            comps[cur] = "\n".join(body)
            cur = None
            continue
        if cur is not None:
            body.append(line)
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = ", line)
        if m:
            defs.setdefault(m.group(1), line)
    return defs, comps


ONEDNN_CONV = "__onednn$convolution"  # XLA:CPU's oneDNN custom call (jaxlib >= 0.12 with its flags)


def classify(event: str, defs: dict[str, str], comps: dict[str, str], batch: int) -> str:
    # a library call's event carries its target after "__" (custom-call.5.clone__onednn$convolution)
    line = defs.get(event) or defs.get(event.split("__", 1)[0])
    if line is None:
        return "other (runtime)"
    call = re.search(r"calls=%([\w.\-]+)", line)
    body = comps.get(call.group(1), "") if call else line
    if "convolution(" in body or ONEDNN_CONV in line:
        # outputs: forward / input gradient [batch, h, w, c]; filter gradient [kh, kw, c, o]
        # (a oneDNN call returns a tuple whose first element is the result)
        first = re.search(r"= \(?\w+\[([\d,]*)\]", line)
        dims = [int(d) for d in first.group(1).split(",") if d] if first else []
        wgrad = len(dims) == 4 and (dims[0] != batch or dims[1] in (1, 3))
        kind = "conv: filter gradient" if wgrad else "conv: forward / input gradient"
        return kind + (" (oneDNN)" if ONEDNN_CONV in line else " (XLA)")
    if " dot(" in body:
        return "classifier (matmul)"
    if "while(" in line or event.startswith("while"):
        return "materialise loop"
    if event.startswith("transpose"):
        return "layout transposes"
    if " reduce(" in body:
        return "reductions (BN statistics, gradients)"
    return "elementwise fusions (BN apply, ReLU, adds, SGD)"


def _torch_for_profile(args: argparse.Namespace, model: str, batch: int, folder: Path) -> Any:
    """PyTorch's train step on this model and batch (``bench_models.torch_side``: this process
    where torch is installed, else the worker under ``--torch-python``); None with ``--no-torch``."""
    import bench_models
    import bench_torch

    from jaxnets.models.registry import NORMALIZATIONS, get_spec

    where = bench_models.torch_side(args, folder)
    if where is None:
        return None
    spec = get_spec(model)
    mean, std = NORMALIZATIONS[spec.normalization]
    images, labels = bench_models.random_batch(spec, batch)
    if where == "local":
        bc.set_torch_threads(args.threads_in_force)
        return bench_torch.TorchBench(spec.name, images, labels, mean=mean, std=std)
    where.setup(spec.name, images, labels, mean=mean, std=std, seed=0, precision="fp32",
                device="cpu")
    return where


def profile_rows(model: str, batch: int, args: argparse.Namespace) -> tuple[list[list[str]], dict]:
    import glob

    import bench_models
    import jax
    import jax.numpy as jnp
    import optax
    from jax._src.profiler import ProfileData

    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

    spec = get_spec(model)
    module = spec.create()
    variables = init_variables(spec, module)
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
    images, labels = map(jnp.asarray, bench_models.random_batch(spec, batch))
    mask = jnp.ones((batch,), bool)
    per_side: dict[str, collections.Counter] = {}
    step_ms: dict[str, float] = {}
    flops = 0.0
    for impl in ("xla", "fast"):
        # the model's fields: autodiff conv vs the fast conv VJP (CPU's default); nn.BatchNorm
        m = spec.create(conv_impl=impl, bn_impl="flax")
        step = make_train_step(m, normalize=NORMALIZATIONS[spec.normalization], donate=True)
        state = TrainState.create(m, variables, tx, seed=0)  # (create copies: the step donates)
        lowered = step.jitted.lower(state, images, labels, mask, None)
        flops = (bench_models.step_flops(lowered, batch) or 0.0) * batch
        compiled = lowered.compile()
        defs, comps = _hlo_index(compiled.as_text())
        for _ in range(2):
            state, metrics = compiled(state, images, labels, mask, None)
        jax.block_until_ready(metrics)
        n = args.profile_steps
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            jax.profiler.start_trace(tmp)
            for _ in range(n):
                state, metrics = compiled(state, images, labels, mask, None)
            jax.block_until_ready((state, metrics))
            jax.profiler.stop_trace()
            step_ms[impl] = (time.perf_counter() - t) / n * 1e3
            pb = sorted(glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True))[-1]
            data = ProfileData.from_file(pb)
        kinds: collections.Counter = collections.Counter()
        for plane in data.planes:
            for line in plane.lines:
                if not line.name.startswith("tf_XLAEigen"):  # XLA:CPU's worker threads
                    continue
                for ev in line.events:
                    if "ThunkExecutor" in ev.name or ev.name.startswith("end:"):
                        continue
                    kinds[classify(ev.name, defs, comps, batch)] += ev.duration_ns / n / 1e6
        per_side[impl] = kinds
        del state, compiled
    with tempfile.TemporaryDirectory() as folder:
        torch = _torch_for_profile(args, spec.name, batch, Path(folder))
        if torch is not None:
            kinds = collections.Counter(torch.profile("train", "channels_last", args.profile_steps))
            step_ms["torch"] = kinds.pop("wall")
            per_side["torch"] = kinds
            if isinstance(torch, bc.JsonWorker):
                torch.close()
    sides = list(per_side)
    order = sorted(set().union(*per_side.values()),
                   key=lambda k: (not k.startswith("conv"), -max(per_side[s][k] for s in sides)))
    tot = {s: sum(per_side[s].values()) for s in sides}
    conv = {s: sum(v for k, v in per_side[s].items() if k.startswith("conv")) for s in sides}
    peak = max(bc.gemm_peak_gflops("fp32").values()) if flops else None

    def cells(values: dict[str, float | None]) -> list[str]:
        out = []
        for s in sides:
            v = values.get(s)
            out += ["—", ""] if v is None else [f"{v:.1f}", f"{100 * v / tot[s]:.0f} %"]
        return out

    rows = []
    for kind in order:
        if all(per_side[s][kind] < 0.05 for s in sides):
            continue
        rows.append([kind, *cells({s: per_side[s].get(kind) for s in sides})])
    rows.append(["**convolutions, all kinds**", *cells(conv)])
    rows.append(["**everything else (what is left)**", *cells({s: tot[s] - conv[s] for s in sides})])
    rows.append(["**sum of op time**", *cells(tot)])
    rows.append(["**wall time per step (under the profiler)**",
                 *[c for s in sides for c in (f"{step_ms[s]:.1f}", "")]])
    if flops and peak:
        rates = {s: flops / conv[s] / 1e6 for s in sides if conv[s]}
        rows.append([f"**conv rate: step FLOPs / conv time, GFLOP/s (% of the {peak:.0f} GFLOP/s "
                     "GEMM peak)**",
                     *[c for s in sides for c in ((f"{rates[s]:.0f}", f"{100 * rates[s] / peak:.0f} %")
                                                  if s in rates else ("—", ""))]])
        rows.append(["**whole step: FLOPs / wall time, % of GEMM peak**",
                     *[c for s in sides for c in (f"{flops / step_ms[s] / 1e6:.0f}",
                                                  f"{100 * flops / step_ms[s] / 1e6 / peak:.0f} %")]])
    return rows, {"step_ms": step_ms, "sides": sides, "flops": flops, "peak": peak}


# --------------------------------------------------------------------------- train-step A/B

STEP_VARIANTS = {  # name: (the model's conv_impl, bn_impl)
    "autodiff (before)": ("xla", "flax"),
    "fast conv VJP (default)": ("fast", "flax"),
    "fast BN": ("xla", "fast"),
    "fast conv VJP + fast BN": ("fast", "fast"),
}


def step_ab_rows(model: str, batch: int, args: argparse.Namespace) -> list[list[str]]:
    """The jitted train step with each STEP_VARIANTS setting and PyTorch's train step, timed in
    interleaved rounds in this one process (bench_models.py's setup: same weights, SGD)."""
    import bench_models as bm
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import torch
    import torch.nn.functional as F
    from jaxnets.converters.convert import state_dict_to_variables

    from jaxnets.models.api import abstract_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

    spec = get_spec(model)
    module = spec.create()
    mean, std = NORMALIZATIONS[spec.normalization]
    torch.manual_seed(0)
    ref = bm.torch_reference(spec.name)
    sd = {k: v.detach().cpu().numpy().copy() for k, v in ref.state_dict().items()}
    variables = state_dict_to_variables(sd, abstract_variables(spec, module), spec.keymap,
                                        model_name=spec.name)
    size = spec.input_size
    images_np, labels_np = bm.random_batch(spec, batch)
    images, labels = jnp.asarray(images_np), jnp.asarray(labels_np)
    mask = jnp.ones((batch,), bool)
    tx = optax.chain(optax.add_decayed_weights(bm.WEIGHT_DECAY), optax.sgd(bm.LR, momentum=bm.MOMENTUM))
    holders: dict[str, dict] = {}
    for name, (conv_impl, bn_impl) in STEP_VARIANTS.items():
        m = spec.create(conv_impl=conv_impl, bn_impl=bn_impl)
        step = make_train_step(m, normalize=(mean, std), donate=True)
        state = TrainState.create(m, jax.tree_util.tree_map(jnp.asarray, variables), tx, seed=0)
        compiled = step.jitted.lower(state, images, labels, mask, None).compile()
        holders[name] = {"c": compiled, "s": state}

    def jax_fn(h: dict) -> Callable[[], Any]:
        def run() -> Any:
            h["s"], metrics = h["c"](h["s"], images, labels, mask, None)
            return metrics
        return run

    fns: dict[str, Callable[[], Any]] = {k: jax_fn(h) for k, h in holders.items()}
    syncs: dict[str, Callable[[Any], Any]] = {
        k: (lambda m, h=h: jax.block_until_ready((m, h["s"]))) for k, h in holders.items()}
    if not args.no_torch:
        ref.train()
        opt = torch.optim.SGD(ref.parameters(), lr=bm.LR, momentum=bm.MOMENTUM,
                              weight_decay=bm.WEIGHT_DECAY)
        x_t = torch.from_numpy(np.ascontiguousarray(images_np.transpose(0, 3, 1, 2)))
        y_t = torch.from_numpy(labels_np.astype(np.int64))
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

        def torch_step() -> Any:
            out = ref(x_t.to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t))
            loss = F.cross_entropy(out, y_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        fns["PyTorch (eager, NCHW)"] = torch_step
        syncs["PyTorch (eager, NCHW)"] = lambda out: out.item()
    med, other = interleaved(fns, syncs, args.rounds, args.steps)
    base = med["autodiff (before)"]
    t_torch = med.get("PyTorch (eager, NCHW)")
    rows = []
    for name, t in med.items():
        rows.append([f"{model} ({size} px)", str(batch), name, f"{t * 1e3:.0f}",
                     f"{batch / t:,.1f}", bc.fmt_ratio(base / t),
                     "—" if t_torch is None else bc.fmt_ratio(t_torch / t),
                     f"{other:.2f}" if other is not None else "—"])
    return rows


STEP_HEADERS = ("model", "batch", "train step", "ms/step", "img/s", "vs autodiff",
                "vs PyTorch", "other procs, cores")
STEP_ALIGN = ("l", "r", "l", "r", "r", "r", "r", "r")


PROFILE_SIDES = {"xla": "jaxnets autodiff conv", "fast": "jaxnets fast conv VJP (default)",
                 "torch": "PyTorch channels_last eager"}


def profile_headers(sides: Sequence[str]) -> tuple[list[str], list[str]]:
    names = ["op kind"]
    for s in sides:
        names += [f"{PROFILE_SIDES[s]} ms/step", "share"]
    return names, ["l"] + ["r"] * (2 * len(sides))


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default="resnet20", choices=sorted(SHAPES))
    p.add_argument("--batch", type=int, default=None, help="default: 128 (resnet20), 32 (resnet18)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median)")
    p.add_argument("--steps", type=int, default=3, help="calls per variant per round")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--torch-python", default=None,
                   help="--profile: PyTorch's side in a worker under this Python (default: this "
                        "process where torch is installed, else .venv/bin/python)")
    p.add_argument("--profile", default=None, metavar="MODEL",
                   help="profile MODEL's jitted train step instead (autodiff vs fast conv VJP)")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--step-ab", default=None, metavar="MODELS",
                   help="comma-separated models: train step per variant + PyTorch, interleaved")
    p.add_argument("--record", action="store_true", help="append the table to --doc")
    p.add_argument("--doc", type=Path, default=bc.DEFAULT_DOC)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = bc.load_average()
    threads = args.threads_in_force = bc.pin_threads(args.threads)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from jaxnets.runtime import configure_xla_flags

    configure_xla_flags()  # as the CLI runs (oneDNN convolutions on jaxlib >= 0.12, x86)
    if args.profile and not args.step_ab:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                                   + " --xla_cpu_enable_xprof_traceme=true").strip()
    else:
        bc.set_torch_threads(threads)
    if args.step_ab:
        rows = []
        models = [m.strip() for m in args.step_ab.split(",") if m.strip()]
        for model in models:
            from jaxnets.models.registry import get_spec

            size = get_spec(model).input_size
            batch = args.batch or (128 if size <= 32 else 32)
            print(f"… {model} batch {batch}", file=sys.stderr, flush=True)
            rows += step_ab_rows(model, batch, args)
        headers, align = STEP_HEADERS, STEP_ALIGN
        title = f"bench_ops.py — train step A/B, interleaved ({', '.join(models)})"
        notes = [f"One process; each round runs every variant {args.steps} step(s), median of "
                 f"{args.rounds} rounds, so load hits all variants alike. Variants are the "
                 "model's `conv_impl` / `bn_impl` fields (`spec.create(...)`); 'autodiff "
                 "(before)' = plain autodiff convs + nn.BatchNorm. Same weights (the PyTorch "
                 "reference's init), SGD lr 0.1 momentum 0.9 wd 5e-4; 'vs PyTorch' > 1 means "
                 "jaxnets is faster."]
    elif args.profile:
        model = args.profile
        batch = args.batch or DEFAULT_BATCH.get(model, 32)
        rows, info = profile_rows(model, batch, args)
        headers, align = profile_headers(info["sides"])
        title = f"bench_ops.py — where the train step's time goes ({model}, batch {batch})"
        notes = [f"XLA:CPU thunk events of {args.profile_steps} profiled `make_train_step` "
                 "steps (jax.profiler, `--xla_cpu_enable_xprof_traceme`), summed over XLA's "
                 "worker threads, per step; classified from the optimised HLO ('(oneDNN)': the "
                 "oneDNN custom call of jaxlib >= 0.12 with jaxnets' flags). 'autodiff' = "
                 "`conv_impl=\"xla\"`, 'fast conv VJP' = `conv_impl=\"fast\"` (CPU's default, "
                 "`layers.conv_general_dilated`); nn.BatchNorm in both. PyTorch: `torch.profiler` "
                 "self CPU time of each aten op (same batch, SGD, channels_last eager: the "
                 "fastest eager form; `torch.compile`'s fused kernels do not map to these kinds), "
                 "grouped by `bench_torch.torch_op_kind`. The conv rate divides the train step's "
                 "FLOPs (XLA cost analysis before optimisation; nearly all of them are "
                 "convolutions) by the conv time; the GEMM peak is the better of jax's and "
                 "PyTorch's n=2048 matmul here (`bench_common.gemm_peak_gflops`)."]
    else:
        model = args.shapes
        batch = args.batch or DEFAULT_BATCH[model]
        rows = op_rows(model, batch, args)
        headers, align = OP_HEADERS, OP_ALIGN
        title = f"bench_ops.py — conv / BN ops at {model} shapes, batch {batch}"
        notes = [f"Median of {args.rounds} interleaved rounds × {args.steps} calls. jax: one "
                 "jitted op, NHWC/HWIO fp32; PyTorch: NCHW fp32 eager (`F.conv2d`, "
                 "`aten.convolution_backward`). 'jax speed vs PyTorch' > 1 means jax is faster. "
                 "'wgrad chunks of m': the filter gradient as a sum of per-chunk filter "
                 "gradients (m examples each); '← default' marks the size "
                 "`layers.filter_grad_chunks` picks."]
    load_after = bc.load_average()
    import jax

    header = bc.header_lines(threads, load_before=load_before, load_after=load_after,
                             extra={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "") or "(unset)",
                                    "JAX": jax.__version__})
    print("\n".join(header) + "\n\n" + bc.markdown_table(headers, rows, align) + "\n\n"
          + "\n".join(notes))
    if args.record:
        path = bc.append_table(title, headers, rows, align=align, header=header, notes=notes,
                               path=args.doc)
        print(f"recorded in {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
