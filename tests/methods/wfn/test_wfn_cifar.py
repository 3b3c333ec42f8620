"""WFN on the real resnet20-12fca82f.th checkpoint and the JPEG CIFAR-10 (short schedule)."""

from __future__ import annotations

import pytest


def run_wfn(opts: dict) -> dict:
    """The library calls ``jaxnets wfn run`` makes, from a dict of its options → the summary."""
    import dataclasses

    from jaxnets.api import load, open_data
    from jaxnets.methods.wfn import WFNConfig, run

    fields = {f.name for f in dataclasses.fields(WFNConfig)}
    config = WFNConfig(**{k: v for k, v in opts.items() if k in fields})
    train = open_data(opts["data"], "train", limit=opts.get("limit"))
    test = open_data(opts["data"], "test", limit=opts.get("test_limit"))
    model = load(opts["model"], opts.get("weights"), num_classes=train.num_classes, data=train, seed=config.seed)
    return run(model, train, config, run_dir=opts["out"], test_data=test, resume=opts.get("resume")).summary


@pytest.mark.slow
def test_resnet20_jpeg_cifar_short_schedule(shared_data, cifar_jpeg, tmp_path):
    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    s = run_wfn({"model": "resnet20", "weights": weights, "data": f"imagefolder:{cifar_jpeg}",
                 "limit": 256, "test_limit": 500, "batch_size": 64, "distance_allowed": 0.0075,
                 "percentages": "0.6,0.9,1.0", "fixing_epochs": 1, "bn_inc": True,
                 "tensorboard": False, "out": tmp_path / "run"})
    assert s["fixed_fraction"] == 1.0
    assert s["quantised_values"] == 269_722  # every parameter: convs, BN γ/β (--bn-inc), fc
    assert s["unique_all"] <= s["codebook_size"] < 1000
    assert s["baseline_accuracy"] > 0.75  # the checkpoint on JPEG CIFAR-10 (81 % on all 10k)
    assert s["final_accuracy"] > s["baseline_accuracy"] - 0.15
