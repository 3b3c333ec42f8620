#!/usr/bin/env python
"""The PyTorch side of ``bench_models.py``: the reference module in its fastest forms.

Variants, each on its own copy of the same initial weights:

- ``eager``: NCHW, eager — what the original research code runs;
- ``channels_last``: model and input in ``torch.channels_last`` (NHWC in memory), eager;
- ``compile``: ``torch.compile`` (inductor) of the channels_last model.

``precision="bf16"`` wraps every forward in ``torch.autocast`` (bf16 compute, fp32 master
weights: PyTorch AMP); on CUDA, steps are synchronised with ``torch.cuda.synchronize``.

Where torch is not installed in the interpreter that runs ``bench_models.py`` (the Python 3.12
venv), this file runs as a **worker process** under another Python that has torch
(``--torch-python``): ``bench_models.py`` writes the batch to a folder, the worker builds the
reference with the same seed and writes its ``state_dict`` there (jaxnets converts it, so both
sides hold the same weights), and then answers timing requests one repeat at a time, so the
two processes' repeats interleave (A/B) exactly as in-process ones do. Protocol: one JSON
request per line on stdin, one answer per line on stdout prefixed with ``BENCH `` (``bench_common.JsonWorker``).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bench_common as bc  # also puts the package and tests/reference on sys.path

VARIANTS = ("eager", "channels_last", "compile")
LR, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 5e-4


def torch_reference(name: str) -> Any:
    """The PyTorch reference module (from tests/reference) with the registry's architecture."""
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


# PyTorch op names → the kinds bench_ops.py's profile reports (first match wins)
TORCH_OP_KINDS = (
    ("conv: backward (input + filter gradient)", ("convolution_backward",)),
    ("conv: forward", ("convolution", "conv2d")),
    ("BatchNorm (statistics, apply, backward)", ("batch_norm",)),
    ("classifier (matmul)", ("addmm", "aten::mm", "matmul", "linear")),
    ("pooling", ("pool",)),
    ("optimizer update (SGD, foreach)", ("_foreach", "SGD")),
    ("layout copies", ("copy_", "contiguous", "clone", "aten::to", "_to_copy")),
    ("elementwise (ReLU, adds, loss, normalisation)",
     ("relu", "threshold", "add", "mul", "div", "sub", "softmax", "nll", "cross_entropy",
      "sum", "mean", "fill_", "zero_")),
)


def torch_op_kind(name: str) -> str:
    for kind, needles in TORCH_OP_KINDS:
        if any(needle in name for needle in needles):
            return kind
    return "other (framework, autograd, allocation)"


