"""torchvision's MobileNetV2 and MobileNetV3-small, with its state_dict names.

Architecture (torchvision ``mobilenetv2.py`` / ``mobilenetv3.py`` semantics, NHWC):
  * a "conv-norm-act" unit is torchvision's ``Conv2dNormActivation`` Sequential: a bias-free conv
    (padding ``(k − 1) // 2``) at index 0 and its BN at index 1, then the activation;
  * MobileNetV2: stem 3×3/2 → 32 (``features.0``), 17 inverted residuals ``features.1..17``
    (expansion t, channels c, repeats n, first stride s: (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
    (6,96,3,1) (6,160,3,2) (6,320,1,1)), 1×1 → 1280 (``features.18``); ReLU6; BN eps 1e-5,
    momentum 0.1. A block is ``conv.0`` 1×1 expand unit (absent when t = 1), the 3×3 depthwise unit,
    a 1×1 projection conv and its BN as two plain Sequential slots; residual when stride 1 and
    the channels stay. Head: global average pool → Dropout(0.2) ``classifier.0`` → Linear
    ``classifier.1``.
  * MobileNetV3-small: stem 3×3/2 → 16 with hardswish, 11 blocks ``features.1..11``, 1×1 → 576
    hardswish (``features.12``); BN eps 0.001, momentum 0.01 (Flax 0.99). A block's ``block``
    Sequential holds the 1×1 expand unit (absent when expanded = input channels), the k×k depthwise
    unit, the squeeze-excitation (``fc1``/``fc2`` 1×1 convs with bias, ReLU between, hard-sigmoid
    gate on the pooled map; squeeze width ``make_divisible(expanded // 4)``) where used, and the
    1×1 projection unit without activation. Head: pool → Linear 576→1024 ``classifier.0`` →
    hardswish → Dropout(0.2) ``classifier.2`` → Linear ``classifier.3``.

Flax names follow the generic key rule: ``features.0.0`` ↔ ``features_0_0``,
``features.1.block.1.fc1`` ↔ ``features_1/block_1/fc1``, ``classifier.3`` ↔ ``classifier_3``.
The sown ``features`` is the input of the last Linear (as for VGG): the pooled 1280-vector for
V2, the 1024-wide hidden layer after hardswish (and dropout) for V3.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.models.layers import ImplModule, batch_norm, conv, global_avg_pool
from jaxnets.models.registry import ModelSpec
from jaxnets.models.vgg import KAIMING_FAN_OUT, NORMAL_001, ZEROS

Activation = str  # "relu" | "relu6" | "hardswish" | "none"

ACTIVATIONS = {
    "relu": nn.relu,
    "relu6": nn.relu6,
    "hardswish": nn.hard_swish,  # x · relu6(x + 3) / 6, torch's Hardswish
    "none": lambda x: x,
}

# torch's BatchNorm momentum m is Flax's 1 − m
V2_BN = {"epsilon": 1e-5, "momentum": 0.9}
V3_BN = {"epsilon": 1e-3, "momentum": 0.99}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor`` (at least ``divisor``), never more than 10 % below
    it — the TF-slim channel rule torchvision's MobileNets use."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_norm_act(module: ImplModule, x: jnp.ndarray, name: str, features: int, kernel: int,
                  stride: int = 1, groups: int = 1, *, activation: Activation, bn: dict[str, float],
                  train: bool, dtype: Any) -> jnp.ndarray:
    """torchvision's ``Conv2dNormActivation`` as the layers ``{name}_0`` (conv) and ``{name}_1`` (BN).

    Called inside ``module``'s compact ``__call__``, so the layers belong to that module's scope.
    """
    x = conv(features, kernel, stride, (kernel - 1) // 2, groups=groups, name=f"{name}_0", dtype=dtype,
             kernel_init=KAIMING_FAN_OUT, impl=module.conv_impl)(x)
    x = batch_norm(train, f"{name}_1", dtype, impl=module.bn_impl, **bn)(x)
    return ACTIVATIONS[activation](x)


def _classifier_dense(features: int, name: str, dtype: Any) -> nn.Dense:
    # torchvision's MobileNet init: Linear N(0, 0.01²), bias 0
    return nn.Dense(features, kernel_init=NORMAL_001, bias_init=ZEROS, dtype=dtype, name=name)


# ------------------------------------------------------------------------------ MobileNetV2

# (expansion t, output channels c, repeats n, first stride s)
V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidualV2(ImplModule):
    """``features.{i}``: its ``conv`` Sequential (see the module docstring)."""

    out_channels: int
    stride: int
    expand_ratio: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        unit = functools.partial(conv_norm_act, self, activation="relu6", bn=V2_BN, train=train, dtype=self.dtype)
        hidden = int(round(x.shape[-1] * self.expand_ratio))
        y, slot = x, 0
        if self.expand_ratio != 1:
            y = unit(y, "conv_0", hidden, 1)
            slot = 1
        y = unit(y, f"conv_{slot}", hidden, 3, self.stride, groups=hidden)
        y = conv(self.out_channels, 1, name=f"conv_{slot + 1}", dtype=self.dtype, kernel_init=KAIMING_FAN_OUT,
                 impl=self.conv_impl)(y)
        y = batch_norm(train, f"conv_{slot + 2}", self.dtype, impl=self.bn_impl, **V2_BN)(y)
        return x + y if self.stride == 1 and x.shape[-1] == self.out_channels else y


class MobileNetV2(ImplModule):
    num_classes: int = 1000
    width_mult: float = 1.0
    dropout: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        unit = functools.partial(conv_norm_act, self, activation="relu6", bn=V2_BN, train=train, dtype=self.dtype)
        x = unit(x, "features_0", make_divisible(32 * self.width_mult), 3, 2)
        index = 1
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                x = InvertedResidualV2(make_divisible(c * self.width_mult), s if i == 0 else 1, t, self.dtype,
                                       name=f"features_{index}", **self.impls)(x, train)
                index += 1
        x = unit(x, f"features_{index}", make_divisible(1280 * max(1.0, self.width_mult)), 1)
        x = global_avg_pool(x)
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_0")(x)
        self.sow("intermediates", "features", x)
        return _classifier_dense(self.num_classes, "classifier_1", self.dtype)(x)


# ------------------------------------------------------------------------------ MobileNetV3-small

# (kernel, expanded channels, output channels, squeeze-excitation, activation, stride); the input
# channels of each block are the previous block's output (16 after the stem).
V3_SMALL_SETTING: tuple[tuple[int, int, int, bool, Activation, int], ...] = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hardswish", 2),
    (5, 240, 40, True, "hardswish", 1),
    (5, 240, 40, True, "hardswish", 1),
    (5, 120, 48, True, "hardswish", 1),
    (5, 144, 48, True, "hardswish", 1),
    (5, 288, 96, True, "hardswish", 2),
    (5, 576, 96, True, "hardswish", 1),
    (5, 576, 96, True, "hardswish", 1),
)


class SqueezeExcitation(ImplModule):
    """torchvision's ``SqueezeExcitation``: pool → ``fc1`` → ReLU → ``fc2`` → hard-sigmoid gate × input."""

    squeeze_channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        scale = jnp.mean(x, axis=(1, 2), keepdims=True)
        fc = functools.partial(conv, bias=True, dtype=self.dtype, kernel_init=KAIMING_FAN_OUT,
                               impl=self.conv_impl)
        scale = nn.relu(fc(self.squeeze_channels, 1, name="fc1")(scale))
        scale = fc(x.shape[-1], 1, name="fc2")(scale)
        return x * nn.hard_sigmoid(scale)  # relu6(s + 3) / 6, torch's Hardsigmoid


