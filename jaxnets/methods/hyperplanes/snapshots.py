"""Snapshots of a ``jaxnets train`` run as the hyperplane tools read them (spec §3.2, §7 #9).

A snapshot's metadata says how the model was trained: the data set, the class list (a
subsampled run's classes are reused, never re-sampled), the head size, the seed and the size the
model was fed (``upscale``). :func:`open_snapshot` turns a snapshot into a :class:`jaxnets.Model`
(through :func:`jaxnets.api.load`) and the test split it was trained for; :func:`list_donors`
reads the snapshots a ``reinit`` grid swaps in.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jaxnets.api import Data, Model, load, open_data
from jaxnets.data import splits
from jaxnets.data.resize import FixedSizeSource, parse_upscale
from jaxnets.data.spec import parse_data_spec
from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.io import is_jaxnets_checkpoint, read_metadata
from jaxnets.methods.hyperplanes.labels import epoch_label
from jaxnets.models.api import resolve
from jaxnets.models.registry import ModelSpec
from jaxnets.ui import warn


def snapshot_metadata(path: str | Path | None) -> dict[str, Any]:
    """A jaxnets snapshot's metadata; ``{}`` for PyTorch / npz files (and None)."""
    return read_metadata(path) if path and is_jaxnets_checkpoint(path) else {}


def check_snapshot_model(path: str | Path | None, arch: str, what: str) -> dict[str, Any]:
    """The snapshot's metadata, after checking it holds ``arch`` (a torch file cannot tell)."""
    meta = snapshot_metadata(path)
    if meta.get("model") not in (None, arch):
        raise CheckpointError(f"{what} {path} holds a '{meta['model']}' snapshot, not '{arch}'")
    return meta


def dataset_name(text: str | None, class_list: list[int] | None, with_suffix: bool) -> str:
    """The data set's name as the original JSON records it (``cifar10``, ``cifar10_5`` with a
    5-class subsample when ``with_suffix``); ``""`` without data."""
    if not text:
        return ""
    spec = parse_data_spec(text)
    name = spec.name if spec.kind == "tfds" else spec.kind.replace("-py", "")
    return f"{name}_{len(class_list)}" if with_suffix and class_list else name


def training_normalization(weights: str | Path, spec: ModelSpec) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The normalisation the snapshot's training run used (its ``config.json``: ``--unnormalize``,
    ``--normalize``); None when the run folder does not say."""
    from jaxnets.data.transforms import normalization_for

    config = Path(weights).absolute().parent.parent / "config.json"
    if not config.is_file():
        return None
    try:
        train_opts = json.loads(config.read_text()).get("options", {})
    except (OSError, json.JSONDecodeError):
        return None
    if train_opts.get("unnormalize"):
        return (0.0,) * spec.in_channels, (1.0,) * spec.in_channels
    if train_opts.get("normalize"):
        return normalization_for(spec, train_opts["normalize"])
    return None


def snapshot_data(weights: str | Path | None, data: str | None = None, *, split: str = "test",
                  limit: int | None = None, classes: str | None = None) -> Data | None:
    """``data`` (default: the snapshot's own data set) as the snapshot's training run saw it:
    relabelled to its class list and at the size it fed the model (``upscale``); None when
    neither ``data`` nor the metadata names a data set."""
    meta = snapshot_metadata(weights)
    text = data or meta.get("dataset")
    if not text:
        return None
    opened = open_data(text, split, limit=limit, classes=classes)
    source = opened.source
    if meta.get("class_list"):
        source = splits.relabel(source, meta["class_list"])
    if "upscale" in meta and source.image_shape is not None:
        # jaxnets train feeds fixed-size data at its own size or the --upscale size, never the
        # 224-px models' ImageNet resize: evaluate at the size the snapshot was trained on.
        source = FixedSizeSource(source, parse_upscale(meta["upscale"], meta.get("upscale_padding")))
    return dataclasses.replace(opened, source=source)


def open_snapshot(model: str | ModelSpec, weights: str | Path | None = None, data: str | None = None, *,
                  split: str = "test", limit: int | None = None, classes: str | None = None,
                  num_classes: int | None = None, normalize: str | None = None,
                  seed: int = 0) -> tuple[Model, Data | None]:
    """The model (:func:`jaxnets.api.load`) and the data of a snapshot, as its training run had them.

    The data (and its input channels), the class list and the head size default to the
    snapshot's metadata (:func:`snapshot_data`); the normalisation is ``normalize``, else the
    training run's (:func:`training_normalization`), else :func:`jaxnets.api.load`'s.
    ``weights=None`` is a random init from ``seed``.
    """
    arch = resolve(model).name
    meta = check_snapshot_model(weights, arch, "weights")
    test = snapshot_data(weights, data, split=split, limit=limit, classes=classes)
    class_list = meta.get("class_list")
    n = num_classes or meta.get("num_classes") or (len(class_list) if class_list else None) \
        or (test.num_classes if test is not None else None)
    net = load(model, weights, num_classes=n, normalize=normalize, data=test, seed=seed)
    if weights is not None and not normalize:
        recorded = training_normalization(weights, net.spec)
        if recorded is not None:
            net = dataclasses.replace(net, mean=tuple(recorded[0]), std=tuple(recorded[1]))
    return net, test


def list_donors(inits_from: str | Path, legacy: bool = False) -> list[tuple[str, Path]]:
    """(label, path) per donor snapshot in list order; missing entries skipped with a warning.

    ``inits_from`` is a text file with one snapshot path per line (relative paths are tried
    against the list's folder too) or a snapshots folder: every jaxnets snapshot in it, ordered by
    epoch, one per label.
    """
    root = Path(inits_from)
    if not root.exists():
        raise JaxnetsError(f"--inits-from {root}: file not found (a text file with one snapshot "
                           "path per line, or a snapshots folder)")
    if root.is_dir():
        found = sorted(p for p in root.iterdir() if is_jaxnets_checkpoint(p))
        if not found:
            raise JaxnetsError(f"--inits-from {root}: the folder holds no jaxnets snapshot")
        labelled = sorted(((epoch_label(p, tool="reinit", legacy=legacy), p) for p in found),
                          key=lambda t: (int(t[0]), str(t[1])))
        # jaxnets' final snapshot repeats the last epoch's weights: keep one per label
        out, seen = [], set()
        for label, p in labelled:
            if label not in seen:
                seen.add(label)
                out.append((label, p))
        return out
    out = []
    lines = root.read_text().splitlines()
    if not any(line.strip() for line in lines):
        raise JaxnetsError(f"--inits-from {root} is empty: list one snapshot path per line")
    for line in lines:
        text = line.strip()
        path = Path(text)
        if text and not path.is_absolute() and not path.exists() and (root.parent / path).exists():
            path = root.parent / path  # relative to the list file
        if not text or not path.exists():
            warn(f"--inits-from: skipping missing snapshot '{text}'")
            continue
        out.append((epoch_label(path, tool="reinit", legacy=legacy), path))
    return out


def find_snapshots(folder: str | Path) -> list[tuple[str, Path]]:
    """(label, path) of every jaxnets snapshot in ``folder``, ordered by epoch."""
    return list_donors(folder, legacy=False)
