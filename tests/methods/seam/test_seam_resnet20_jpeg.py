"""resnet20-12fca82f.th re-engineered for cat vs dog on the JPEG CIFAR-10 (a few epochs, --limit).

CI settings vs the spec's (README: lr_mask 0.05, α 1 for ResNet20-CIFAR10 binary problems, 300
epochs of 157 steps): 640 training images are 10 steps per epoch, so 8 epochs are 60 joint steps
instead of ~47,000. A score that gets no consistent CE signal drifts down at a rate ∝ α/N under
Adam, so α = 10 stands in for the missing steps (α 1 reaches only retention 0.919 in 7 epochs);
lr_mask, lr_head, initial score 1.0, the strict `> 0` threshold and the §2.7 selection rule are the
original's. The full-data command with the spec's values is in docs/seam.md ("To run").
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_seam_resnet20_cat_vs_dog(shared_data: Path, cifar_jpeg: Path, tmp_path: Path) -> None:
    from jaxnets.api import load
    from jaxnets.methods.seam import ReengineerConfig, reengineer
    from jaxnets.methods.seam.loaders import open_split
    from jaxnets.methods.seam.runner import run_folder

    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    data = f"imagefolder:{cifar_jpeg}"
    train, test = open_split(data, "train", partial=True), open_split(data, "test", partial=True)
    model = load("resnet20", weights, data=test)
    config = ReengineerConfig(target="binary:3,5", lr_mask=0.05, lr_head=0.1, alpha=10.0, epochs=8,
                              limit=640, test_limit=400, seed=0, plots=False)
    summary = reengineer(model, train, config, run_folder(tmp_path, config), test_data=test).to_json()
    assert summary["n_entries"] == 268_346  # option A: 19 convs + linear (no shortcut convs)
    # Retention falls well below 1 while the target accuracy stays at or above the original's.
    # Measured on 2 busy cores: retention 0.7316 at epoch 7, acc 0.8200 vs the original's 0.7725.
    assert summary["acc_pre"] == pytest.approx(0.7725, abs=0.01)
    assert not summary["used_fallback"]  # a selected snapshot, not the acc − r fallback
    assert summary["acc"] >= summary["acc_pre"]
    assert summary["retention"] <= 0.8
    assert summary["epoch"] == 7 and summary["retention"] == pytest.approx(0.7316, abs=0.005)  # docs/results.md
    assert summary["flops"]["flops_sparse"] < 0.85 * summary["flops"]["flops_dense"]
