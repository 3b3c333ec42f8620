"""Layer surgery: select layers by regex, swap from a donor, re-initialise from a fresh init."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.models.api import init_variables
from jaxnets.models.registry import get_spec
from jaxnets.transforms import surgery


def _vars(seed: int) -> dict:
    spec = get_spec("digits_cnn")
    return init_variables(spec, spec.create(), seed=seed)


def test_select_layers():
    params = _vars(0)["params"]
    assert surgery.layer_paths(params) == ["conv1", "conv2", "conv3", "fc"]
    assert surgery.select_layers(params, r"^conv[12]$") == ["conv1", "conv2"]
    assert surgery.select_layers(params, kernel_ndim=2) == ["fc"]
    assert surgery.select_layers(params, exclude="fc") == ["conv1", "conv2", "conv3"]
    with pytest.raises(JaxnetsError, match="no layer matches"):
        surgery.select_layers(params, "layer9")


def test_swap_layer_is_pure_and_shares_the_rest():
    trained, donor = _vars(0)["params"], _vars(1)["params"]
    out = surgery.swap_layer(trained, "conv2", donor)
    np.testing.assert_array_equal(out["conv2"]["kernel"], donor["conv2"]["kernel"])
    assert out["conv1"] is trained["conv1"] and out["fc"] is trained["fc"]
    assert not np.array_equal(trained["conv2"]["kernel"], donor["conv2"]["kernel"])
    whole = surgery.swap_layer(trained, "fc", donor, keys=None)
    np.testing.assert_array_equal(whole["fc"]["bias"], donor["fc"]["bias"])
    with pytest.raises(JaxnetsError, match="cannot swap layer 'conv9'"):
        surgery.swap_layer(trained, "conv9", donor)
    bad = {**donor, "fc": {"kernel": np.zeros((3, 3)), "bias": donor["fc"]["bias"]}}
    with pytest.raises(JaxnetsError, match="shape"):
        surgery.swap_layer(trained, "fc", bad)


def test_reinit_layer_with_and_without_batch_stats():
    trained, fresh = _vars(0), _vars(7)
    trained = {**trained, "batch_stats": {k: {"mean": v["mean"] + 1, "var": v["var"] * 2}
                                          for k, v in trained["batch_stats"].items()}}
    out = surgery.reinit_layer(trained, "conv1", fresh)
    np.testing.assert_array_equal(out["params"]["conv1"]["kernel"],
                                  fresh["params"]["conv1"]["kernel"])
    assert out["batch_stats"] is trained["batch_stats"]
    out = surgery.reinit_layer(trained, "bn1", fresh, keys=("scale", "bias"),
                               include_batch_stats=True)
    np.testing.assert_array_equal(out["batch_stats"]["bn1"]["mean"],
                                  fresh["batch_stats"]["bn1"]["mean"])
    assert out["batch_stats"]["bn2"] is trained["batch_stats"]["bn2"]
