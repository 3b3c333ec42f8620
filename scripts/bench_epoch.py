"""Full training epochs: jaxnets' loader + jitted step vs a PyTorch reference loop.

Used by ``bench_models.py --epoch-data DIR`` (an image folder with ``train/<class>/*.jpg``, e.g.
the JPEG CIFAR-10). Both sides train the same model from the same weights with the same settings
(batch, SGD lr 0.1 momentum 0.9 weight decay 5e-4, flip + crop augmentation, shuffling) over the
same decoded uint8 images:

- jaxnets: ``jaxnets.data.pipeline.train_loader`` (seeded sampler, batch augmentation on the
  prefetch thread) feeding ``make_train_step`` (donated state, BN train mode), one host sync at
  the end of the epoch — what ``jaxnets train`` runs.
- PyTorch: the loop of the original repositories — shuffle, augment the batch (the same numpy
  function, so both sides do identical host work), ``torch.from_numpy`` → NCHW float →
  normalise, ``zero_grad / backward / step``; ``loss.item()`` at the end only.

``--epoch-devices 1,4`` adds jaxnets rows on N fake CPU devices (a ``("data",)`` mesh over the
same cores): the cost of the sharded step where the devices share one machine's cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass
class EpochRow:
    model: str
    side: str  # "jaxnets" | "PyTorch"
    devices: int
    images: int
    seconds: float
    compile_s: float | None

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def _source(data_dir: str, limit: int | None) -> Any:
    from jaxnets.data.spec import open_source

    return open_source(f"imagefolder:{data_dir}", "train", limit=limit)


def jaxnets_epoch(name: str, data_dir: str, batch: int, limit: int | None, devices: int,
                  seed: int = 0) -> EpochRow:
    import jax
    import optax

    from jaxnets.data.pipeline import train_loader
    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec
    from jaxnets.train.parallel import make_mesh
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

    spec = get_spec(name)
    module = spec.create()
    variables = init_variables(spec, module, seed=seed)
    source = _source(data_dir, limit)
    loader = train_loader(spec, source, batch, seed=seed)
    mesh = make_mesh(devices) if devices > 1 else None
    tx = optax.chain(optax.add_decayed_weights(5e-4), optax.sgd(0.1, momentum=0.9))
    state = TrainState.create(module, variables, tx, seed=seed)
    step = make_train_step(module, normalize=NORMALIZATIONS[spec.normalization], mesh=mesh)
    # Compile (and warm the data pipeline) on the first batch of a throw-away epoch.
    t0 = time.perf_counter()
    first = next(iter(loader.epoch(1)))
    state, metrics = step(state, first.images, first.labels, first.mask)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t0
    seen = 0
    t0 = time.perf_counter()
    for b in loader.epoch(0):
        state, metrics = step(state, b.images, b.labels, b.mask)
        seen += len(b.labels)
    jax.block_until_ready((state, metrics))
    return EpochRow(spec.name, "jaxnets", devices, seen, time.perf_counter() - t0, compile_s)


def torch_epoch(name: str, data_dir: str, batch: int, limit: int | None, seed: int = 0) -> EpochRow:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from bench_models import torch_reference

    from jaxnets.data.transforms import cifar_augment
    from jaxnets.models.registry import NORMALIZATIONS, get_spec

    spec = get_spec(name)
    torch.manual_seed(seed)
    model = torch_reference(spec.name)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    mean, std = NORMALIZATIONS[spec.normalization]
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    source = _source(data_dir, limit)
    labels_all = np.asarray(source.labels, np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(source))
    seen = 0
    loss = torch.zeros(())
    t0 = time.perf_counter()
    for start in range(0, len(order) - batch + 1, batch):  # drop_last, as jaxnets' train loader
        idx = order[start:start + batch]
        images = cifar_augment(source.get_batch(idx), rng)
        x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        x = x.to(torch.float32).div_(255.0).sub_(mean_t).div_(std_t)
        y = torch.from_numpy(labels_all[idx])
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(idx)
    loss.item()
    return EpochRow(spec.name, "PyTorch", 1, seen, time.perf_counter() - t0, None)


HEADERS = ("model", "side", "devices", "images", "epoch s", "img/s", "vs PyTorch", "compile s")
ALIGN = ("l", "l", "r", "r", "r", "r", "r", "r")


def table_rows(rows: list[EpochRow]) -> list[list[str]]:
    torch_rate = {r.model: r.rate for r in rows if r.side == "PyTorch"}
    out = []
    for r in rows:
        ref = torch_rate.get(r.model)
        ratio = f"{r.rate / ref:.2f}×" if ref and r.side == "jaxnets" else "—"
        out.append([r.model, r.side, str(r.devices), str(r.images), f"{r.seconds:.1f}",
                    f"{r.rate:.0f}", ratio, "—" if r.compile_s is None else f"{r.compile_s:.1f}"])
    return out
