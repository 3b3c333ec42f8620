"""WFN on the original ``get_model``'s other networks (spec §5): GoogLeNet (Inception branches,
ceil-mode pools) and MobileNetV2 (depthwise convs), random weights, a handful of tiny images at
the models' minimum input size — every quantised value ends fixed, the layout is the PyTorch one."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxnets.api import Data, load
from jaxnets.data.resize import FixedSizeSource
from jaxnets.data.sources import ArraySource
from jaxnets.methods.wfn import WFNConfig, run
from jaxnets.methods.wfn.layout import Layout


def _tiny_data(split: str, size: int, n: int = 8) -> Data:
    rng = np.random.default_rng(0 if split == "train" else 1)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    source = ArraySource(images, np.arange(n) % 10, name="synthetic", split=split,
                         class_names=[str(i) for i in range(10)])
    # fed at their own size (a 224-px model would otherwise get the ImageNet resize/crop)
    return Data(FixedSizeSource(source), text=f"synthetic-{size}px", split=split)


# (model, minimum input size, fixing epochs): the training steps of both compile for a minute or more on
# two busy cores, so their rounds fix without fine-tuning (the layout and clustering are what is new here).
CASES = [("googlenet", 15, 0), ("mobilenet_v2", 16, 0)]


@pytest.mark.slow
@pytest.mark.parametrize("name,size,fixing_epochs", CASES, ids=[c[0] for c in CASES])
def test_wfn_fixes_every_quantised_weight(name: str, size: int, fixing_epochs: int) -> None:
    from jaxnets.converters.convert import variables_to_state_dict

    train, test = _tiny_data("train", size), _tiny_data("test", size)
    model = load(name, num_classes=10, data=train)
    layout = Layout.for_model(model.spec, model.module, model.variables, bn_inc=True)
    # every conv (incl. depthwise, PyTorch shape O×1×kh×kw) and linear weight and every BN γ/β
    # is quantised under its PyTorch name and shape: with bn_inc, all parameters
    n_params = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(model.variables["params"]))
    assert layout.size == n_params
    state_dict = variables_to_state_dict(jax.device_get(model.variables), model.spec.keymap)
    assert all(tuple(state_dict[e.torch_name].shape) == e.torch_shape for e in layout.entries)
    if name == "mobilenet_v2":
        depthwise = [e for e in layout.entries if e.kind == "conv" and e.torch_shape[1] == 1 and e.torch_shape[2] == 3]
        assert len(depthwise) == 17 and depthwise[0].torch_name == "features.1.conv.0.0.weight"
    else:
        assert "inception5b.branch4.1.conv.weight" in {e.torch_name for e in layout.entries}

    result = run(model, train, WFNConfig(percentages=(0.5, 1.0), first_epoch=0, fixing_epochs=fixing_epochs,
                                         bn_inc=True, batch_size=8, distance_allowed=0.01, export=False,
                                         plots=False, tensorboard=False), test_data=test)
    rounds = result.results["rounds"]
    assert [r["fixed"] for r in rounds] == [layout.size // 2, layout.size]
    assert result.summary["fixed_fraction"] == 1.0 and all(r["frozen_ok"] for r in rounds)
    final = layout.flatten(result.model.variables["params"])
    assert np.unique(final).size == result.summary["unique_all"] <= result.summary["codebook_size"]
