"""The Sparsity Probe's settings: the one place for their defaults and checks (no JAX import, so
the CLI can show them at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jaxnets.errors import ConfigError
from jaxnets.methods.probe.alpha import VARIANTS
from jaxnets.methods.probe.reduce import SVD_METHODS


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the Sparsity Probe; the defaults are the example notebook's (the paper's figures).

    ``ProbeConfig.preset("original-cli")`` gives the original CLI's (trees 1, depth 15, seed 2,
    feature dimension 2500). Every field is checked when the config is made.
    """

    layers: tuple[str, ...] | None = None  # intermediate names; None: the model's probe layers
    trees: int = 5  # trees in the random forest
    depth: int | None = 20  # max tree depth; 0, -1 or None: unlimited
    seed: int = 1079  # forest and SVD seed
    epsilon_1: float = 0.1  # ε₁ in degrees; ε₂ = 4·ε₁
    feature_dimension: int = 1000  # wider layers are reduced to this many SVD components
    variant: str = "original"  # original (replicates the depth-1 and root-index bugs) | fixed
    svd: str = "sklearn"  # sklearn (TruncatedSVD, parity) | jax (randomized, jitted) | exact (Gram eigh)
    n_jobs: int = -1  # forest worker processes (-1: all cores)
    batch_size: int = 256  # forward-pass batch for the layer outputs
    use_clustering: bool = False  # KMeans metrics per layer and the UMAP pictures
    only_umap: bool = False  # only the UMAP pictures, <layer>.png per layer and umap.png (no alphas)
    umap_points: int = 2500  # UMAP subsample size
    umap_faithful: bool = False  # subsample with replacement from RandomState(2), as the original

    def __post_init__(self) -> None:
        if isinstance(self.layers, (str, list)):
            names = self.layers.split(",") if isinstance(self.layers, str) else self.layers
            object.__setattr__(self, "layers", tuple(s.strip() for s in names if s.strip()) or None)
        if self.variant not in VARIANTS:
            raise ConfigError("variant", f"'{self.variant}' is unknown; use one of {', '.join(VARIANTS)}")
        if self.svd not in SVD_METHODS:
            raise ConfigError("svd", f"'{self.svd}' is unknown; use one of {', '.join(SVD_METHODS)}")
        if self.trees < 1:
            raise ConfigError("trees", f"must be at least 1 (got {self.trees})")
        if self.depth is not None and self.depth < -1:
            raise ConfigError("depth", f"must be positive, or 0 / -1 for unlimited (got {self.depth})")
        if not self.epsilon_1 > 0:
            raise ConfigError("epsilon_1", f"must be positive (got {self.epsilon_1})")
        if self.feature_dimension < 1:
            raise ConfigError("feature_dimension", f"must be at least 1 (got {self.feature_dimension})")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be at least 1 (got {self.batch_size})")
        if self.umap_points < 1:
            raise ConfigError("umap_points", f"must be at least 1 (got {self.umap_points})")

    @classmethod
    def preset(cls, name: str = "notebook", **overrides: Any) -> ProbeConfig:
        """A preset's settings (``notebook`` | ``original-cli``) under ``overrides`` (None: the preset's)."""
        if name not in PRESETS:
            raise ConfigError("preset", f"'{name}' is unknown; use one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}})


# The presets differ from the defaults in these fields only (the notebook preset is the defaults).
PRESETS: dict[str, dict[str, Any]] = {
    "notebook": {},
    "original-cli": {"trees": 1, "depth": 15, "seed": 2, "feature_dimension": 2500},
}


@dataclass(frozen=True)
class PlotConfig:
    """What ``probe plot`` draws: the options of the original ``plot_layers`` (§4.3).

    Figures only: no alpha changes. ``remove_layers`` / ``remove_begin`` drop that many layers at
    the end / start of every result (the original slices ``sizes`` and ``alphas`` the same way).
    """

    fill: bool = False  # shade each run's band between α at the first and the last ε (add_fill)
    plot_test: bool = True  # a test-accuracy bar panel (for the results that have test_stats)
    remove_layers: int = 0  # layers dropped at the end of every result
    remove_begin: int = 0  # layers dropped at the start of every result

    def __post_init__(self) -> None:
        for name in ("remove_layers", "remove_begin"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be 0 or more (got {getattr(self, name)})")
