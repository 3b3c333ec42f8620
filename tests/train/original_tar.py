"""Snapshots in the original train.py's format, written by torch (specs/hyperplane-arrangements.md §4.2).

``snapshot.save_snapshot`` of the original: ``torch.save({epoch, top1_acc, top5_acc,
model_state_dict, optimizer_state_dict, scheduler_state_dict}, '<arch>_<e>.tar')`` — torch 1.4
wrote the legacy (non-zip) format, newer torch the zip one; both are produced here. The optimiser
state is a real ``torch.optim`` state after a few steps on random gradients, over parameters built
from a jaxnets model's state_dict (the parameters in state_dict order, buffers left out: PyTorch's
``net.parameters()`` order).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class TorchTraining:
    """The torch side of a snapshot: the parameters (with their names) and the optimiser."""

    names: list[str]
    params: list[Any]  # torch.nn.Parameter, in net.parameters() order
    optimizer: Any
    scheduler: Any
    model_state: OrderedDict


def torch_training(state_dict: dict[str, np.ndarray], optimizer: str = "sgd", *, lr: float = 0.05,
                   momentum: float = 0.9, weight_decay: float = 1e-4, steps: int = 2, seed: int = 0,
                   step_lr: bool = True) -> TorchTraining:
    """``steps`` optimiser steps on random gradients from the weights of ``state_dict`` (SGD with a
    StepLR(1, 0.5) stepped once when ``step_lr``, as after the original's first epoch; or Adam)."""
    import torch

    torch.manual_seed(seed)
    names = [k for k in state_dict if not k.endswith(BUFFERS)]
    params = [torch.nn.Parameter(torch.from_numpy(np.array(state_dict[k], np.float32))) for k in names]
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5) if step_lr else None
    else:
        opt, scheduler = torch.optim.Adam(params, lr=lr), None
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    if scheduler is not None:
        scheduler.step()
    trained = dict(zip(names, params, strict=True))
    model_state = OrderedDict((k, trained[k].detach().clone() if k in trained else torch.from_numpy(np.array(v)))
                              for k, v in state_dict.items())
    return TorchTraining(names, params, opt, scheduler, model_state)


def write_original_tar(path: Path, training: TorchTraining, *, epoch: Any, legacy: bool = True,
                       **overrides: Any) -> Path:
    """``training`` saved as the original's ``<arch>_<epoch>.tar`` (``overrides`` replace entries)."""
    import torch

    snapshot = {"epoch": epoch, "top1_acc": 50.0, "top5_acc": 90.0, "model_state_dict": training.model_state,
                "optimizer_state_dict": training.optimizer.state_dict(),
                "scheduler_state_dict": training.scheduler.state_dict() if training.scheduler is not None else {},
                **overrides}
    torch.save(snapshot, path, _use_new_zipfile_serialization=not legacy)
    return path
