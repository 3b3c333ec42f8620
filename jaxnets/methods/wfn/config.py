"""Weight Fixing Networks' settings: the one place for their defaults and checks (specs/weight-fixing-networks.md §2;
no JAX import, so the CLI can show them at start-up)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from jaxnets.errors import ConfigError, JaxnetsError
from jaxnets.methods.wfn.candidates import ZERO_DISTANCE
from jaxnets.methods.wfn.clustering import CALCULATION_TYPES, check_percentages
from jaxnets.precision import check_precision

DEFAULT_PERCENTAGES = (0.3, 0.6, 0.8, 0.9, 0.95, 0.975, 0.99, 0.9975, 0.999, 1.0)
OPTIMIZERS = ("adam", "sgd")
DISTANCE_SCHEDULES = ("linear", "constant")

# Named protocols: the fields they set (under the caller's explicit values). "jaxnets" is the
# library default; "original-cifar" is the original's CIFAR-10 training (spec §2.6): crop + flip
# always on, 45k/5k train/validation split (seeded here, unseeded there), BN γ/β quantised as in
# every launch script of the authors (--bn_inc 1). Its other settings are the defaults already.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "jaxnets": {},
    "original-cifar": {"augment": True, "val_split": 5000, "bn_inc": True},
}


def protocol_settings(name: str) -> dict[str, Any]:
    """The fields protocol ``name`` sets (a one-line ConfigError for an unknown name)."""
    if name not in PROTOCOLS:
        raise ConfigError("protocol", f"'{name}' is unknown; use one of {', '.join(PROTOCOLS)}")
    return dict(PROTOCOLS[name])


def parse_percentages(value: Any) -> tuple[float, ...]:
    """"0.3,0.6,1.0", "0.3 0.6 1.0" or a sequence → checked floats."""
    if isinstance(value, str):
        parts = [p for p in value.replace(",", " ").split() if p]
        try:
            value = [float(p) for p in parts]
        except ValueError:
            raise ConfigError("percentages", f"must be numbers, got {value!r}") from None
    try:
        return tuple(check_percentages(list(value)))
    except JaxnetsError as exc:  # its message starts with the flag
        raise ConfigError("percentages", str(exc).removeprefix("--percentages ")) from None


def check_delta(value: Any) -> float:
    """One δ: a finite number ≥ 0."""
    try:
        delta = float(value)
    except (TypeError, ValueError):
        raise ConfigError("distance_allowed", f"must be a number, got {value!r}") from None
    if not math.isfinite(delta) or delta < 0:
        raise ConfigError("distance_allowed", f"must be ≥ 0, got {value}")
    return delta


def parse_deltas(value: Any) -> tuple[float, ...]:
    """δ, or a list of them (the original's ``--distance_allowed`` takes several: one run each):
    a number, "0.01,0.0075", "0.01 0.0075" or a sequence → distinct checked floats."""
    if isinstance(value, str):
        value = [p for p in value.replace(",", " ").split() if p]
    elif not isinstance(value, (list, tuple)):
        value = [value]
    deltas = tuple(check_delta(v) for v in value)
    if not deltas:
        raise ConfigError("distance_allowed", "needs at least one value")
    if len(set(deltas)) != len(deltas):
        raise ConfigError("distance_allowed", f"lists a value twice: {', '.join(map(repr, deltas))}")
    return deltas


@dataclass(frozen=True)
class WFNConfig:
    """The WFN schedule: fine-tune → test → cluster → write back, one round per percentage.

    Defaults are the paper's (δ = 0.0075, the README table's first setting — the original CLI's
    default 0.075 is ten times larger —, ten rounds, 3 fixing epochs, Adam at 2e-5, ρ 0.4).
    ``WFNConfig.for_protocol("original-cifar", ...)`` adds the original's CIFAR-10 training
    protocol (augmentation, a 5,000-image validation split, BN quantised; see ``PROTOCOLS``).
    """

    distance_allowed: float = 0.0075  # δ, the relative tolerance (≥ 0); several δ: run_deltas
    percentages: tuple[float, ...] = DEFAULT_PERCENTAGES  # fixed after each round; increasing, ends at 1.0
    calculation_type: str = "relative"  # relative | euclidean
    zero_distance: float = ZERO_DISTANCE  # γ0: |w| below it is pruned to 0
    regularisation_ratio: float = 0.4  # ρ: the regulariser's share of the loss
    bn_inc: bool = False  # also quantise BatchNorm γ/β
    first_epoch: int = 0  # epochs before the first clustering
    fixing_epochs: int = 3  # epochs before every later clustering
    optimizer: str = "adam"  # adam | sgd (momentum 0.9, weight decay 5e-4)
    lr: float = 2e-5
    distance_schedule: str = "linear"  # linear (a_t = max(δ, δ(R−t)), faithful) | constant
    augment: bool = False  # CIFAR flip + pad-4 crop while fine-tuning (always on in the original)
    val_split: int = 0  # training images held out (seeded by `seed`), validated after every epoch
    pretrain_epochs: int = 0  # train from scratch this many epochs first (a model without weights)
    pretrain_lr: float = 3e-3
    batch_size: int = 128
    seed: int = 0
    precision: str = "fp32"  # fp32 | bf16 (bf16 compute, fp32 master weights) | auto (bf16 on GPU/TPU)
    checkpoint_every: int = 0  # also checkpoint the fine-tuning every N steps (0: at epoch ends only)
    windowed: bool = True  # the clustering's windowed candidate search (exact, faster)
    experiment_name: str = "wfn"  # stored in results.json
    export: bool = True  # final_model (jaxnets), final_model.pth and the compact file
    plots: bool = True
    tensorboard: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "distance_allowed", check_delta(self.distance_allowed))
        object.__setattr__(self, "percentages", parse_percentages(self.percentages))
        kind = str(self.calculation_type).lower().replace("euclidian", "euclidean")
        if kind not in CALCULATION_TYPES:
            raise ConfigError("calculation_type", f"must be relative or euclidean, got {self.calculation_type!r}")
        object.__setattr__(self, "calculation_type", kind)
        optimizer = str(self.optimizer).lower()
        if optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"must be adam or sgd, got {self.optimizer!r}")
        object.__setattr__(self, "optimizer", optimizer)
        if not float(self.zero_distance) > 0:
            raise ConfigError("zero_distance", f"must be > 0, got {self.zero_distance}")
        for name in ("first_epoch", "fixing_epochs", "pretrain_epochs", "val_split"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(name, f"must be ≥ 0, got {getattr(self, name)}")
        if float(self.regularisation_ratio) < 0:
            raise ConfigError("regularisation_ratio", f"must be ≥ 0, got {self.regularisation_ratio}")
        if not float(self.lr) > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")
        if not float(self.pretrain_lr) > 0:
            raise ConfigError("pretrain_lr", f"must be > 0, got {self.pretrain_lr}")
        if self.distance_schedule not in DISTANCE_SCHEDULES:
            raise ConfigError("distance_schedule", "must be linear or constant")
        if int(self.batch_size) < 1:
            raise ConfigError("batch_size", "must be ≥ 1")
        check_precision(self.precision)
        if int(self.checkpoint_every) < 0:
            raise ConfigError("checkpoint_every", f"must be ≥ 0, got {self.checkpoint_every}")

    @classmethod
    def for_protocol(cls, name: str = "jaxnets", **overrides: Any) -> WFNConfig:
        """Protocol ``name``'s settings (``PROTOCOLS``) under ``overrides``."""
        return cls(**{**protocol_settings(name), **overrides})

    @property
    def rounds(self) -> int:
        return len(self.percentages)
