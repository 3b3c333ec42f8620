""""Decomposing the Deep" settings: the one place for the defaults and checks of ``indices``,
``finetune``, ``essential`` and ``mutual-info`` (specs/decomposing-the-deep.md §3; no JAX import,
so the CLI can show them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxnets.data.transforms import IMAGENET_EVAL_RESIZES
from jaxnets.errors import ConfigError
from jaxnets.precision import PRECISIONS

CSG_ORDERS = ("ascending", "descending")
NOISE_MODES = ("replace", "add")
MI_DEFAULT_KS = (5, 10, 20)  # the paper's table (spec §3.6)
EVAL_RESIZES = tuple(IMAGENET_EVAL_RESIZES)  # crop | squash
# The original squashes ImageNet images to 224×224 for evaluation (spec P12: reproduce it by
# default, offer the standard resize-256/centre-crop-224).
DEFAULT_EVAL_RESIZE = "squash"


def parse_ks(value: Any, field: str = "k", *, unique: bool = True) -> tuple[int, ...]:
    """"5,10,20", an int or a sequence → positive integers (each once when ``unique``)."""
    if isinstance(value, int):
        items = [str(value)]
    elif isinstance(value, list | tuple):
        items = [str(k) for k in value]
    else:
        items = str(value).split(",")
    stripped = [item.strip() for item in items]
    example = "e.g. 5,10,20" if unique else "one per --k value"
    try:
        ks = [int(item) for item in stripped if item]
    except ValueError:
        raise ConfigError(field, f"must be comma-separated integers, {example} (got {value!r})") from None
    if not ks:
        raise ConfigError(field, "needs at least one value")
    if "" in stripped:
        raise ConfigError(field, f"has an empty value (got {value!r}); write e.g. 5,10,20")
    bad = [k for k in ks if k < 1]
    if bad:
        raise ConfigError(field, f"values must be at least 1 (got {bad[0]})")
    twice = sorted({k for k in ks if ks.count(k) > 1})
    if unique and twice:
        raise ConfigError(field, f"lists {twice[0]} twice")
    return tuple(ks)


def _check_choice(field: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(field, f"must be {' or '.join(choices)}, got {value!r}")


def _check_at_least(config: Any, field: str, least: int) -> None:
    value = getattr(config, field)
    if value is not None and int(value) < least:
        raise ConfigError(field, f"must be ≥ {least}, got {value}")


@dataclass(frozen=True)
class IndicesConfig:
    """Influential-channel extraction on the training split (per-image top-k histograms, §3.3)."""

    k: tuple[int, ...] = (5,)  # per-image top-k values
    k_keep: tuple[int, ...] | None = None  # channels kept per class, one per k (default: k)
    batch_size: int = 256
    seed: int = 0  # initialises a model given without weights
    eval_resize: str = DEFAULT_EVAL_RESIZE  # ImageNet-size models: squash (the original's) | crop

    def __post_init__(self) -> None:
        object.__setattr__(self, "k", parse_ks(self.k))
        _check_choice("eval_resize", self.eval_resize, EVAL_RESIZES)
        if self.k_keep is not None:
            keep = parse_ks(self.k_keep, "k_keep", unique=False)
            if len(keep) != len(self.k):
                raise ConfigError("k_keep", "needs one value per --k value")
            object.__setattr__(self, "k_keep", keep)
        _check_at_least(self, "batch_size", 1)

    def keep_for(self, k: int) -> int:
        """Channels kept per class for top-``k``."""
        return dict(zip(self.k, self.k_keep or self.k, strict=True))[k]


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning through the decomposed head (§3.4): Adam, every parameter, BN in train mode.

    ``batch_size`` 64 is the original's (``train.py`` / the README's settings), so a run
    reproduces the paper's schedule; ``lr`` None = 1e-4 for CIFAR-size models, 1e-6 ImageNet-size.
    """

    epochs: int = 10
    lr: float | None = None  # Adam learning rate (None: by input size)
    batch_size: int = 64
    eval_batch_size: int = 128
    precision: str = "fp32"  # fp32 | bf16 | auto
    checkpoint_every: int | None = None  # also checkpoint every N steps
    initial_eval: bool = True  # validate the decomposed model before training
    export: bool = True  # jaxnets checkpoint + PyTorch state_dict of the fine-tuned model
    seed: int = 0
    eval_resize: str = DEFAULT_EVAL_RESIZE  # validation of ImageNet-size models: squash | crop

    def __post_init__(self) -> None:
        for field in ("epochs", "batch_size", "eval_batch_size", "checkpoint_every"):
            _check_at_least(self, field, 1)
        if self.lr is not None and not float(self.lr) > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("eval_resize", self.eval_resize, EVAL_RESIZES)

    def lr_for(self, input_size: int) -> float:
        """The learning rate: as given, else 1e-4 for CIFAR-size models and 1e-6 for ImageNet-size ones."""
        if self.lr is not None:
            return float(self.lr)
        return 1e-6 if input_size >= 128 else 1e-4


@dataclass(frozen=True)
class EssentialConfig:
    """The Gaussian-noise "essential features" experiment (§3.5)."""

    noise_mode: str = "replace"  # replace (the original) | add
    csg_order: str = "ascending"  # ascending (the published files) | descending
    batch_size: int = 256
    seed: int = 0  # keys the noise per (seed, run, class, image, variant)
    eval_resize: str = DEFAULT_EVAL_RESIZE  # ImageNet-size models: squash (the original's) | crop

    def __post_init__(self) -> None:
        _check_choice("noise_mode", self.noise_mode, NOISE_MODES)
        _check_choice("csg_order", self.csg_order, CSG_ORDERS)
        _check_choice("eval_resize", self.eval_resize, EVAL_RESIZES)
        _check_at_least(self, "batch_size", 1)


@dataclass(frozen=True)
class MutualInfoConfig:
    """Pairwise mutual information of the classes' membership vectors (§3.6)."""

    k: tuple[int, ...] | None = None  # k of the CSG rows (None: the index files' k, else 5, 10, 20)
    csg_order: str = "ascending"  # the primary CSG column
    num_features: int | None = None  # D (None: from the gates or the model)

    def __post_init__(self) -> None:
        if self.k is not None:
            object.__setattr__(self, "k", parse_ks(self.k))
        _check_choice("csg_order", self.csg_order, CSG_ORDERS)
        _check_at_least(self, "num_features", 1)
