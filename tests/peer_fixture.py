"""Torchvision reference fixtures that need no torchvision: the rule both sides share.

``scripts/make_peer_fixtures.py`` (run once, where torchvision imports) records for a model its
torchvision state_dict layout — key names, shapes and dtypes, in state_dict order — and the eval
logits torchvision computes for :func:`fixture_input` with the weights :func:`fixture_state`
regenerates from that layout. The CI test (tests/models/test_mobilenet_googlenet.py) rebuilds the
same weights from the same record and compares jaxnets' logits with the stored ones.

The weights, from ``numpy.random.default_rng(record["seed"])`` drawn key after key:
  * integer tensors (``num_batches_tracked``): zeros, nothing drawn;
  * BN ``running_var``: U(0.5, 1.5) (positive); ``running_mean``: N(0, 0.1²);
  * any other 1-d ``weight`` (a BN scale): U(0.5, 1.5); any ``bias``: N(0, 0.1²);
  * conv / Linear weights: N(0, gain / fan_in), fan_in = the product of the shape after the first
    axis, ``gain = record["gain"]`` (2: He's; less where a net amplifies float32 rounding so much
    that two float32 implementations differ by ~1e-4, as MobileNetV2 does at 2);
  * then the head (``record["head"]``, weight and bias) is multiplied by ``record["head_scale"]``
    — the script's ``10 / peak |logit|`` of the unscaled weights when that exceeds 10, else 1 — so
    float32 rounding of large logits cannot exceed the 1e-4 tolerance (as tests/peers does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "peers"
LOGIT_BOUND = 10.0


def head_scale(peak: float) -> float:
    """The factor bringing the largest |logit| down to LOGIT_BOUND (1 when it is already below)."""
    return LOGIT_BOUND / peak if peak > LOGIT_BOUND else 1.0


def fixture_state(record: dict[str, Any], scale: float | None = None) -> dict[str, np.ndarray]:
    """The state_dict (NumPy, torchvision layout) the record's weights are; see the module docstring.

    ``scale`` overrides ``record["head_scale"]`` (the script first draws with 1.0 to measure it).
    """
    rng = np.random.default_rng(record["seed"])
    factor = np.float32(record["head_scale"] if scale is None else scale)
    state: dict[str, np.ndarray] = {}
    for key, shape, dtype in record["keys"]:
        shape = tuple(shape)
        leaf = key.rpartition(".")[2]
        if np.dtype(dtype).kind in "iu":
            value = np.zeros(shape, dtype)
        elif leaf == "running_var" or (leaf == "weight" and len(shape) == 1):
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("running_mean", "bias"):
            value = rng.standard_normal(shape) * 0.1
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(record["gain"] / fan_in)
        value = np.asarray(value, dtype)
        if key in (f"{record['head']}.weight", f"{record['head']}.bias"):
            value = value * factor
        state[key] = value
    return state


def fixture_input(record: dict[str, Any]) -> np.ndarray:
    """The (batch, 3, size, size) float32 NCHW input the stored logits are of."""
    shape = (record["batch"], 3, record["size"], record["size"])
    return np.random.default_rng(record["input_seed"]).standard_normal(shape).astype(np.float32)


def read_record(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))


def logits_of(record: dict[str, Any], entry: str = "logits") -> np.ndarray:
    return np.asarray(record[entry], dtype=np.float32)
