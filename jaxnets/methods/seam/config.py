"""SeaM's settings: the one place for their defaults and checks (specs/seam.md §2.6, §2.10, §4; no
JAX import, so the CLI can show them at start-up).

:class:`ReengineerConfig` is direct reuse (``jaxnets seam reengineer``); indirect reuse has
:class:`FinetuneConfig` (``seam finetune``: the three steps and the defect inheritance rate),
:class:`StandardFinetuneConfig` and :class:`RetrainConfig` (the two baselines,
``seam standard-finetune`` / ``seam retrain``) and :class:`RobustnessConfig` (the DIR of any
fine-tuned model, ``seam eval-robustness``). The defaults are the original scripts' CLI defaults.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from jaxnets.errors import ConfigError
from jaxnets.methods.seam.targets import SUPERCLASS_TYPES
from jaxnets.precision import check_precision

TARGET_KINDS = ("binary", "superclass")


def exclude_patterns(exclude: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``exclude`` (one regex, or several) as the pattern list :func:`core.init_scores` takes
    (None: mask every conv/linear)."""
    if exclude in (None, "", [], ()):
        return None
    return [exclude] if isinstance(exclude, str) else list(exclude)


def _coerce(config: object, kind: type, *names: str) -> None:
    """Numbers given as another numeric type (an int learning rate) become the field's type."""
    for name in names:
        value = getattr(config, name)
        if value is None or isinstance(value, bool):
            if isinstance(value, bool):
                raise ConfigError(name, f"must be a number (got {value!r})")
            continue
        try:
            converted = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(name, f"must be a number (got {value!r})") from None
        if kind is int and converted != value:
            raise ConfigError(name, f"must be a whole number (got {value!r})")
        object.__setattr__(config, name, converted)


def _positive(config: object, *names: str) -> None:
    for name in names:
        value = float(getattr(config, name))
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(name, f"must be > 0 (got {getattr(config, name)})")


def _non_negative(config: object, *names: str) -> None:
    for name in names:
        value = float(getattr(config, name))
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(name, f"must be ≥ 0 (got {getattr(config, name)})")


def _at_least_one(config: object, *names: str) -> None:
    for name in names:
        if int(getattr(config, name)) < 1:
            raise ConfigError(name, f"must be at least 1 (got {getattr(config, name)})")


def _early_stop(value: int) -> None:
    if int(value) == 0 or int(value) < -1:
        raise ConfigError("early_stop", f"must be -1 (never) or ≥ 1 (got {value})")


