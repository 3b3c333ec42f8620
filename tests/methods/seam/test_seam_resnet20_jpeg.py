"""resnet20-12fca82f.th re-engineered for cat vs dog on the JPEG CIFAR-10 (a few epochs, --limit)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_seam_resnet20_cat_vs_dog(shared_data: Path, cifar_jpeg: Path, tmp_path: Path) -> None:
    from jaxnets.methods.seam.runner import run_reengineer

    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    summary = run_reengineer({
        "model": "resnet20", "weights": weights, "data": f"imagefolder:{cifar_jpeg}",
        "target": "binary:3,5", "lr_mask": 0.05, "lr_head": 0.1, "alpha": 1.0, "epochs": 7,
        "limit": 640, "test_limit": 400, "seed": 0, "out": tmp_path, "plots": False,
    })
    assert summary["n_entries"] == 268_346  # option A: 19 convs + linear (no shortcut convs)
    # retention falls well below 1 while the target accuracy stays at or above the original's
    assert summary["retention"] < 0.95  # measured 0.919 (acc 0.8125 vs 0.7725) on 2 busy cores
    assert summary["acc"] >= summary["acc_pre"]
    assert summary["acc_pre"] > 0.6
