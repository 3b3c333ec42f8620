"""CIFAR ResNets (He et al. 2016, §4.2): depth 6n+2, stages of 16/32/64 channels.

Option A (akamaster/pytorch_resnet_cifar10, the "Decomposing the Deep" checkpoints): a
parameter-free shortcut that subsamples rows/columns from index 0 and zero-pads channels,
``planes // 4`` on each side; head named ``linear``. Option B (chenyaofo/pytorch-cifar-models,
SeaM): a 1×1 stride-2 conv + BN shortcut named ``downsample_0/1``; head named ``fc``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.models.layers import ImplModule, batch_norm, conv, global_avg_pool
from jaxnets.models.registry import ModelSpec


class BasicBlockCifar(ImplModule):
    planes: int
    stride: int
    shortcut: str  # "A" or "B"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        in_planes = x.shape[-1]
        out = conv(self.planes, 3, self.stride, 1, name="conv1", dtype=self.dtype,
                   impl=self.conv_impl)(x)
        out = nn.relu(batch_norm(train, "bn1", self.dtype, impl=self.bn_impl)(out))
        out = conv(self.planes, 3, 1, 1, name="conv2", dtype=self.dtype, impl=self.conv_impl)(out)
        out = batch_norm(train, "bn2", self.dtype, impl=self.bn_impl)(out)
        if self.stride != 1 or in_planes != self.planes:
            if self.shortcut == "A":
                pad = self.planes // 4
                x = x[:, :: self.stride, :: self.stride, :]
                x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad, pad)))
            else:
                x = conv(self.planes, 1, self.stride, 0, name="downsample_0", dtype=self.dtype,
                         impl=self.conv_impl)(x)
                x = batch_norm(train, "downsample_1", self.dtype, impl=self.bn_impl)(x)
        return nn.relu(out + x)


class CifarResNet(ImplModule):
    depth: int = 20
    num_classes: int = 10
    shortcut: str = "A"
    head_name: str = "linear"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if (self.depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {self.depth}")
        n = (self.depth - 2) // 6
        x = conv(16, 3, 1, 1, name="conv1", dtype=self.dtype, impl=self.conv_impl)(x)
        x = nn.relu(batch_norm(train, "bn1", self.dtype, impl=self.bn_impl)(x))
        for stage, planes in enumerate((16, 32, 64), start=1):
            for block in range(n):
                stride = 2 if stage > 1 and block == 0 else 1
                x = BasicBlockCifar(planes, stride, self.shortcut, self.dtype,
                                    name=f"layer{stage}_{block}", **self.impls)(x, train)
        features = global_avg_pool(x)
        self.sow("intermediates", "features", features)
        return nn.Dense(self.num_classes, dtype=self.dtype, name=self.head_name)(features)


def _spec(depth: int, option: str) -> ModelSpec:
    if option == "A":
        return ModelSpec(
            name=f"resnet{depth}",
            family="cifar_resnet",
            build=functools.partial(CifarResNet, depth, shortcut="A", head_name="linear"),
            input_size=32,
            num_classes=10,
            normalization="imagenet",  # the akamaster checkpoints were trained with these
            head="linear",
            # The CSG checkpoint of "Decomposing the Deep" adds its (10, 64) class gates as `csg`.
            keymap=KeyMap(ignore=(r"csg",)),
            description=f"CIFAR ResNet-{depth}, option-A shortcut (akamaster checkpoints)",
        )
    return ModelSpec(
        name=f"resnet{depth}_b",
        family="cifar_resnet",
        build=functools.partial(CifarResNet, depth, shortcut="B", head_name="fc"),
        input_size=32,
        num_classes=10,
        normalization="cifar_std",
        head="fc",
        description=f"CIFAR ResNet-{depth}, option-B 1×1 conv shortcut (chenyaofo, SeaM)",
        aliases=(f"cifar10_resnet{depth}",) if depth == 20 else (),
    )


SPECS = [_spec(d, "A") for d in (20, 32, 44, 56, 110)] + [_spec(d, "B") for d in (20, 32, 44, 56)]
