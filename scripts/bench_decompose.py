#!/usr/bin/env python
"""Decomposing the Deep: one fine-tuning epoch and one validation pass, jaxnets vs PyTorch.

Same machine, same process, same thread count (affinity pinned before either library loads),
same weights (``resnet20-12fca82f.th``, or a random init when it is absent), same index file,
the same uint8 batches (the jaxnets loaders: flip + pad-4 crop for training, batch 64; eval
batch 128) and the same settings: Adam lr 1e-4, cross-entropy over the decomposed logits, BN in
train mode, every parameter trainable.

- jaxnets: ``make_train_step(param_transform=apply_head_mask)`` (the head mask of
  ``jaxnets.methods.decompose.head``), ``jaxnets.train.evaluate.evaluate`` for validation;
- PyTorch: the reference ResNet-20 of ``tests/reference`` whose ``linear`` weight is multiplied
  by the (C, D) 0/1 mask in the forward pass (the masked-dense form of spec §3.3),
  ``zero_grad / backward / step`` and ``inference_mode`` evaluation.

Both walk the *same* loaders, so data decoding/augmentation is in both timings. jaxnets'
compile time is measured on a warm-up step and reported separately (not in the epoch time).

Usage::

    python scripts/bench_decompose.py --limit 3200 --eval-limit 2000          # a subset
    python scripts/bench_decompose.py --data imagefolder:DIR --record          # full epoch → docs
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import bench_common as bc  # also puts the package and tests/reference on sys.path

ROOT, SHARED = bc.ROOT, bc.SHARED
WEIGHTS = SHARED / "weights" / "resnet20-12fca82f.th"
INDICES = SHARED / "decomposing-the-deep" / "resnet20_cifar-10_indices.json"
JPEG = ROOT / ".cache" / "test-data" / "cifar10-jpeg"


def default_data() -> str:
    if (JPEG / "train").is_dir():
        return f"imagefolder:{JPEG}"
    return f"cifar10:{SHARED / 'cifar10-exact-subset'}"


def torch_side(state: dict, table: Any, lr: float, mean: Any, std: Any) -> tuple[Any, Any, Any]:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from reference.torch_cifar_resnet import resnet20

    model = resnet20()
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)
    mask = torch.zeros(10, 64)
    mask[torch.arange(10)[:, None], torch.as_tensor(np.asarray(table), dtype=torch.long)] = 1.0
    linear = model.linear
    # masked-dense decomposed head: W ⊙ M in the forward, so masked entries get zero gradient
    linear.forward = lambda f: F.linear(f, linear.weight * mask, linear.bias)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def prep(images: Any) -> Any:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255)
        return (x - m) / s

    def train_step(images: Any, labels: Any) -> float:
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(prep(images)), torch.from_numpy(np.asarray(labels, np.int64)))
        loss.backward()
        opt.step()
        return float(loss.detach())

    def eval_batch(images: Any, labels: Any, valid: Any) -> int:
        model.eval()
        with torch.inference_mode():
            pred = model(prep(images)).argmax(1).numpy()
        return int(((pred == labels) & valid).sum())

    return model, train_step, eval_batch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="data spec (default: the JPEG CIFAR-10 cache, else the exact subset)")
    ap.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--eval-limit", type=int, default=None, help="validate on the first N images only")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args(argv)
    threads = bc.pin_threads(args.threads)
    bc.set_torch_threads(threads)
    load_before = bc.load_average()

    import jax
    import optax
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

    from jaxnets.data.pipeline import eval_loader, train_loader
    from jaxnets.data.spec import open_source
    from jaxnets.methods.decompose.head import apply_head_mask, mask_tree
    from jaxnets.methods.decompose.indices import load_indices
    from jaxnets.methods.decompose.runners import method_normalization
    from jaxnets.models.api import load_weights, resolve
    from jaxnets.train.evaluate import evaluate
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

    data = args.data or default_data()
    spec = resolve("resnet20")
    module = spec.create()
    variables = load_weights(spec, module, WEIGHTS)
    state_dict = extract_state_dict(load_torch_file(WEIGHTS))
    table = load_indices(INDICES, num_classes=10, num_features=64)
    mean, std = method_normalization(spec, None)
    train_src = open_source(data, "train", limit=args.limit)
    test_src = open_source(data, "test", limit=args.eval_limit)
    loader = train_loader(spec, train_src, 64, seed=0, augment=True)
    ev = eval_loader(spec, test_src, 128)
    lr = 1e-4

    # ---- jaxnets (the step donates its state: every run starts from a fresh copy)
    def fresh() -> dict:
        return jax.tree_util.tree_map(lambda a: a.copy(), variables)

    mask = mask_tree(variables["params"], spec.head, table)
    # one optimizer object for both states: the optimizer is part of the step's static
    # signature, so a second optax.adam(...) would recompile inside the timed epoch
    tx = optax.adam(lr)
    state = TrainState.create(module, fresh(), tx, seed=0)
    step = make_train_step(module, normalize=(mean, std), param_transform=apply_head_mask)
    warm = next(iter(loader.epoch(0)))
    t0 = time.perf_counter()
    st, met = step(state, warm.images, warm.labels, warm.mask, mask)
    jax.block_until_ready(met)
    compile_s = time.perf_counter() - t0
    state = TrainState.create(module, fresh(), tx, seed=0)
    t0 = time.perf_counter()
    for batch in loader.epoch(0):
        state, met = step(state, batch.images, batch.labels, batch.mask, mask)
    jax.block_until_ready(state.params)
    jax_train = time.perf_counter() - t0
    evaluate(module, state.variables, ev, mean, std, 10, param_transform=apply_head_mask,
             transform_args=mask)  # compile
    t0 = time.perf_counter()
    r = evaluate(module, state.variables, ev, mean, std, 10, param_transform=apply_head_mask,
                 transform_args=mask)
    jax_eval = time.perf_counter() - t0
    jax_top1 = r.top1
    del state, st

    # ---- PyTorch
    _, t_step, t_eval = torch_side(state_dict, table, lr, mean, std)
    t_step(warm.images, warm.labels)  # warm-up (allocator), then a fresh model
    _, t_step, t_eval = torch_side(state_dict, table, lr, mean, std)
    t0 = time.perf_counter()
    for batch in loader.epoch(0):
        t_step(batch.images, batch.labels)
    torch_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    correct = n = 0
    for batch in ev.epoch(0):
        correct += t_eval(batch.images, batch.labels, batch.mask)
        n += int(batch.mask.sum())
    torch_eval = time.perf_counter() - t0
    load_after = bc.load_average()

    n_train = loader.steps_per_epoch * 64
    work_train = f"resnet20 k=5, {loader.steps_per_epoch} steps × 64 ({data.split(':')[0]})"
    work_eval = f"resnet20 k=5, {len(test_src)} images, batch 128"
    rows = [
        bc.MethodRow("decompose", "finetune epoch", work_train, jax_train, torch_train,
                     notes=f"{n_train / jax_train:.0f} vs {n_train / torch_train:.0f} img/s; "
                           f"jaxnets compile {compile_s:.1f} s excluded"),
        bc.MethodRow("decompose", "validation pass", work_eval, jax_eval, torch_eval,
                     notes=f"top-1 after the epoch: jaxnets {100 * jax_top1:.2f} %, "
                           f"PyTorch {100 * correct / max(n, 1):.2f} %"),
    ]
    print(bc.markdown_table(bc.METHOD_HEADERS, [row.cells() for row in rows], align=bc.METHOD_ALIGN))
    header = bc.header_lines(threads, argv=sys.argv if argv is None else ["scripts/bench_decompose.py", *argv],
                             load_before=load_before, load_after=load_after)
    print("\n".join(header))
    if args.record:
        bc.append_method_table("Decomposing the Deep: fine-tuning epoch and validation", rows, header=header,
                               notes=["Both sides walk the same jaxnets loaders (decode + flip/crop "
                                      "included in both timings); the machine was shared."])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
