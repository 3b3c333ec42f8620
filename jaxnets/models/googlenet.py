"""torchvision's GoogLeNet (Inception v1) in eval form, with its state_dict names.

Architecture (torchvision ``googlenet.py`` semantics, NHWC):
  * ``BasicConv2d`` = bias-free ``conv`` → ``bn`` (eps 0.001, momentum 0.1) → ReLU;
  * stem ``conv1`` 7×7/2 pad 3 → 64, max-pool 3/2, ``conv2`` 1×1 → 64, ``conv3`` 3×3 pad 1 → 192,
    max-pool 3/2; ``inception3a/3b``, max-pool 3/2, ``inception4a``..``4e``, max-pool 2/2,
    ``inception5a/5b``; every max-pool is torch's ``ceil_mode=True``;
  * an Inception block concatenates ``branch1`` (1×1), ``branch2`` (1×1 → 3×3), ``branch3``
    (1×1 → **3×3** — torchvision's, not the paper's 5×5) and ``branch4`` (3×3/1 pad-1 ceil max-pool
    → 1×1 at ``branch4.1``);
  * head: global average pool → sown ``features`` (1024) → Dropout(0.2) → Linear ``fc``.

The auxiliary classifiers (``aux1``, ``aux2``) only act in training mode; this model is the eval
network, so their keys — which torchvision's pretrained file and any ``googlenet()`` built with
``aux_logits=True`` (its default) carry — are ignored on import and not exported. The parameter
count is torchvision's published one without them, 6,624,904.

``transform_input`` (torchvision's option of the same name, default ``False`` as in its class):
the first step re-maps ImageNet-normalised channels to ``(x − 0.5) / 0.5``. torchvision turns it
on for its ImageNet-pretrained weights (``googlenet-1378be20.pth``); a state_dict of a model built
with ``GoogLeNet()`` / ``googlenet(weights=None)`` has it off. ``spec.create(transform_input=True)``
gives torchvision's pretrained forward exactly on ImageNet-normalised input. The registered
``googlenet`` keeps it off and the known-weights table (``models/weights.py``) records mean = std
= 0.5 for the pretrained file instead: the same function of the image, without a transform in
the graph (see docs/models.md).
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.models.layers import ImplModule, batch_norm, conv, global_avg_pool, max_pool
from jaxnets.models.registry import NORMALIZATIONS, ModelSpec
from jaxnets.models.vgg import torch_default_bias

# torchvision's init_weights: conv and Linear weights trunc_normal(0, 0.01) on ±2 — ±200σ, so
# untruncated in effect; the Linear bias keeps PyTorch's default U(±1/√fan_in).
NORMAL_001 = nn.initializers.normal(0.01)
BN = {"epsilon": 1e-3, "momentum": 0.9}

# (1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5" (a 3×3 in torchvision), pool projection)
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}


class BasicConv2d(ImplModule):
    features: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = conv(self.features, self.kernel, self.stride, self.padding, name="conv", dtype=self.dtype,
                 kernel_init=NORMAL_001, impl=self.conv_impl)(x)
        return nn.relu(batch_norm(train, "bn", self.dtype, impl=self.bn_impl, **BN)(x))


class Inception(ImplModule):
    widths: tuple[int, int, int, int, int, int]
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        ch1, red3, ch3, red5, ch5, proj = self.widths
        unit = functools.partial(BasicConv2d, dtype=self.dtype, **self.impls)
        b1 = unit(ch1, 1, name="branch1")(x, train)
        b2 = unit(ch3, 3, padding=1, name="branch2_1")(unit(red3, 1, name="branch2_0")(x, train), train)
        b3 = unit(ch5, 3, padding=1, name="branch3_1")(unit(red5, 1, name="branch3_0")(x, train), train)
        b4 = unit(proj, 1, name="branch4_1")(max_pool(x, 3, 1, 1, ceil_mode=True), train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


def transform_imagenet_input(x: jnp.ndarray) -> jnp.ndarray:
    """torchvision's ``_transform_input``: ImageNet-normalised channels → ``(x − 0.5) / 0.5``."""
    if x.shape[-1] != 3:
        raise ValueError(f"transform_input needs 3-channel input, got {x.shape[-1]} channels")
    mean, std = (jnp.asarray(v, x.dtype) for v in NORMALIZATIONS["imagenet"])
    return x * (std / 0.5) + (mean - 0.5) / 0.5


class GoogLeNet(ImplModule):
    num_classes: int = 1000
    transform_input: bool = False
    dropout: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.transform_input:
            x = transform_imagenet_input(x)
        unit = functools.partial(BasicConv2d, dtype=self.dtype, **self.impls)
        x = unit(64, 7, 2, 3, name="conv1")(x, train)
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = unit(64, 1, name="conv2")(x, train)
        x = unit(192, 3, padding=1, name="conv3")(x, train)
        x = max_pool(x, 3, 2, ceil_mode=True)
        for name, widths in INCEPTIONS.items():
            x = Inception(widths, self.dtype, name=name, **self.impls)(x, train)
            if name in ("inception3b", "inception4e"):
                x = max_pool(x, 3 if name == "inception3b" else 2, 2, ceil_mode=True)
        x = global_avg_pool(x)
        self.sow("intermediates", "features", x)
        x = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(x)
        return nn.Dense(self.num_classes, kernel_init=NORMAL_001, bias_init=torch_default_bias(x.shape[-1]),
                        dtype=self.dtype, name="fc")(x)


# The auxiliary classifiers act in training only (see the module docstring).
GOOGLENET_KEYMAP = KeyMap(ignore=(r"aux[12]\..*",))

SPECS = [
    ModelSpec(
        name="googlenet",
        family="googlenet",
        build=GoogLeNet,
        input_size=224,
        # conv1 7/2 and four ceil-mode max-pools (3/2, 3/2, 3/2, 2/2): 15 px → 8 → 4 → 2 → 1 → 1;
        # 14 px → 7 → 3 → 1 → 0 (torchvision's min_size is 15 too)
        min_input_size=15,
        num_classes=1000,
        normalization="imagenet",
        keymap=GOOGLENET_KEYMAP,
        head="fc",
        description="GoogLeNet / Inception v1 (torchvision, eval: aux heads ignored; "
                    "create(transform_input=True) for its pretrained forward)",
        extra={"transform_input": False},
    ),
]
