"""Spec §9 check 7: stage/block ids of the layer registry for every architecture of §2.2, the
ResNet rule, and a registry for every registered model."""

from __future__ import annotations

from collections import Counter

import pytest

from jaxnets.methods.hyperplanes.registry import registry_for
from jaxnets.models.api import resolve
from jaxnets.models.registry import model_names

# arch → conv layers per stage, and the stage of the linears (--with-linear)
TABLE = {
    "vgg11": ([1, 1, 2, 2, 2], "5", 3), "vgg11_bn": ([1, 1, 2, 2, 2], "5", 3),
    "vgg13": ([2, 2, 2, 2, 2], "5", 3), "vgg13_bn": ([2, 2, 2, 2, 2], "5", 3),
    "vgg16": ([2, 2, 3, 3, 3], "5", 3), "vgg16_bn": ([2, 2, 3, 3, 3], "5", 3),
    "vgg19": ([2, 2, 4, 4, 4], "5", 3), "vgg19_bn": ([2, 2, 4, 4, 4], "5", 3),
    "vgg19_orig": ([2, 2, 4, 4, 4], "5", 3),
    "alexnet": ([1, 1, 3], "3", 3), "lenet": ([2, 2, 2], "3", 3),
    "mlp": ([], "0", 8), "mlp_bn": ([], "0", 8),
}
TORCH_CONVS = {"vgg19": [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
               "vgg19_bn": [0, 3, 7, 10, 14, 17, 20, 23, 27, 30, 33, 36, 40, 43, 46, 49],
               "alexnet": [0, 3, 6, 8, 10], "lenet": [0, 2, 5, 7, 10, 12]}


def _layers(name: str, with_linear: bool):
    spec = resolve(name)
    return registry_for(spec, spec.create(10), with_linear=with_linear)


@pytest.mark.parametrize("name", sorted(TABLE))
def test_ids_match_the_original_table(name):
    per_stage, linear_stage, n_linear = TABLE[name]
    convs = _layers(name, False)
    assert all(layer.kind == "conv" for layer in convs)
    expected = [(str(s), str(b)) for s, n in enumerate(per_stage) for b in range(n)]
    assert [(layer.stage, layer.block) for layer in convs] == expected
    full = _layers(name, True)
    linears = [layer for layer in full if layer.kind == "linear"]
    assert [(layer.stage, layer.block) for layer in linears] == \
        [(linear_stage, str(b)) for b in range(n_linear)]
    assert full[: len(convs)] == convs
    if name in TORCH_CONVS:
        assert [layer.path for layer in convs] == [f"features_{i}" for i in TORCH_CONVS[name]]
    if name.startswith("vgg19"):
        assert len(convs) == 16


def test_bn_variant_has_the_same_ids_and_knows_its_bn():
    plain, bn = _layers("vgg19", False), _layers("vgg19_bn", False)
    assert [(a.stage, a.block) for a in plain] == [(b.stage, b.block) for b in bn]
    assert all(b.bn == f"features_{int(b.path.split('_')[1]) + 1}" for b in bn)
    assert all(a.bn is None for a in plain)
    alex = _layers("alexnet", False)
    assert [(a.stage, a.block) for a in alex if a.stage == "2"] == [("2", "0"), ("2", "1"), ("2", "2")]


def test_resnet_stage_rule():
    layers = _layers("resnet20", True)
    convs = [layer for layer in layers if layer.kind == "conv"]
    assert len(convs) == 19
    assert Counter(layer.stage for layer in convs) == {"0": 1, "1": 6, "2": 6, "3": 6}
    assert convs[0].path == "conv1" and convs[0].bn == "bn1"
    assert [layer.block for layer in convs if layer.stage == "2"] == [str(i) for i in range(6)]
    assert [(layer.stage, layer.block, layer.path) for layer in layers if layer.kind == "linear"] == \
        [("4", "0", "linear")]
    # the literal pool rule (no max-pool in CIFAR ResNets) puts everything into stage 0
    spec = resolve("resnet20")
    literal = registry_for(spec, spec.create(10), rule="pool")
    assert {layer.stage for layer in literal} == {"0"} and len(literal) == 19
    # torchvision ResNets: 1×1 convs (bottleneck, downsample) are skipped
    r50 = _layers("resnet50", False)
    assert len(r50) == 17 and all(layer.kernel_shape[:2] != (1, 1) for layer in r50)
    assert Counter(layer.stage for layer in r50) == {"0": 1, "1": 3, "2": 4, "3": 6, "4": 3}


@pytest.mark.slow
def test_every_registered_model_has_a_registry():
    for name in model_names():
        layers = _layers(name, True)
        assert layers, name
        for layer in layers:
            assert layer.stage.isdigit() and layer.block.isdigit()
            assert not layer.is_1x1
        ids = [(layer.stage, layer.block) for layer in layers]
        assert len(set(ids)) == len(ids), name