def _optional_count(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and int(value) < 1:
            raise ConfigError(name, f"must be at least 1 (got {value})")


@dataclass(frozen=True)
class ReengineerConfig:
    """Direct reuse: learn a mask score per weight and a head for a target problem (§2.5–§2.8).

    The target is checked against the data's classes when the run starts (it needs them).
    """

    target: str = "binary:0"  # binary:T (T vs rest, balanced), binary:A,B (class pair), superclass:I
    superclass_type: str = "predefined"  # predefined (CIFAR-100 / ImageNet tables) | random (n_classes drawn with seed)
    n_classes: int | None = None  # classes of a random superclass
    lr_head: float = 0.1  # Adam learning rate of the head
    lr_mask: float = 0.1  # Adam learning rate of the mask scores
    alpha: float = 1.0  # weight α of the retention term (≥ 0)
    epochs: int = 300  # epochs (head-only at 0, 5, 10, …)
    early_stop: int = -1  # stop after this many below-threshold epochs since the last sparsity gain (-1 never)
    batch_size: int = 64
    seed: int = 0  # shuffling, dropout, head init (and a random superclass)
    limit: int | None = None  # training images of the target problem (None: all)
    test_limit: int | None = None  # test images of the target problem (None: limit)
    augment: bool = True  # random crop + flip on 32-px data, random-resized crop on 224-px models
    exclude: str | None = None  # regex of parameter names never masked (e.g. '^fc/')
    plots: bool = True  # history.png and layer_retention.png in the run folder
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at epoch ends only); for resume after a kill
    precision: str = "fp32"  # fp32 | bf16 (bf16 compute, fp32 scores, head and weights) | auto (bf16 on GPU/TPU)

    def __post_init__(self) -> None:
        if self.checkpoint_every is None:  # the CLI's "not given"
            object.__setattr__(self, "checkpoint_every", 0)
        _coerce(self, float, "lr_head", "lr_mask", "alpha")
        _coerce(self, int, "n_classes", "epochs", "early_stop", "batch_size", "seed", "limit", "test_limit",
                "checkpoint_every")
        kind, sep, _ = str(self.target).strip().partition(":")
        if kind.lower() not in TARGET_KINDS or not sep:
            raise ConfigError("target", f"'{self.target}' is unknown; use binary:T, binary:A,B or superclass:I")
        if self.superclass_type not in SUPERCLASS_TYPES:
            raise ConfigError("superclass_type", f"must be one of {', '.join(SUPERCLASS_TYPES)} "
                                                 f"(got '{self.superclass_type}')")
        if self.superclass_type == "random" and kind.lower() == "superclass" and self.n_classes is None:
            raise ConfigError("n_classes", "is needed when superclass_type is random")
        _optional_count(self, "n_classes", "limit", "test_limit")
        _non_negative(self, "alpha")
        _positive(self, "lr_head", "lr_mask")
        _at_least_one(self, "epochs", "batch_size")
        _early_stop(self.early_stop)
        if self.checkpoint_every < 0:
            raise ConfigError("checkpoint_every", f"must be ≥ 0 (got {self.checkpoint_every})")
        check_precision(self.precision)

    @property
    def exclude_patterns(self) -> list[str] | None:
        return exclude_patterns(self.exclude)


def _check_sgd(config: Any) -> None:
    """The SGD settings every fine-tuning/retraining config shares (PyTorch's SGD: momentum and
    weight decay ≥ 0; dropout a probability)."""
    _non_negative(config, "momentum", "weight_decay")
    if not 0 <= float(config.dropout) < 1:
        raise ConfigError("dropout", f"must be in [0, 1) (got {config.dropout})")


def _check_pgd(config: Any) -> None:
    _non_negative(config, "pgd_eps", "pgd_step_size")
    if int(config.pgd_steps) < 0:
        raise ConfigError("pgd_steps", f"must be ≥ 0 (got {config.pgd_steps})")


@dataclass(frozen=True)
class FinetuneConfig:
    """Indirect reuse (§2.10, ``reengineering_finetune.py``): fit a new output layer (1),
    re-engineer with a prune threshold (2), fine-tune (3); then PGD on the public model and the
    defect inheritance rate (§3.5). Defaults: the original script's."""

    lr_s1_output: float = 0.1  # step-1 SGD learning rate of the new output layer
    lr_mask: float = 0.1  # step-2 Adam learning rate of the scores
    lr_s2_output: float = 0.001  # step-2 Adam learning rate of the output layer
    alpha: float = 1.0  # step-2 retention weight α (≥ 0)
    prune_threshold: float = 1.0  # step 2 stops once 1 - retention reaches this (1.0: only when all are pruned)
    lr_s3_hidden: float = 0.005  # step-3 SGD learning rate of every layer but the output layer
    lr_s3_output: float = 0.05  # step-3 SGD learning rate of the new output layer
    momentum: float = 0.0  # SGD momentum of steps 1 and 3
    weight_decay: float = 1e-4  # SGD weight decay of steps 1 and 3 (added to the gradient, as PyTorch's)
    dropout: float = 0.0  # step 3: Dropout2d after each ResNet stage (train mode only)
    epochs: int = 300  # epochs of each step (at most)
    early_stop: int = 30  # each step stops after this many epochs without improvement (-1 never)
    enforce_masks: bool = False  # non-original: keep pruned weights at 0 during fine-tuning
    pgd_eps: float = 0.1  # PGD L∞ radius in normalised input space
    pgd_steps: int = 40  # PGD iterations
    pgd_step_size: float = 0.01  # PGD step (sign of the gradient times this)
    augment: bool = True  # training augmentation as ReengineerConfig.augment
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        _coerce(self, float, "lr_s1_output", "lr_mask", "lr_s2_output", "alpha", "prune_threshold", "lr_s3_hidden",
                "lr_s3_output", "momentum", "weight_decay", "dropout", "pgd_eps", "pgd_step_size")
        _coerce(self, int, "epochs", "early_stop", "pgd_steps", "batch_size", "seed")
        _non_negative(self, "alpha")
        _positive(self, "lr_s3_hidden", "lr_s3_output", "lr_mask", "lr_s1_output", "lr_s2_output")
        _check_sgd(self)
        _check_pgd(self)
        _at_least_one(self, "epochs", "batch_size")
        _early_stop(self.early_stop)
        if not 0 < float(self.prune_threshold) <= 1:
            raise ConfigError("prune_threshold", f"must be in (0, 1] (got {self.prune_threshold})")


