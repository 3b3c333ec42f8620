"""Default probe layers follow the spec's hooked tensors (P23, §2.1), shape inference only."""

from __future__ import annotations

import pytest

from jaxnets.methods.probe.features import default_layers, layer_dims
from jaxnets.models.registry import get_spec

SPEC_LAYERS = ["input", "layer1_0/conv1", "layer1_0/conv2", "layer2_0/conv1", "layer2_0/conv2",
               "layer3_0/conv1", "layer3_0/conv2", "features"]


def test_resnet18_cifar_default_layers_are_the_spec_eight() -> None:
    spec = get_spec("resnet18_cifar")
    module = spec.create()
    names = default_layers(spec, module)
    assert names == SPEC_LAYERS
    dims = layer_dims(spec, module, names, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    # §2.1's table: 3×32×32, 64×16×16 (twice), 128×8×8 (twice), 256×4×4 (twice), 512
    assert [dims[n] for n in names] == [3072, 16384, 16384, 8192, 8192, 4096, 4096, 512]


@pytest.mark.parametrize("name", ["resnet20", "resnet20_b", "resnet56", "resnet18", "resnet50"])
def test_other_resnets_get_the_spec_layers(name: str) -> None:
    spec = get_spec(name)
    assert default_layers(spec, spec.create()) == SPEC_LAYERS


def test_other_models_keep_the_top_level_outputs() -> None:
    spec = get_spec("digits_cnn")
    assert default_layers(spec, spec.create()) == ["input", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3",
                                                   "features"]
