"""The model registry: a name → how to build it, its input, normalisation and key map.

Each family module (``jaxnets/models/<family>.py``) exports ``SPECS``, a list of
:class:`ModelSpec`; the registry collects them on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jaxnets.converters.keymaps import GENERIC, KeyMap
from jaxnets.errors import UnknownModelError

FAMILY_MODULES = ("cifar_resnet", "resnet", "vgg", "densenet", "mixer", "small", "googlenet", "mobilenet")

# name → (mean, std) per RGB channel, applied to images scaled to [0, 1].
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # "Decomposing the Deep" code's CIFAR constants.
    "cifar": ((0.491, 0.482, 0.447), (0.247, 0.243, 0.261)),
    # SeaM and the Sparsity Probe (torchvision-era CIFAR statistics).
    "cifar_std": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    # WFN and the hyperplane code (the PyTorch_CIFAR10 README of 2020).
    "cifar_2020": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2009, 0.1984, 0.2023)),
    "mnist": ((0.1307,), (0.3015,)),
    "mixer": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "digits": ((0.5,), (0.5,)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything jaxnets needs to know about one registered model."""

    name: str
    family: str
    build: Callable[..., Any]  # build(num_classes=…, dtype=…) -> flax.linen.Module
    input_size: int
    num_classes: int
    normalization: str
    in_channels: int = 3
    # Smallest square input (px) whose feature map stays ≥ 1×1 up to the last pool/flatten; a
    # smaller one gives NaN (empty pool) or input-independent logits. None: any size works.
    min_input_size: int | None = None
    # Parameter shapes depend on the input size (a flatten into a Dense, Mixer's token mixing):
    # the model runs at ``input_size`` only.
    fixed_input_size: bool = False
    keymap: KeyMap = GENERIC
    head: str = "fc"  # slash path of the final Dense layer
    features: str = "features"  # name of the sown penultimate (pooled) features
    description: str = ""
    aliases: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def create(self, num_classes: int | None = None, **kwargs: Any) -> Any:
        return self.build(num_classes=num_classes or self.num_classes, **kwargs)

    def input_shape(self, batch: int = 1, size: int | None = None) -> tuple[int, int, int, int]:
        s = size or self.input_size
        return (batch, s, s, self.in_channels)


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def _load() -> None:
    if _REGISTRY:
        return
    for family in FAMILY_MODULES:
        module = importlib.import_module(f"jaxnets.models.{family}")
        for spec in module.SPECS:
            if spec.name in _REGISTRY:
                raise RuntimeError(f"model {spec.name!r} registered twice")
            _REGISTRY[spec.name] = spec
            for alias in spec.aliases:
                _ALIASES[alias] = spec.name


def model_names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    _load()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        import difflib

        close = difflib.get_close_matches(name, list(_REGISTRY) + list(_ALIASES), n=3)
        hint = f" — did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model '{name}'{hint} (list them with `jaxnets models`)")
    return _REGISTRY[key]


def all_specs() -> Sequence[ModelSpec]:
    _load()
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]