def _check_baseline(config: Any) -> None:
    """The checks both indirect-reuse baselines share (one SGD over every layer)."""
    _coerce(config, float, "lr", "momentum", "weight_decay", "dropout")
    _coerce(config, int, "epochs", "early_stop", "batch_size", "seed")
    _positive(config, "lr")
    _check_sgd(config)
    _at_least_one(config, "epochs", "batch_size")
    _early_stop(config.early_stop)


@dataclass(frozen=True)
class StandardFinetuneConfig:
    """The standard fine-tuning baseline (``standard_finetune.py``): the pretrained model with a
    new output layer, every layer trained by SGD (the output layer at 10× ``lr``), the best test
    accuracy kept; no early stop by default."""

    lr: float = 0.005  # SGD learning rate of every layer but the output layer (which gets 10×)
    momentum: float = 0.0
    weight_decay: float = 1e-4  # added to the gradient, as PyTorch's SGD
    dropout: float = 0.0  # Dropout2d after each ResNet stage (train mode only)
    epochs: int = 300
    early_stop: int = -1  # stop after this many epochs without a better test accuracy (-1 never: the original)
    augment: bool = True  # training augmentation as ReengineerConfig.augment
    batch_size: int = 64
    seed: int = 0  # shuffling, dropout, the new output layer's init

    def __post_init__(self) -> None:
        _check_baseline(self)


@dataclass(frozen=True)
class RetrainConfig:
    """The train-from-scratch baseline (``defect_inherit/retrain.py``): a randomly initialised
    model, every layer trained by one SGD, the best test accuracy kept."""

    lr: float = 0.1
    momentum: float = 0.5
    weight_decay: float = 1e-4
    dropout: float = 0.0  # Dropout2d after each ResNet stage (train mode only)
    epochs: int = 300
    early_stop: int = -1  # -1 never (the original)
    augment: bool = True
    batch_size: int = 64
    seed: int = 0  # initialisation, shuffling, dropout

    def __post_init__(self) -> None:
        _check_baseline(self)


@dataclass(frozen=True)
class RobustnessConfig:
    """The defect inheritance rate of a fine-tuned model (``eval_robustness.py``, §3.5):
    advertorch's untargeted L∞ PGD on the public pretrained feature extractor, random start,
    images clipped to [-2.2, 2.2] in normalised space; the adversarial images go to the fine-tuned
    model."""

    pgd_eps: float = 0.1
    pgd_steps: int = 40
    pgd_step_size: float = 0.01
    batch_size: int = 64
    seed: int = 0  # the random starts

    def __post_init__(self) -> None:
        _coerce(self, float, "pgd_eps", "pgd_step_size")
        _coerce(self, int, "pgd_steps", "batch_size", "seed")
        _check_pgd(self)
        _at_least_one(self, "batch_size")
