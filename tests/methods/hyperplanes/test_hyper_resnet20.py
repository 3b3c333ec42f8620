"""resnet20-12fca82f.th on the exact CIFAR-10 subset: projections vs its random init, and a
reinit grid over its 19 conv layers with a rand row (skipped without ../shared/data)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def weights(shared_data):
    path = shared_data / "weights" / "resnet20-12fca82f.th"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


def test_projections_trained_vs_random_init(weights, tmp_path):
    from jaxnets.api import load
    from jaxnets.methods.hyperplanes import ProjectionsConfig, projections

    config = ProjectionsConfig(normalize=True, seed=0, plots=False)
    trained = projections(load("resnet20", weights), None, config, tmp_path / "t").results_json()
    init = projections(load("resnet20", seed=0), None, config, tmp_path / "i").results_json()
    assert len(trained["layers"]) == len(init["layers"]) == 19
    assert init["layers_outside_null_band"] <= 1  # random init: the null model
    assert abs(init["net"]["mass"] - 0.5) <= 4 * 0.5 / (init["net"]["units"] ** 0.5)
    assert trained["layers_outside_null_band"] >= 3  # training biases several layers
    doc = json.loads((tmp_path / "t" / "resnet20-12fca82f.json").read_text())
    assert doc["epoch"] == "resnet20-12fca82f" and sorted(k for k in doc if k.isdigit()) == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_reinit_grid_19_layers_with_rand(weights, cifar_exact, tmp_path):
    from jaxnets.methods.hyperplanes import ReinitConfig, open_snapshot, run_reinit

    listing = tmp_path / "inits.txt"
    listing.write_text(f"{weights}\n")  # its own weights: must reproduce the baseline exactly
    model, test = open_snapshot("resnet20", weights, f"cifar10:{cifar_exact}", limit=256)
    res = run_reinit(model, test, ReinitConfig(rand=True, batch_size=128), tmp_path / "r",
                     donors=listing).results_json()
    assert res["n_test"] == 256 and len(res["layers"]) == 19
    own = res["rows"]["resnet20-12fca82f"]
    assert own == [res["top1_test"]] * 19
    assert res["top1_test"] > 85
    assert max(res["relative_drop"][-1]) > 0.5  # the rand row breaks at least one layer
    assert res["compilations"] == 1
    assert (tmp_path / "r" / "reinit_resnet20-12fca82f.png").is_file()
