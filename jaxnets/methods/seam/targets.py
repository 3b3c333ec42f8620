"""Target problems and their data sets (specs/seam.md §2.8, §3.1).

``--target`` forms:

* ``binary:T`` — one class vs the rest, as in the original: positives = every image of ``T`` in
  dataset order (label 0); negatives = the other images' indices shuffled by NumPy's legacy
  ``RandomState(0)``, the first ``|positives|`` kept (label 1). Balanced 50/50.
* ``binary:A,B`` — a class pair (extension): every image of ``A`` (label 0) then every image of
  ``B`` (label 1), dataset order.
* ``superclass:I`` — a predefined superclass: CIFAR-100 coarse class ``I`` (0..19) when the data
  has 100 classes, ImageNet superclass ``I`` (0..66) when it has 1000; fine classes relabelled
  0..K-1 in ascending class order. ``--superclass-type random`` (non-original extension) draws
  ``--n-classes`` classes with Python's ``random.seed(seed)`` instead.

The original model's accuracy on the problem (§3.1): binary — correct iff
``(argmax over all C logits == T) == (label == T)``; superclass — correct iff the full C-way
argmax equals the original label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxnets.data.sources import Source, Subset
from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam import superclasses

SUPERCLASS_TYPES = ("predefined", "random")


@dataclass(frozen=True)
class Target:
    kind: str  # "binary" | "pair" | "superclass"
    classes: tuple[int, ...]  # original class ids: (T,), (A, B) or the superclass members
    num_classes: int  # C of the data / model
    name: str = ""

    @property
    def num_targets(self) -> int:
        return 2 if self.kind in ("binary", "pair") else len(self.classes)

    @property
    def positive(self) -> int:
        return self.classes[0]

    def describe(self) -> str:
        if self.kind == "binary":
            return f"class {self.positive} vs rest (binary, balanced)"
        if self.kind == "pair":
            return f"class {self.classes[0]} vs class {self.classes[1]} (binary pair)"
        return f"superclass {self.name} = classes {list(self.classes)} ({self.num_targets}-way)"

    def to_json(self) -> dict:
        return {"kind": self.kind, "classes": list(self.classes), "num_targets": self.num_targets,
                "num_classes": self.num_classes, "name": self.name}


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise JaxnetsError(f"--target {what}: expected integers, got '{text}'") from None


def parse_target(text: str, num_classes: int, *, superclass_type: str = "predefined",
                 n_classes: int | None = None, seed: int = 0) -> Target:
    """Parse ``--target`` against a data set of ``num_classes`` classes (one-line errors)."""
    kind, sep, rest = (text or "").strip().partition(":")
    kind = kind.lower()
    if superclass_type not in SUPERCLASS_TYPES:
        raise JaxnetsError(f"--superclass-type must be one of {', '.join(SUPERCLASS_TYPES)} "
                           f"(got '{superclass_type}')")
    if kind == "binary" and sep:
        ids = _ints(rest, "binary")
        if len(ids) not in (1, 2):
            raise JaxnetsError(f"--target binary:{rest}: give one class (vs rest) or two (a pair), "
                               "e.g. binary:3 or binary:3,5")
        bad = [c for c in ids if not 0 <= c < num_classes]
        if bad:
            raise JaxnetsError(f"--target class {bad[0]} is out of range: the data has classes "
                               f"0..{num_classes - 1}")
        if len(ids) == 2 and ids[0] == ids[1]:
            raise JaxnetsError("--target binary:A,B needs two different classes")
        return Target("binary" if len(ids) == 1 else "pair", tuple(ids), num_classes)
    if kind == "superclass" and sep:
        if superclass_type == "random":
            if n_classes is None:
                raise JaxnetsError("--superclass-type random needs --n-classes")
            classes = superclasses.random_superclass(num_classes, n_classes, seed)
            return Target("superclass", tuple(classes), num_classes,
                          name=f"random-{n_classes}-seed{seed}")
        ids = _ints(rest, "superclass")
        if len(ids) != 1:
            raise JaxnetsError(f"--target superclass:{rest}: give one superclass index")
        idx = ids[0]
        if num_classes == 100:
            return Target("superclass", tuple(superclasses.cifar100_superclass(idx)), num_classes,
                          name=f"cifar100-{idx}")
        if num_classes == 1000:
            name, _, classes = superclasses.imagenet_superclass(idx)
            return Target("superclass", tuple(classes), num_classes, name=f"imagenet-{idx}-{name}")
        raise JaxnetsError(f"predefined superclasses exist for CIFAR-100 and ImageNet only (the data "
                           f"has {num_classes} classes); use --superclass-type random")
    raise JaxnetsError(f"unknown --target '{text}'; use binary:T, binary:A,B or superclass:I")


def binary_indices(labels: np.ndarray, tc: int) -> tuple[np.ndarray, np.ndarray]:
    """(positives, negatives) positions of the balanced one-vs-rest subset (§2.8)."""
    labels = np.asarray(labels)
    pos = np.flatnonzero(labels == tc)
    others = np.flatnonzero(labels != tc)
    # The original: numpy.random.seed(0); numpy.random.shuffle(index array). RandomState(0) is
    # the same legacy Mersenne-Twister stream.
    np.random.RandomState(0).shuffle(others)
    return pos, others[: len(pos)]


def _limit_parts(parts: list[np.ndarray], limit: int | None) -> list[np.ndarray]:
    """Keep the first ``limit // len(parts)`` of each part (balanced), at least one each."""
    if limit is None:
        return parts
    if limit < len(parts):
        raise JaxnetsError(f"--limit {limit} is smaller than the {len(parts)} target classes")
    each = limit // len(parts)
    return [p[:each] for p in parts]


def target_indices(labels: np.ndarray, target: Target, limit: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(source positions, target labels 0..K-1) of the target problem's split."""
    labels = np.asarray(labels)
    if target.kind == "binary":
        parts = list(binary_indices(labels, target.positive))
    else:
        parts = [np.flatnonzero(labels == c) for c in target.classes]
    parts = _limit_parts(parts, limit)
    if any(len(p) == 0 for p in parts):
        raise JaxnetsError(f"the split has no images for part of the target ({target.describe()})")
    idx = np.concatenate(parts)
    new = np.concatenate([np.full(len(p), k, np.int64) for k, p in enumerate(parts)])
    return idx, new


def target_sources(source: Source, target: Target, limit: int | None = None
                   ) -> tuple[Source, Source]:
    """(relabelled subset for re-engineering, the same images with original labels)."""
    idx, new = target_indices(source.labels, target, limit)
    relabelled = Subset(source, idx)
    relabelled.labels = new
    relabelled.num_classes = target.num_targets
    if target.kind == "binary":
        names = [source.class_names[target.positive], "other"]
    elif target.kind == "pair":
        names = [source.class_names[c] for c in target.classes]
    else:
        names = [source.class_names[c] for c in target.classes]
    relabelled.class_names = names
    original = Subset(source, idx)
    return relabelled, original


def original_correct(pred_c: np.ndarray, labels_c: np.ndarray, target: Target) -> np.ndarray:
    """Per-sample correctness of the original model on the target problem (§3.1)."""
    pred_c, labels_c = np.asarray(pred_c), np.asarray(labels_c)
    if target.kind in ("binary", "pair"):
        return (pred_c == target.positive) == (labels_c == target.positive)
    return pred_c == labels_c
