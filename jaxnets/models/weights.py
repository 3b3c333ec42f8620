"""What a set of weights says about its own preprocessing: mean/std, input size, crop, labels.

Every command and :func:`jaxnets.load` ask :func:`weights_preprocessing` before falling back to
the registry's default for the architecture. In order, the record comes from:

1. the weights' own metadata — a jaxnets checkpoint's ``preprocessing`` (or older
   ``normalization``) entry, or the ``jaxnets.*`` entries of a ``.safetensors`` header;
2. a timm ``config.json`` beside the file (``pretrained_cfg``: mean, std, input_size, crop_pct,
   interpolation; ``num_classes``, ``label_names``), as the model hubs ship it;
3. :data:`KNOWN_WEIGHTS`, by file name: the published checkpoints this project supports.

All of it is untrusted input: a record whose values are not what they should be is ignored with
a warning, never half used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jaxnets.converters.safetensors_io import is_safetensors_path, safetensors_metadata
from jaxnets.io import is_jaxnets_checkpoint, read_metadata
from jaxnets.models.registry import NORMALIZATIONS
from jaxnets.ui import warn

MAX_CONFIG_BYTES = 4 * 2**20  # a timm config.json with 21k label names is ~400 KB

CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@dataclass(frozen=True)
class Preprocessing:
    """How the weights expect their input. ``source`` says where the record came from."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "input_size": self.input_size,
                "crop_pct": self.crop_pct, "interpolation": self.interpolation,
                "num_classes": self.num_classes,
                "label_names": list(self.label_names) if self.label_names else None, "source": self.source}

    def describe(self) -> str:
        parts = [f"mean {list(self.mean)}, std {list(self.std)}"]
        if self.input_size:
            parts.append(f"{self.input_size} px")
        if self.crop_pct:
            parts.append(f"crop {self.crop_pct}")
        if self.interpolation:
            parts.append(self.interpolation)
        return f"{', '.join(parts)} (from {self.source})"


def _floats(value: Any) -> tuple[float, ...] | None:
    if not isinstance(value, list | tuple) or not 1 <= len(value) <= 4:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return None
    return tuple(float(v) for v in value)


def parse_preprocessing(record: Any, source: str) -> Preprocessing | None:
    """A checked :class:`Preprocessing` from a JSON-like record, or None (with a warning) if it is bad."""
    if isinstance(record, str) and record in NORMALIZATIONS:
        mean, std = NORMALIZATIONS[record]
        return Preprocessing(mean, std, source=source)
    if not isinstance(record, Mapping):
        return None
    mean, std = _floats(record.get("mean")), _floats(record.get("std"))
    if mean is None or std is None or len(mean) != len(std) or not all(s > 0 for s in std):
        warn(f"{source}: ignoring its preprocessing record (mean/std are not matching lists of numbers, std > 0)")
        return None
    size = record.get("input_size")
    if isinstance(size, list | tuple) and size:
        size = size[-1]  # timm's (C, H, W)
    crop = record.get("crop_pct")
    interpolation = record.get("interpolation")
    classes = record.get("num_classes")
    labels = record.get("label_names")
    return Preprocessing(
        mean=mean, std=std,
        input_size=size if type(size) is int and 0 < size <= 8192 else None,
        crop_pct=(float(crop) if isinstance(crop, int | float) and not isinstance(crop, bool) and 0 < crop <= 1
                  else None),
        interpolation=interpolation if isinstance(interpolation, str) and len(interpolation) <= 20 else None,
        num_classes=classes if type(classes) is int and classes > 0 else None,
        label_names=(tuple(labels) if isinstance(labels, list | tuple) and all(isinstance(n, str) for n in labels)
                     and (type(classes) is not int or len(labels) == classes) else None),
        source=source)


def _imagenet(**extra: Any) -> dict[str, Any]:
    mean, std = NORMALIZATIONS["imagenet"]
    return {"mean": mean, "std": std, "input_size": 224, "crop_pct": 0.875, "interpolation": "bilinear",
            "num_classes": 1000, **extra}


def _cifar10(norm: str) -> dict[str, Any]:
    mean, std = NORMALIZATIONS[norm]
    return {"mean": mean, "std": std, "input_size": 32, "num_classes": 10, "label_names": CIFAR10_LABELS}


# Published checkpoints, by file name (the name carries the first hex digits of the file's hash).
_TORCHVISION = ("resnet18-5c106cde", "resnet18-f37072fd", "resnet34-333f7ec4", "resnet34-b627a593",
                "resnet50-19c8e357", "resnet50-0676ba61", "resnet101-5d3b4d8f", "resnet101-63fe2227",
                "resnet152-b121ed2d", "resnet152-394f9c45", "resnext50_32x4d-7cdf4587",
                "resnext101_32x8d-8ba56ff5", "wide_resnet50_2-95faca4d", "wide_resnet101_2-32ee1156",
                "vgg11-bbd30ac9", "vgg11-8a719046", "vgg13-c768596a", "vgg13-19584684", "vgg16-397923af",
                "vgg19-dcbb9e9d", "vgg11_bn-6002323d", "vgg13_bn-abd245e5", "vgg16_bn-6c64b313",
                "vgg19_bn-c79401a0", "alexnet-owt-7be5be79", "alexnet-owt-4df8aa71", "densenet121-a639ec97",
                "mobilenet_v2-b0353104", "mobilenet_v3_small-047dcff4")
