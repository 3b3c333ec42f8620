"""Sparsity Probe end to end: resnet20-12fca82f.th on the exact CIFAR-10 subset (846 test images)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli  # noqa: E402

from jaxnets.methods.probe.features import CIFAR_RESNET_LAYERS  # noqa: E402


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_probe_resnet20_exact_subset(cifar_exact: Path, shared_data: Path, tmp_path: Path, capsys,
                                     monkeypatch) -> None:
    out = tmp_path / "r20"
    # 846 rows: the SVD target must stay below N; the exact Gram SVD keeps this test short.
    code, stdout, err = run_cli([
        "probe", "run", "resnet20", "--weights", shared_data / "weights" / "resnet20-12fca82f.th",
        "--data", f"cifar10:{cifar_exact}", "--split", "test", "--feature-dimension", "500", "--svd", "exact",
        "--calc-test", "--out", out, "--batch-size", "128"], capsys, monkeypatch)
    assert code == 0, err
    doc = json.loads((out / "result.json").read_text())
    assert [lay["name"] for lay in doc["layers"]] == list(CIFAR_RESNET_LAYERS)
    assert [lay["dim"] for lay in doc["layers"]] == [3072, 16384, 16384, 8192, 8192, 4096, 4096, 64]
    assert doc["sizes"] == list(range(-1, 7)) and doc["config"]["n_samples"] == 846
    assert abs(doc["test_stats"]["top_1_accuracy"] - 0.9173) < 0.002  # the data README's PyTorch number
    alpha = dict(zip(doc["sizes"], doc["alpha_mean"], strict=True))
    # Rising from early to late layers: the pooled features score clearly above every early layer,
    # stage 3 at least as high as the input/stage 1.
    assert alpha[6] > max(alpha[i] for i in range(-1, 4)) + 0.05, alpha
    assert min(alpha[4], alpha[5]) >= max(alpha[-1], alpha[0], alpha[1]), alpha
    # docs/probe.md's table, to its four decimals
    table = [0.4260, 0.4260, 0.4260, 0.4305, 0.4288, 0.4347, 0.4347, 0.5658]
    assert [round(a, 4) for a in doc["alpha_mean"]] == table, doc["alpha_mean"]
    assert (out / "result.png").stat().st_size > 1000
    assert json.loads((out / "config.json").read_text())["command"] == "probe"
