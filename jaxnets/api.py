"""The notebook entry points: ``jaxnets.load``, ``jaxnets.open_data``, ``jaxnets.evaluate``.

A :class:`Model` bundles what every method needs about a network — its registry spec, the Flax
module, the ``{"params", "batch_stats"}`` variables and the preprocessing (normalisation, input
size) — so a notebook never repeats the set-up chain the commands run. Methods take a Model and
return new variables; :meth:`Model.replace` wraps them again (a WFN-fixed or SeaM-masked net is
a Model like any other).

    >>> import jaxnets
    >>> net = jaxnets.load("resnet20", "resnet20-12fca82f.th")
    >>> data = jaxnets.open_data("cifar10:../shared/data/cifar10-exact-subset/cifar-10-batches-bin")
    >>> jaxnets.evaluate(net, data)["top1"]
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.data.classes import parse_classes
from jaxnets.data.loader import Batch
from jaxnets.data.pipeline import adapt_to_data, eval_loader, train_loader
from jaxnets.data.sources import Source
from jaxnets.data.spec import open_source
from jaxnets.data.transforms import normalize
from jaxnets.errors import JaxnetsError
from jaxnets.io import is_jaxnets_checkpoint, read_metadata, save_variables
from jaxnets.models.api import (
    Variables,
    apply_with_intermediates,
    init_variables,
    intermediate_names,
    load_weights,
    resolve,
)
from jaxnets.models.registry import ModelSpec, model_names
from jaxnets.models.weights import input_normalization, weights_preprocessing

EXPORT_FORMATS = ("torch", "jaxnets", "npz", "safetensors")


@dataclasses.dataclass(frozen=True)
class Model:
    """A network ready to run: spec, Flax module, variables and preprocessing.

    ``model(images)`` takes NHWC images in pixel units (uint8 0..255, or floats in the same
    units), normalises them with ``mean``/``std`` and returns the logits (eval mode).
    """

    spec: ModelSpec
    module: Any  # flax.linen.Module built by spec.create
    variables: Variables
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_classes: int
    weights: Path | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_size(self) -> int:
        return self.spec.input_size

    def preprocess(self, images: Any) -> jnp.ndarray:
        return jnp.asarray(normalize(np.asarray(images), self.mean, self.std))

    def __call__(self, images: Any) -> jnp.ndarray:
        return _apply(self.module, self.variables, self.preprocess(images))

    def layer_names(self) -> list[str]:
        """Every name :meth:`features` accepts (submodule paths and sown values), in call order."""
        return intermediate_names(self.spec, self.module)

    def features(self, images: Any, layers: Sequence[str] = ("features",)) -> dict[str, jnp.ndarray]:
        """Named intermediate outputs (``"features"``: the pooled penultimate vector)."""
        unknown = [name for name in layers if name not in self.layer_names()]
        if unknown:
            raise JaxnetsError(f"{self.name} has no layer(s) {', '.join(unknown)}; see model.layer_names()")
        _, named = apply_with_intermediates(self.module, self.variables, self.preprocess(images), tuple(layers))
        return named

    def replace(self, variables: Mapping) -> Model:
        """The same network with other variables (a method's output: fixed weights, a mask applied)."""
        return dataclasses.replace(self, variables=dict(variables))

    def export(self, path: str | Path, to: str = "torch", keys: str | None = None) -> Path:
        """Write the variables as a PyTorch state_dict (``torch``), a ``.safetensors`` file of
        PyTorch-named arrays (with the normalisation in its metadata), a jaxnets checkpoint folder
        (``jaxnets``) or an ``.npz`` of PyTorch-named arrays. ``keys="timm"`` writes timm's names
        (torch/safetensors; VGG, ResNet, DenseNet, Mixer). Refuses to overwrite ``path``."""
        from jaxnets.converters.convert import variables_to_state_dict
        from jaxnets.converters.namings import from_native
        from jaxnets.converters.npz import save_npz_state
        from jaxnets.converters.safetensors_io import save_safetensors_state
        from jaxnets.converters.torch_writer import save_torch_state_dict
        from jaxnets.runtime import claim_output_file

        if to not in EXPORT_FORMATS:
            raise JaxnetsError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {to!r}")
        host = jax.device_get(self.variables)
        if to == "jaxnets":
            return save_variables(path, host, {"model": self.name, "num_classes": self.num_classes,
                                               "preprocessing": {"mean": list(self.mean), "std": list(self.std),
                                                                 "input_size": self.input_size,
                                                                 "num_classes": self.num_classes}})
        target = claim_output_file(path, "export path")
        keymap = self.spec.keymap
        state = from_native(variables_to_state_dict(host, keymap), keymap.namings, keymap.native, keys)
        if to == "torch":
            return save_torch_state_dict(target, state)
        if to == "safetensors":
            record = {"mean": list(self.mean), "std": list(self.std), "input_size": self.input_size,
                      "num_classes": self.num_classes}
            save_safetensors_state(target, state, {"jaxnets.model": self.name,
                                                   "jaxnets.preprocessing": json.dumps(record)})
        else:
            save_npz_state(target, state)
        return target


@functools.partial(jax.jit, static_argnums=0)
def _apply(module: Any, variables: Mapping, x: jnp.ndarray) -> jnp.ndarray:
    """The eval forward, compiled once per module configuration (Flax modules hash by fields)."""
    return module.apply(variables, x, train=False)


def load(model: str | ModelSpec, weights: str | Path | None = None, *, num_classes: int | None = None,
         normalize: str | None = None, data: Data | None = None, seed: int = 0) -> Model:
    """A registered model with its weights: a PyTorch file (``.th/.pth/.pt/.tar``), an ``.npz``
    or a jaxnets checkpoint folder; ``weights=None`` initialises it from ``seed``.

    ``num_classes`` defaults to the weights' own (a jaxnets checkpoint's metadata) or the
    registry's. ``data`` adapts the model to a data set as every command does (its channel count,
    and then its normalisation; labels and input size checked). ``normalize`` overrides the
    normalisation: a name of ``NORMALIZATIONS`` or ``"m1,m2,m3/s1,s2,s3"``; by default the
    checkpoint's recorded one, else the registry's.
    """
    spec = resolve(model)
    meta = read_metadata(weights) if weights is not None and is_jaxnets_checkpoint(Path(weights)) else {}
    recorded = weights_preprocessing(weights)
    if num_classes is None and recorded is not None and recorded.num_classes:
        num_classes = recorded.num_classes
    if num_classes is None and isinstance(meta.get("num_classes"), int):
        num_classes = meta["num_classes"]
    num_classes = num_classes or spec.num_classes
    if data is not None:
        spec = adapt_to_data(spec, data.source, num_classes)
    mean, std = input_normalization(spec, weights, normalize)
    module = spec.create(num_classes)
    variables = (init_variables(spec, module, seed) if weights is None
                 else load_weights(spec, module, weights))
    return Model(spec=spec, module=module, variables=variables, mean=tuple(mean), std=tuple(std),
                 num_classes=num_classes, weights=Path(weights) if weights is not None else None)


@dataclasses.dataclass(frozen=True)
class Data:
    """One split of a data set (``jaxnets.open_data``): iterate it in batches of uint8 images."""

    source: Source
    text: str
    split: str
    limit: int | None = None
    classes: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.source)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.source.labels)

    @property
    def num_classes(self) -> int:
        return int(self.source.num_classes)

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        return self.source.image_shape

    def batches(self, batch_size: int = 256, *, shuffle: bool = False, seed: int = 0, augment: bool = False,
                model: Model | None = None) -> Iterator[Batch]:
        """Batches in order (or shuffled with ``seed``); the last one is padded, its ``mask``
        marks the real rows. With ``model``, images of varying size get that model's resize/crop."""
        spec = model.spec if model is not None else None
        if shuffle or augment:
            if spec is None:
                raise JaxnetsError("shuffled or augmented batches need model= (its input size decides the crop)")
            loader = train_loader(spec, self.source, batch_size, seed=seed, augment=augment, shuffle=shuffle)
        elif spec is not None:
            loader = eval_loader(spec, self.source, batch_size)
        else:
            from jaxnets.data.loader import Loader

            loader = Loader(self.source, batch_size, shuffle=False, drop_last=False, pad_last=True)
        return iter(loader.epoch(0))

    def arrays(self, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All images (N, H, W, C) uint8 and labels, in order (images of one size only)."""
        images, labels = [], []
        for batch in self.batches(256):
            keep = batch.mask
            images.append(batch.images[keep])
            labels.append(batch.labels[keep])
            if limit is not None and sum(len(x) for x in labels) >= limit:
                break
        x, y = np.concatenate(images), np.concatenate(labels)
        return (x[:limit], y[:limit]) if limit is not None else (x, y)


def open_data(spec: str, split: str = "test", *, limit: int | None = None,
              classes: str | Sequence[int] | None = None, shots: int | None = None) -> Data:
    """A data set split by its ``--data`` text: ``digits``, ``cifar10:PATH``, ``imagefolder:PATH``,
    ``cub200:PATH`` (and SeaM's other target sets), …

    ``classes`` keeps only these labels (``"0,3,5"`` or a list of ints); ``shots`` keeps N images
    of each class (few-shot sampling, the original SeaM's rule: ``jaxnets.data.spec.few_shot_indices``)."""
    if classes is not None and not isinstance(classes, str):
        classes = ",".join(str(int(c)) for c in classes)
    kept = parse_classes(classes)
    source = open_source(spec, split, limit=limit, classes=kept, shots=shots)
    return Data(source=source, text=spec, split=split, limit=limit,
                classes=tuple(int(c) for c in kept) if kept is not None else None)


def evaluate(model: Model, data: Data, *, batch_size: int = 256, devices: int | None = None) -> dict[str, Any]:
    """Top-1 and top-5 accuracy (and per-class counts) of ``model`` on ``data``.

    The same evaluation as ``jaxnets validate``: returns its results dict (``top1``, ``top5``,
    ``n``, ``correct``, ``per_class``)."""
    from jaxnets.train.evaluate import evaluate as evaluate_loader
    from jaxnets.validate import _mesh

    spec = adapt_to_data(model.spec, data.source, model.num_classes)
    if spec.in_channels != model.spec.in_channels:
        raise JaxnetsError(f"{model.name} takes {model.spec.in_channels}-channel images but the data has "
                           f"{spec.in_channels}; load it with data= (jaxnets.load(..., data=data))")
    result = evaluate_loader(model.module, model.variables, eval_loader(model.spec, data.source, batch_size),
                             model.mean, model.std, model.num_classes, mesh=_mesh(devices), description="evaluate")
    return result.to_json()


def list_models() -> list[str]:
    """Every registered model name (``jaxnets models`` prints them with details)."""
    return model_names()
