"""docs/python.md runs as written: every ```python block, in order, one namespace per section.

The digits section runs everywhere; the ResNet-20 section where ../shared/data exists (its
``SHARED = Path("../shared/data")`` line is pointed at the test's shared-data folder). Beyond the
page's own asserts, the numbers are checked: 776/846 for the converted resnet20, the Python probe
equal to ``jaxnets probe run`` with the same settings, and the composition's numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "python.md"
DIGITS = "## On the digits data"
RESNET = "## ResNet-20 from its PyTorch checkpoint"


def _blocks(section: str) -> list[str]:
    text = PAGE.read_text()
    start = text.index(section)
    end = min((i for i in (text.find("\n## ", start + 1),) if i != -1), default=len(text))
    return re.findall(r"```python\n(.*?)```", text[start:end], flags=re.S)


def _run(blocks: list[str], namespace: dict) -> dict:
    for i, code in enumerate(blocks):
        exec(compile(code, f"{PAGE.name}[block {i}]", "exec"), namespace)  # noqa: S102
    return namespace


def test_every_block_is_run() -> None:
    total = len(re.findall(r"```python\n", PAGE.read_text()))
    assert total == len(_blocks(DIGITS)) + len(_blocks(RESNET)) >= 6


def test_digits_walkthrough(capsys: pytest.CaptureFixture) -> None:
    ns = _run(_blocks(DIGITS), {})
    fixed, alphas = ns["fixed"], ns["alphas"]
    # the same schedule as tests/methods/wfn/test_wfn_digits.py: every weight fixed, few values
    assert fixed.results["final"]["fixed_fraction"] == 1.0
    assert fixed.unique_values <= fixed.results["final"]["codebook_size"]
    assert fixed.accuracy >= 0.95  # 98.61 % here (jax 0.10.2, 2 cores); the baseline 98.06 %
    # the probe of the fixed model: every digits_cnn probe layer scored, pooled features highest
    assert list(alphas) == ["input", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "features"]
    assert all(a is not None and 0 < a < 1.5 for a in alphas.values())
    assert max(alphas, key=alphas.get) == "features"
    # the two compositions report their numbers: SeaM on the fixed model, WFN on SeaM's module
    module, pruned_fixed = ns["module"], ns["pruned_fixed"]
    assert 0 < module.retention < 1 and module.accuracy > 0.5
    assert pruned_fixed.results["final"]["fixed_fraction"] == 1.0 and pruned_fixed.accuracy > 0.5
    out = capsys.readouterr().out
    assert "unique values" in out and "retention" in out and "SeaM's pruned network, weight-fixed" in out


def test_resnet20_walkthrough(shared_data: Path, capsys: pytest.CaptureFixture,
                              monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocks = [b.replace('SHARED = Path("../shared/data")', f"SHARED = Path({str(shared_data)!r})")
              for b in _blocks(RESNET)]
    ns = _run(blocks, {})
    assert (ns["scores"]["correct"], ns["scores"]["n"]) == (776, 846)  # data README: 91.73 %
    assert ns["feats"]["features"].shape == (16, 64)
    python_alphas = ns["result"].alpha_by_layer
    capsys.readouterr()
    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    data = f"cifar10:{shared_data}/cifar10-exact-subset/cifar-10-batches-bin"
    code, _, err = run_cli(["probe", "run", "resnet20", "--weights", weights, "--data", data, "--split", "test",
                            "--layers", "layer3_2,features", "--feature-dimension", "500", "--svd", "exact",
                            "--out", tmp_path / "cli", "-q"], capsys, monkeypatch)
    assert code == 0, err
    cli = json.loads((tmp_path / "cli" / "result.json").read_text())["alpha_by_layer"]
    assert set(cli) == set(python_alphas) == {"layer3_2", "features"}
    for name, alpha in python_alphas.items():
        assert alpha is not None
        np.testing.assert_allclose(alpha, cli[name], rtol=0, atol=0)
