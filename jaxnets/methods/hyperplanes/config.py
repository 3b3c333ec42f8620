"""The hyperplane tools' settings: the one place for their defaults and checks (specs/hyperplane-arrangements.md
§2, §3, §4; no JAX import, so the CLI can show them at start-up).

Only what changes the computation or its record is here; where the weights and the data come from
(snapshot paths, ``--data``, ``--limit``, …) are the arguments of the library functions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from jaxnets.errors import ConfigError

RULES = ("pool", "stage")  # the stage grouping rules of registry.build_registry


def _check_common(config: ProjectionsConfig | ReinitConfig) -> None:
    """Flags are booleans, the seed a whole number, the rule a known one (both configs)."""
    for f in fields(config):
        if f.type == "bool" and not isinstance(getattr(config, f.name), bool):
            raise ConfigError(f.name, f"must be true or false, got {getattr(config, f.name)!r}")
    if isinstance(config.seed, bool) or not isinstance(config.seed, int):
        raise ConfigError("seed", f"must be a whole number, got {config.seed!r}")
    if config.rule is not None and config.rule not in RULES:
        raise ConfigError("rule", f"must be pool or stage, got {config.rule!r}")


@dataclass(frozen=True)
class ProjectionsConfig:
    """Projection statistics of each filter on the all-ones vector (spec §2); the defaults are the
    original's (raw sums, conv layers only)."""

    normalize: bool = False  # divide by ||w||·√n (the cosine with the all-ones vector); default raw sums
    with_linear: bool = False  # also record linear layers
    rule: str | None = None  # stage grouping: pool (max-pools start stages) | stage (ResNets); None: per family
    legacy_epoch_labels: bool = False  # the original's labels (final .pt = E+1)
    seed: int = 0  # the random init's seed (no weights); recorded unless the snapshot names its own
    plots: bool = True  # histograms and mass per layer (PNG) in the run folder

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class ReinitConfig:
    """Layer re-initialisation robustness (Zhang et al.; spec §3); the defaults are the original's
    (conv layers only, their BatchNorm kept trained, batch 128, automatic colour range)."""

    rand: bool = False  # add a 'rand' row: each layer from a fresh init (the arch's initialiser)
    batch_size: int = 128  # evaluation batch
    include_bn: bool = False  # extension: also swap the BatchNorm after each conv (params and statistics)
    include_linear: bool = False  # extension: also re-initialise the linear layers
    rule: str | None = None  # stage grouping of the layer registry (see ProjectionsConfig.rule)
    legacy_epoch_labels: bool = False  # the original's labels (reinit parses the full path)
    vmin: float | None = None  # heatmap colour minimum; None: automatic
    vmax: float | None = None  # heatmap colour maximum; None: automatic
    seed: int = 0  # the rand row's seed is derived from it; recorded unless the snapshot names its own
    plots: bool = True  # the heatmap (PNG) in the run folder

    def __post_init__(self) -> None:
        _check_common(self)
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError("batch_size", f"must be a whole number ≥ 1, got {self.batch_size!r}")
        for name in ("vmin", "vmax"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(name, f"must be a finite number, got {value!r}")
        if self.vmin is not None and self.vmax is not None and not self.vmin < self.vmax:
            raise ConfigError("vmax", f"must be greater than vmin ({self.vmin}), got {self.vmax}")


@dataclass(frozen=True)
class TrainConfig:
    """``jaxnets train`` (the paper's train.py, spec §4): every option's default, in one place.

    The CLI's flags default to these fields, and :func:`jaxnets.train.command.run_train` fills the
    keys an options mapping leaves out from them (so a library caller names only what differs).
    The checks live with the engine (``jaxnets.train.command``), which also reads the data.
    """

    data: str = "digits"
    epochs: int = 20  # the END epoch: epochs start_epoch..epochs-1 are trained (as the original)
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd | adam
    lr: float = 0.001
    lr_step: int = 0  # step-LR period in epochs (0: constant)
    lr_decay: float = 0.0
    weight_decay: float = 1e-4  # coupled L2 (SGD); Adam ignores it, as the original
    momentum: float = 0.9  # heavy-ball (SGD)
    augmentation: bool = False
    upscale: int | None = None
    upscale_padding: int | None = None
    noise: float = 0.0  # (0, 1]: label noise; -1: pixel shuffle
    noise_seed: int | None = None
    subsample_classes: int = 0
    class_sample_seed: int | None = None
    split: float = 0.0
    stratified: bool = False
    split_seed: int | None = None
    shuffle: bool = False
    snapshot_every: int = 0
    snapshot_all_until: int = 0
    kill_plateaus: bool = False
    train_acc: bool = False
    pretrained: Path | None = None
    evaluate: bool = False
    evaluate_train: bool = False
    eval_regularization_loss: bool = False  # print weight_decay · Σ‖W‖₂ over the weights and exit
    start_epoch: int = 0  # the first epoch's index (no init snapshot unless 0)
    resume_from: Path | None = None  # an original train.py snapshot (.tar) or state_dict file
    unnormalize: bool = False
    normalize: str | None = None
    num_classes: int | None = None
    limit: int | None = None
    classes: str | None = None
    precision: str = "fp32"
    resume: str | None = None  # a jaxnets run folder ('auto': this one)
    checkpoint_every: int | None = None
    out: Path | None = None
    seed: int = 0
    devices: str = "1"
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None

    def options(self) -> dict[str, Any]:
        """The defaults as the options mapping ``run_train`` takes."""
        return asdict(self)