KNOWN_WEIGHTS: dict[str, dict[str, Any]] = {
    # akamaster/pytorch_resnet_cifar10: trained with ImageNet mean/std (shared/data/README.md)
    **{f"{name}.th": _cifar10("imagenet") for name in (
        "resnet20-12fca82f", "resnet32-d509ac18", "resnet44-014dd654", "resnet56-4bfd9763",
        "resnet110-1d1ed7c2", "resnet1202-f3b1deed")},
    # torchvision's ImageNet weights: resize 256 → centre crop 224, bilinear
    **{f"{name}.pth": _imagenet() for name in _TORCHVISION},
    # torchvision's second MobileNetV2 recipe: resize 232 → centre crop 224
    "mobilenet_v2-7ebf99e0.pth": _imagenet(crop_pct=224 / 232),
    # torchvision's pretrained GoogLeNet runs with transform_input=True, which maps ImageNet-normalised
    # channels to (x − 0.5) / 0.5: the same as feeding jaxnets' googlenet (transform off) mean = std = 0.5
    "googlenet-1378be20.pth": _imagenet(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    # chenyaofo/pytorch-cifar-models (SeaM's CIFAR models): their training statistics (specs/seam.md §5.4)
    "cifar10_resnet20-4118986f.pt": _cifar10("cifar_2020"),
    "cifar10_vgg16_bn-6ee7ea24.pt": _cifar10("cifar_2020"),
    "cifar100_resnet20-23dac2f1.pt": {"mean": (0.5070, 0.4865, 0.4409), "std": (0.2673, 0.2564, 0.2761),
                                      "input_size": 32, "num_classes": 100},
    "cifar100_vgg16_bn-7d8c4031.pt": {"mean": (0.5070, 0.4865, 0.4409), "std": (0.2673, 0.2564, 0.2761),
                                      "input_size": 32, "num_classes": 100},
    # Google's MLP-Mixer release: inputs scaled to [-1, 1]
    "Mixer-B_16.npz": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": 224},
}


def _from_metadata(path: Path) -> Preprocessing | None:
    if is_jaxnets_checkpoint(path):
        meta = read_metadata(path)
        record = meta.get("preprocessing") or meta.get("normalization")
        found = parse_preprocessing(record, f"{path}'s metadata") if record is not None else None
        if found is not None and found.num_classes is None and type(meta.get("num_classes")) is int:
            found = replace(found, num_classes=meta["num_classes"])
        return found
    if is_safetensors_path(path):
        meta = safetensors_metadata(path)
        for key in ("jaxnets.preprocessing", "jaxnets.normalization"):
            if key in meta:
                try:
                    return parse_preprocessing(json.loads(meta[key]), f"{path.name}'s metadata")
                except json.JSONDecodeError:
                    return parse_preprocessing(meta[key], f"{path.name}'s metadata")
    return None


def _from_timm_config(path: Path) -> Preprocessing | None:
    config = path.parent / "config.json"
    if path.is_dir() or not config.is_file() or config.stat().st_size > MAX_CONFIG_BYTES:
        return None
    try:
        data = json.loads(config.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, OSError):
        warn(f"{config}: not valid JSON; ignored")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("pretrained_cfg"), dict):
        return None
    record = {**data["pretrained_cfg"], "num_classes": data.get("num_classes"),
              "label_names": data.get("label_names") or data["pretrained_cfg"].get("label_names")}
    return parse_preprocessing(record, f"{config} (timm pretrained_cfg)")


def weights_preprocessing(weights: str | Path | None) -> Preprocessing | None:
    """The preprocessing the weights record or are known for; None when nothing is known."""
    if weights is None:
        return None
    path = Path(weights)
    if not path.exists():
        return None
    found = _from_metadata(path) or _from_timm_config(path)
    if found is None and path.name in KNOWN_WEIGHTS:
        found = parse_preprocessing(KNOWN_WEIGHTS[path.name], f"the known-weights table ({path.name})")
    return found


def input_normalization(spec: Any, weights: str | Path | None = None, override: str | None = None
                        ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) to feed ``spec`` loaded with ``weights``: ``override`` (``--normalize``) if given,
    else what the weights record or are known for, else the registry's default for the model."""
    from jaxnets.data.transforms import normalization_for

    if override:
        return normalization_for(spec, override)
    found = weights_preprocessing(weights)
    if found is not None and len(found.mean) == spec.in_channels:
        return found.mean, found.std
    return normalization_for(spec, None)
