"""Per-epoch model selection and early stopping of direct reuse (specs/seam.md §2.7).

The rule is replicated as written in the original code, oddities included (pitfall 7):
sparsity compared at ``floor(1000·r)`` resolution, ties broken by accuracy, and an early-stop
counter that counts below-threshold epochs since the last sparsity improvement (never reset when
accuracy recovers). The fallback ``bak`` is the snapshot with the largest ``acc − r``.

A :class:`Selector` goes into a checkpoint as arrays (:meth:`Selector.to_arrays`,
:meth:`Selector.from_arrays`): a resumed run continues the rule exactly where it stopped. The
floats keep their float64 bits (JAX without x64 would round them to float32 and change the ties
the rule compares).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_FLOATS = ("best_r", "best_acc", "bak_value", "bak_acc", "bak_r")
_EPOCHS = ("best_epoch", "bak_epoch")  # -1 stands for None (no snapshot yet)


def float_bits(value: float) -> np.ndarray:
    """A Python float as its float64 bits in two uint32 (exact through jit and checkpoints)."""
    return np.array([value], np.float64).view(np.uint32)


def bits_float(bits: Any) -> float:
    return float(np.ascontiguousarray(np.asarray(bits), np.uint32).view(np.float64)[0])


@dataclass
class Decision:
    """What one epoch's evaluation did."""

    epoch: int
    event: str  # "best" | "best-reset" | "skip" | "below" | "before-threshold"
    record_best: bool
    record_bak: bool
    stop: bool


@dataclass
class Selector:
    acc_pre: float
    early_stop: int = -1  # -1: never
    best_r: float = 1.0
    best_acc: float = 0.0
    best_epoch: int | None = None
    enabled: bool = False
    counter: int = 0
    bak_value: float = -math.inf
    bak_epoch: int | None = None
    bak_acc: float = math.nan  # accuracy and retention of the fallback snapshot
    bak_r: float = math.nan
    log: list[Decision] = field(default_factory=list)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The rule's numbers (not ``acc_pre``/``early_stop``, which are settings, nor the log)."""
        out = {name: float_bits(getattr(self, name)) for name in _FLOATS}
        out.update({name: np.asarray(-1 if getattr(self, name) is None else getattr(self, name), np.int32)
                    for name in _EPOCHS})
        out["counter"] = np.asarray(self.counter, np.int32)
        out["enabled"] = np.asarray(self.enabled, np.bool_)
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any], acc_pre: float, early_stop: int = -1) -> Selector:
        """The selector :meth:`to_arrays` stored (host or device arrays)."""
        epochs = {name: int(arrays[name]) for name in _EPOCHS}
        return cls(acc_pre, early_stop, counter=int(arrays["counter"]), enabled=bool(arrays["enabled"]),
                   **{name: bits_float(arrays[name]) for name in _FLOATS},
                   **{name: (None if e < 0 else e) for name, e in epochs.items()})

    def update(self, epoch: int, acc: float, r: float) -> Decision:
        record_bak = (acc - r) > self.bak_value
        if record_bak:
            self.bak_value, self.bak_epoch, self.bak_acc, self.bak_r = acc - r, epoch, acc, r
        record_best, stop = False, False
        if acc >= self.acc_pre:
            self.enabled = True
            if math.floor(1000 * r) < math.floor(1000 * self.best_r):
                self.counter = 0
                record_best, event = True, "best-reset"
            elif r > self.best_r or acc <= self.best_acc:
                event = "skip"
            else:
                record_best, event = True, "best"
        elif self.enabled:
            self.counter += 1
            event = "below"
            stop = self.counter == self.early_stop
        else:
            event = "before-threshold"
        if record_best:
            self.best_r, self.best_acc, self.best_epoch = r, acc, epoch
        decision = Decision(epoch, event, record_best, record_bak, stop)
        self.log.append(decision)
        return decision

    @property
    def chosen_epoch(self) -> int | None:
        """The returned snapshot: the best one, else the fallback."""
        return self.best_epoch if self.best_epoch is not None else self.bak_epoch

    @property
    def used_fallback(self) -> bool:
        return self.best_epoch is None

    @property
    def chosen(self) -> tuple[int | None, float, float]:
        """``(epoch, acc, r)`` of the returned snapshot."""
        if self.used_fallback:
            return self.bak_epoch, self.bak_acc, self.bak_r
        return self.best_epoch, self.best_acc, self.best_r
