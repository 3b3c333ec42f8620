"""Per-epoch model selection and early stopping of direct reuse (specs/seam.md §2.7).

The rule is replicated as written in the original code, oddities included (pitfall 7):
sparsity compared at ``floor(1000·r)`` resolution, ties broken by accuracy, and an early-stop
counter that counts below-threshold epochs since the last sparsity improvement (never reset when
accuracy recovers). The fallback ``bak`` is the snapshot with the largest ``acc − r``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


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
    log: list[Decision] = field(default_factory=list)

    def update(self, epoch: int, acc: float, r: float) -> Decision:
        record_bak = (acc - r) > self.bak_value
        if record_bak:
            self.bak_value, self.bak_epoch = acc - r, epoch
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