class TorchBench:
    """The reference module of ``name`` built with ``seed``, and its eval/train steps per
    variant on one fixed batch (uint8 NHWC ``images``, int ``labels``)."""

    def __init__(self, name: str, images: Any, labels: Any, *, mean: Sequence[float],
                 std: Sequence[float], seed: int = 0, precision: str = "fp32",
                 device: str = "cpu") -> None:
        import numpy as np
        import torch

        self.torch = torch
        self.device = torch.device("cuda" if device == "gpu" else device)
        self.precision = precision
        torch.manual_seed(seed)
        self.reference = torch_reference(name).to(self.device)
        self.initial = copy.deepcopy(self.reference.state_dict())
        x = torch.from_numpy(np.ascontiguousarray(np.asarray(images).transpose(0, 3, 1, 2)))
        self.images = x.to(self.device)
        self.labels = torch.from_numpy(np.asarray(labels).astype(np.int64)).to(self.device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._models: dict[tuple[str, str], Any] = {}
        self._optimizers: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ pieces
    def state_dict(self) -> dict[str, Any]:
        """The initial weights as numpy arrays (copies: JAX may alias host memory)."""
        return {k: v.detach().cpu().numpy().copy() for k, v in self.initial.items()}

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def _autocast(self) -> Any:
        return self.torch.autocast(self.device.type, dtype=self.torch.bfloat16,
                                   enabled=self.precision == "bf16")

    def _input(self, variant: str) -> Any:
        # torchvision's order (ToTensor then Normalize), as jaxnets normalises inside its jit
        x = self.images.to(self.torch.float32).div_(255.0).sub_(self.mean).div_(self.std)
        return x if variant == "eager" else x.contiguous(memory_format=self.torch.channels_last)

    def _model(self, mode: str, variant: str) -> Any:
        key = (mode, variant)
        if key not in self._models:
            model = copy.deepcopy(self.reference)
            model.load_state_dict(self.initial)
            model.train(mode == "train")
            if variant != "eager":
                model = model.to(memory_format=self.torch.channels_last)
            self._optimizers[key] = self.torch.optim.SGD(
                model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
            if variant == "compile":
                model = self.torch.compile(model)
            self._models[key] = model
        return self._models[key]

    def step(self, mode: str, variant: str) -> Callable[[], Any]:
        """One eval (inference-mode forward) or train (zero_grad/backward/SGD) step."""
        if variant not in VARIANTS:
            raise SystemExit(f"unknown PyTorch variant {variant!r} (choose from {', '.join(VARIANTS)})")
        torch = self.torch
        model = self._model(mode, variant)
        if mode == "eval":
            def eval_step() -> Any:
                with torch.inference_mode(), self._autocast():
                    return model(self._input(variant)).float()

            return eval_step
        opt = self._optimizers[(mode, variant)]
        functional = torch.nn.functional

        def train_step() -> Any:
            with self._autocast():
                loss = functional.cross_entropy(model(self._input(variant)).float(), self.labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        return train_step

    def sync(self, mode: str) -> Callable[[Any], Any]:
        if self.device.type == "cuda":
            return lambda _out: self.torch.cuda.synchronize()
        # CPU ops are synchronous; .item() also waits for the loss
        return (lambda out: out.item()) if mode == "train" else (lambda out: out)

    def side(self, mode: str, variant: str) -> bc.LocalSide:
        return bc.LocalSide(f"torch:{variant}", self.step(mode, variant), self.sync(mode))

    def parity_logits(self) -> Any:
        """Eval logits of the initial weights in fp32 at the highest matmul precision (no TF32),
        the reference that jaxnets' logits are compared with."""
        torch = self.torch
        model = copy.deepcopy(self.reference)
        model.load_state_dict(self.initial)
        model.eval()
        saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.inference_mode():
                return model(self._input("eager")).float().cpu().numpy()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

    def final_loss(self, variant: str) -> float:
        return float(self.step("train", variant)().item())

    def profile(self, mode: str, variant: str, steps: int = 3) -> dict[str, float]:
        """Milliseconds per step by op kind (:func:`torch_op_kind`): ``torch.profiler`` self CPU
        time of every aten op over ``steps`` steps after two warm-up steps; ``"wall"`` is the
        wall time per step under the profiler."""
        import collections

        step, sync = self.step(mode, variant), self.sync(mode)
        for _ in range(2):
            sync(step())
        profiler = self.torch.profiler
        with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            for _ in range(steps):
                sync(step())
            wall = (time.perf_counter() - t) / steps * 1e3
        kinds: collections.Counter = collections.Counter()
        for event in prof.key_averages():
            kinds[torch_op_kind(event.key)] += event.self_cpu_time_total / steps / 1e3  # µs → ms
        return {**kinds, "wall": wall}


# --------------------------------------------------------------------------- worker process


class TorchWorker(bc.JsonWorker):
    """This file run as a worker under ``python`` (an interpreter with torch), pinned to the
    same number of threads; requests and answers as JSON lines (``bc.serve_requests``)."""

    label = "PyTorch worker"

    def __init__(self, python: str, threads: int, folder: Path) -> None:
        self.folder = folder
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(bc.ROOT), str(bc.ROOT / "tests")])}
        super().__init__([python, str(Path(__file__).resolve()), "--worker", "--threads",
                          str(threads)], env=env)

    def setup(self, name: str, images: Any, labels: Any, *, mean: Sequence[float],
              std: Sequence[float], seed: int, precision: str, device: str) -> dict[str, Any]:
        """Build the reference there on this batch; returns its initial state_dict (numpy)."""
        import numpy as np

        batch, weights = self.folder / "batch.npz", self.folder / "state_dict.npz"
        np.savez(batch, images=np.asarray(images), labels=np.asarray(labels))
        self.ask("setup", name=name, batch=str(batch), weights=str(weights), mean=list(mean),
                 std=list(std), seed=seed, precision=precision, device=device)
        with np.load(weights) as data:
            return {k: data[k].copy() for k in data.files}

    def side(self, mode: str, variant: str) -> bc.RemoteSide:
        return bc.RemoteSide(self, f"torch:{variant}", mode=mode, variant=variant)

    def parity_logits(self) -> Any:
        import numpy as np

        path = self.folder / "logits.npy"
        self.ask("parity_logits", path=str(path))
        return np.load(path)

    def final_loss(self, variant: str) -> float:
        return self.ask("final_loss", variant=variant)["loss"]

    def profile(self, mode: str, variant: str, steps: int = 3) -> dict[str, float]:
        return self.ask("profile", mode=mode, variant=variant, steps=steps)["kinds"]


def _serve(threads: int) -> int:
    """The worker: a :class:`TorchBench` per ``setup``, its sides timed on request."""
    import numpy as np

    bc.set_torch_threads(threads)
    bench: TorchBench | None = None
    sides: dict[tuple[str, str], bc.LocalSide] = {}

    def handle(op: str, request: dict) -> dict:
        nonlocal bench
        if op == "setup":
            with np.load(request["batch"]) as data:
                images, labels = data["images"], data["labels"]
            bench = TorchBench(request["name"], images, labels, mean=request["mean"],
                               std=request["std"], seed=request["seed"],
                               precision=request["precision"], device=request["device"])
            sides.clear()
            np.savez(request["weights"], **bench.state_dict())
            return {"ok": True}
        if bench is None:
            raise RuntimeError(f"{op!r} before 'setup'")
        if op in ("warmup", "repeat"):
            key = (request["mode"], request["variant"])
            if key not in sides:
                sides[key] = bench.side(*key)
            if op == "warmup":
                return {"last": sides[key].warmup(request["steps"])}
            seconds, other = sides[key].repeat(request["steps"])
            return {"seconds": seconds, "other": other}
        if op == "parity_logits":
            np.save(request["path"], bench.parity_logits())
            return {"ok": True}
        if op == "final_loss":
            return {"loss": bench.final_loss(request["variant"])}
        if op == "profile":
            return {"kinds": bench.profile(request["mode"], request["variant"], request["steps"])}
        raise RuntimeError(f"unknown request {op!r}")

    return bc.serve_requests(handle)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="PyTorch worker of bench_models.py (see the module doc)")
    p.add_argument("--worker", action="store_true", help="serve requests on stdin")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if not args.worker:
        p.error("run bench_models.py; this file is its PyTorch side (--worker)")
    threads = bc.pin_threads(args.threads)  # before torch is imported
    started = time.perf_counter()
    code = _serve(threads)
    print(f"PyTorch worker done after {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
