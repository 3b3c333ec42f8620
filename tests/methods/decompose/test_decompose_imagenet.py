"""The ResNet-50 / ImageNet path on a tiny synthetic ``ILSVRC/{train,val}`` folder, random weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("imagenet") / "ILSVRC"
    rng = np.random.default_rng(0)
    for split, n in (("train", 2), ("val", 1)):
        for cls in ("n01440764", "n01443537"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(40, 80, size=2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(d / f"{cls}_{i}.JPEG")
    return root


@pytest.mark.slow
def test_resnet50_validate_and_finetune(ilsvrc, tmp_path, capsys, monkeypatch):
    from jaxnets.methods.decompose.indices import write_indices

    rng = np.random.default_rng(1)
    table = write_indices(tmp_path / "r50.json", np.stack([rng.permutation(2048)[:50] for _ in range(1000)]))
    code, out, err = run_cli(["validate", "resnet50", "--data", f"imagefolder:{ilsvrc}", "--split", "val",
                              "--indices", table, "--batch-size", "2", "--out", tmp_path / "v", "-q"],
                             capsys, monkeypatch)
    assert code == 0, err
    r = json.loads((tmp_path / "v" / "results.json").read_text())
    assert r["decomposed"]["k"] == 50 and r["decomposed"]["n"] == r["n"] == 2
    code, out, err = run_cli(["finetune", "resnet50", "--data", f"imagefolder:{ilsvrc}", "--indices", table,
                              "--epochs", "1", "--batch-size", "2", "--eval-batch-size", "2", "--no-export",
                              "--no-initial-eval", "--out", tmp_path / "f", "-q"], capsys, monkeypatch)
    assert code == 0, err
    r = json.loads((tmp_path / "f" / "results.json").read_text())
    assert r["lr"] == 1e-6 and r["eval_split"] == "val" and r["steps"] == 2 and r["k"] == 50


@pytest.mark.needs_shared_data
def test_shipped_resnet50_indices_fit_the_model(shared_data):
    from jaxnets.methods.decompose.head import head_shape
    from jaxnets.methods.decompose.indices import load_indices
    from jaxnets.models.api import abstract_variables, resolve

    spec = resolve("resnet50")
    d, c = head_shape(abstract_variables(spec, spec.create())["params"], spec.head)
    table = load_indices(shared_data / "decomposing-the-deep" / "resnet50_imagenet_indices.json",
                         num_classes=c, num_features=d)
    assert table.shape == (1000, 50) and len(np.unique(table)) == 1975
