"""oneDNN convolutions on XLA:CPU (jaxlib ≥ 0.12 on x86): ``configure_xla_flags`` adds the
flags unless the user set them, and the compiled ResNet-20 train step then calls oneDNN."""

from __future__ import annotations

import os
import re

import numpy as np
import optax
import pytest

from jaxnets import runtime
from jaxnets.models.api import init_variables
from jaxnets.models.registry import NORMALIZATIONS, get_spec
from jaxnets.train import TrainState, make_train_step

ONEDNN_CONV = "__onednn$convolution"


def test_flags_are_added_once_and_never_over_the_users(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "onednn_supported", lambda: True)
    env: dict[str, str] = {}
    assert runtime.configure_xla_flags(env) == list(runtime.ONEDNN_XLA_FLAGS)
    assert env["XLA_FLAGS"] == " ".join(runtime.ONEDNN_XLA_FLAGS)
    assert runtime.configure_xla_flags(env) == []  # idempotent
    user = {"XLA_FLAGS": "--xla_cpu_experimental_onednn_custom_call=false"}
    assert runtime.configure_xla_flags(user) == [runtime.ONEDNN_XLA_FLAGS[1]]
    assert "--xla_cpu_experimental_onednn_custom_call=false" in user["XLA_FLAGS"]
    assert "onednn_custom_call=true" not in user["XLA_FLAGS"]
    off = {"JAXNETS_ONEDNN": "0"}
    assert runtime.configure_xla_flags(off) == [] and "XLA_FLAGS" not in off
    monkeypatch.setattr(runtime, "onednn_supported", lambda: False)
    assert runtime.configure_xla_flags({}) == []


def test_support_needs_x86_and_jaxlib_0_12() -> None:
    assert runtime.onednn_supported("0.12.0.1", "x86_64")
    assert runtime.onednn_supported("0.13.0", "AMD64")
    assert not runtime.onednn_supported("0.11.2", "x86_64")
    assert not runtime.onednn_supported("0.10.2", "x86_64")
    assert not runtime.onednn_supported("0.12.0", "aarch64")


@pytest.mark.skipif(not runtime.onednn_supported(),
                    reason="oneDNN convolution custom calls need jaxlib >= 0.12 on x86")
def test_resnet20_train_step_calls_onednn_convolutions() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if not all(flag in flags for flag in runtime.ONEDNN_XLA_FLAGS):
        pytest.skip(f"the oneDNN flags are not in force (XLA_FLAGS={flags!r}, JAXNETS_ONEDNN)")
    spec = get_spec("resnet20")
    module = spec.create()
    state = TrainState.create(module, init_variables(spec, module, seed=0), optax.sgd(0.1), seed=0)
    step = make_train_step(module, normalize=NORMALIZATIONS[spec.normalization])
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 4).astype(np.int32)
    text = step.jitted.lower(state, images, labels, np.ones(4, bool), None).compile().as_text()
    targets = re.findall(r'custom_call_target="([^"]+)"', text)
    # 19 convolutions in the forward pass alone; the backward adds its own
    assert targets.count(ONEDNN_CONV) >= 19, sorted(set(targets))
