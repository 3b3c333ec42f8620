"""Write tests/fixtures/peers/<model>.json from real torchvision (run once; CI only reads them).

Needs torch + torchvision (the peer venv of tests/peers, README "Peer parity"), from the repo root:

    PYTHONPATH=$PWD peer-venv/bin/python scripts/make_peer_fixtures.py [googlenet mobilenet_v2 …]

For each model: torchvision's state_dict layout (key, shape, dtype in state_dict order), the
weights tests/peer_fixture.py regenerates from it loaded with ``strict=True``, and the eval
logits for the fixed input (tests/peer_fixture.py says how both are drawn). GoogLeNet is built
as its pretrained file is laid out (``aux_logits=True``: the aux heads' keys are in the file) and
its logits are stored twice: ``transform_input`` off (the class default) and on (torchvision's
pretrained setting).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from peer_fixture import FIXTURES, fixture_input, fixture_state, head_scale  # noqa: E402

SIZE, BATCH, SEED, INPUT_SEED = 64, 2, 0, 1


def _googlenet() -> torch.nn.Module:
    return torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)


# jaxnets name → (torchvision builder, the head Linear's module path, weight gain). MobileNetV2 at
# gain 2 amplifies rounding: torch's and jaxnets' float32 logits are both ~7e-5 from float64; at
# 1.5 they are ~1e-5 off and the logits still vary with the input by ~2 (the others stay at 2:
# at 1.5 MobileNetV3-small's logits hardly depend on the input).
MODELS: dict[str, tuple[Callable[[], torch.nn.Module], str, float]] = {
    "googlenet": (_googlenet, "fc", 2.0),
    "mobilenet_v2": (lambda: torchvision.models.mobilenet_v2(weights=None), "classifier.1", 1.5),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(weights=None), "classifier.3", 2.0),
}


def _logits(model: torch.nn.Module, state: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()}, strict=True)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _rows(logits: np.ndarray) -> list[list[float]]:
    # float32 → shortest decimal that reads back as the same float32
    return [[float(np.format_float_positional(v, unique=True)) for v in row] for row in logits.astype(np.float32)]


def make(name: str) -> dict[str, Any]:
    build, head, gain = MODELS[name]
    model = build()
    record: dict[str, Any] = {
        "model": name, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "size": SIZE, "batch": BATCH, "seed": SEED, "input_seed": INPUT_SEED, "head": head,
        "gain": gain,
        "keys": [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in model.state_dict().items()],
    }
    x = fixture_input(record)
    peak = float(np.abs(_logits(model, fixture_state(record, scale=1.0), x)).max())
    record["head_scale"] = head_scale(peak)
    state = fixture_state(record)
    record["checksum"] = float(sum(np.abs(v.astype(np.float64)).sum() for v in state.values()))
    record["logits"] = _rows(_logits(model, state, x))
    if name == "googlenet":
        model.transform_input = True
        record["logits_transform_input"] = _rows(_logits(model, state, x))
    return record


def main(names: list[str]) -> None:
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in names or list(MODELS):
        record = make(name)
        path = FIXTURES / f"{name}.json"
        path.write_text(json.dumps(record, separators=(",", ":")) + "\n", "utf-8")
        print(f"{path}: {len(record['keys'])} keys, head scale {record['head_scale']:.4g}, "
              f"{path.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main(sys.argv[1:])