class InvertedResidualV3(ImplModule):
    """``features.{i}``: its ``block`` Sequential (see the module docstring)."""

    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    activation: Activation
    stride: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        unit = functools.partial(conv_norm_act, self, bn=V3_BN, train=train, dtype=self.dtype)
        y, slot = x, 0
        if self.expanded != x.shape[-1]:
            y = unit(y, "block_0", self.expanded, 1, activation=self.activation)
            slot = 1
        y = unit(y, f"block_{slot}", self.expanded, self.kernel, self.stride, groups=self.expanded,
                 activation=self.activation)
        slot += 1
        if self.use_se:
            y = SqueezeExcitation(make_divisible(self.expanded // 4), self.dtype, name=f"block_{slot}",
                                  **self.impls)(y)
            slot += 1
        y = unit(y, f"block_{slot}", self.out_channels, 1, activation="none")
        return x + y if self.stride == 1 and x.shape[-1] == self.out_channels else y


class MobileNetV3(ImplModule):
    """MobileNetV3 with torchvision's ``features`` / ``classifier`` layout; the small variant's table."""

    setting: tuple[tuple[int, int, int, bool, Activation, int], ...] = V3_SMALL_SETTING
    stem_channels: int = 16
    last_channel: int = 1024
    num_classes: int = 1000
    dropout: float = 0.2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        unit = functools.partial(conv_norm_act, self, activation="hardswish", bn=V3_BN, train=train,
                                 dtype=self.dtype)
        x = unit(x, "features_0", self.stem_channels, 3, 2)
        for i, (kernel, expanded, out, use_se, activation, stride) in enumerate(self.setting, start=1):
            x = InvertedResidualV3(kernel, expanded, out, use_se, activation, stride, self.dtype,
                                   name=f"features_{i}", **self.impls)(x, train)
        x = unit(x, f"features_{len(self.setting) + 1}", 6 * self.setting[-1][2], 1)
        x = global_avg_pool(x)
        x = nn.hard_swish(_classifier_dense(self.last_channel, "classifier_0", self.dtype)(x))
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_2")(x)
        self.sow("intermediates", "features", x)
        return _classifier_dense(self.num_classes, "classifier_3", self.dtype)(x)


# torchvision's names are the generic rule's; timm's MobileNets use other names (not read here).
MOBILENET_KEYMAP = KeyMap()


def _spec(name: str, build: type[ImplModule], head: str, description: str) -> ModelSpec:
    # any input size works: every stride-2 conv pads (k − 1) // 2, so 1 px stays 1 px
    return ModelSpec(name=name, family="mobilenet", build=build, input_size=224, num_classes=1000,
                     normalization="imagenet", keymap=MOBILENET_KEYMAP, head=head, description=description)


SPECS = [
    _spec("mobilenet_v2", MobileNetV2, "classifier_1",
          "MobileNetV2 (torchvision; mobilenet_v2-b0353104 / -7ebf99e0 weights)"),
    _spec("mobilenet_v3_small", MobileNetV3, "classifier_3",
          "MobileNetV3-small (torchvision; mobilenet_v3_small-047dcff4 weights; the SeaM fork's model)"),
]
