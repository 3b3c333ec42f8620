"""DenseNet-121 (torchvision): growth 32, bottleneck 4·32, blocks (6, 12, 24, 16), 64 stem channels.

The Flax tree mirrors torchvision's module paths through one submodule named ``features``
(``features/conv0``, ``features/denseblock1/denselayer1/norm1``, ``features/transition1/conv``,
``features/norm5``) and the head ``classifier``, so the generic key rule maps
``features.denseblock1.denselayer1.norm1.weight`` with no table. Checkpoints saved before
torchvision 0.3 (``densenet121-a639ec97.pth``) spell the layer modules ``norm.1``/``conv.1``/
``norm.2``/``conv.2``; ``DENSENET_KEYMAP`` renames those, so both styles load.

Penultimate features: Flax refuses a sown variable named like a submodule, so instead of
``sow("features")`` the ``features`` submodule itself ends with torchvision's forward tail
(norm5 → ReLU → global average pool) and *returns the pooled 1024-vector*.
``apply_with_intermediates(module, v, x, ("features",))`` therefore yields that vector (it is
the output of the submodule ``features``), exactly as the other families' sown value. The
pre-ReLU 7×7 map is the output of ``features/norm5``.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.converters.namings import TIMM_IS_TORCHVISION
from jaxnets.models.layers import ImplModule, avg_pool, batch_norm, conv, global_avg_pool, max_pool
from jaxnets.models.registry import ModelSpec

# torchvision DenseNet init: conv kaiming_normal_ (fan_in, gain √2, untruncated), BN 1/0,
# Linear weight PyTorch's default U(±1/√fan_in), Linear bias 0.
KAIMING_FAN_IN = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
TORCH_DEFAULT_WEIGHT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class DenseLayer(ImplModule):
    """BN-ReLU-1×1 conv (bn_size·growth) → BN-ReLU-3×3 conv (growth); returns the new maps only."""

    growth_rate: int
    bn_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        y = nn.relu(batch_norm(train, "norm1", self.dtype, impl=self.bn_impl)(x))
        y = conv(self.bn_size * self.growth_rate, 1, name="conv1", dtype=self.dtype,
                 kernel_init=KAIMING_FAN_IN, impl=self.conv_impl)(y)
        y = nn.relu(batch_norm(train, "norm2", self.dtype, impl=self.bn_impl)(y))
        return conv(self.growth_rate, 3, 1, 1, name="conv2", dtype=self.dtype,
                    kernel_init=KAIMING_FAN_IN, impl=self.conv_impl)(y)


class DenseBlock(ImplModule):
    num_layers: int
    growth_rate: int
    bn_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        # torchvision's order: the block input first, then each layer's new maps in turn.
        maps = [x]
        for j in range(1, self.num_layers + 1):
            inp = maps[0] if len(maps) == 1 else jnp.concatenate(maps, axis=-1)
            maps.append(DenseLayer(self.growth_rate, self.bn_size, self.dtype,
                                   name=f"denselayer{j}", **self.impls)(inp, train))
        return jnp.concatenate(maps, axis=-1)


class Transition(ImplModule):
    features_out: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = nn.relu(batch_norm(train, "norm", self.dtype, impl=self.bn_impl)(x))
        x = conv(self.features_out, 1, name="conv", dtype=self.dtype, kernel_init=KAIMING_FAN_IN,
                 impl=self.conv_impl)(x)
        return avg_pool(x, 2, 2)


class DenseNetFeatures(ImplModule):
    """torchvision's ``features`` Sequential, plus the forward's ReLU and global pool (see top)."""

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = conv(self.num_init_features, 7, 2, 3, name="conv0", dtype=self.dtype,
                 kernel_init=KAIMING_FAN_IN, impl=self.conv_impl)(x)
        x = nn.relu(batch_norm(train, "norm0", self.dtype, impl=self.bn_impl)(x))
        x = max_pool(x, 3, 2, 1)
        channels = self.num_init_features
        for b, n in enumerate(self.block_config, start=1):
            x = DenseBlock(n, self.growth_rate, self.bn_size, self.dtype,
                           name=f"denseblock{b}", **self.impls)(x, train)
            channels += n * self.growth_rate
            if b < len(self.block_config):
                channels //= 2
                x = Transition(channels, self.dtype, name=f"transition{b}", **self.impls)(x, train)
        x = batch_norm(train, "norm5", self.dtype, impl=self.bn_impl)(x)
        return global_avg_pool(nn.relu(x))


class DenseNet(ImplModule):
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    num_classes: int = 1000
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        pooled = DenseNetFeatures(self.growth_rate, self.block_config, self.num_init_features,
                                  self.bn_size, self.dtype, name="features", **self.impls)(x, train)
        return nn.Dense(self.num_classes, kernel_init=TORCH_DEFAULT_WEIGHT,
                        bias_init=nn.initializers.zeros, dtype=self.dtype,
                        name="classifier")(pooled)


# Pre-0.3 torchvision keys: `denselayer1.norm.1.weight` → `denselayer1.norm1.weight` (also
# conv.1, norm.2, conv.2); modern keys pass through untouched.
DENSENET_KEYMAP = KeyMap(renames=((r"(denselayer\d+\.(?:norm|conv))\.([12])\.", r"\1\2."),),
                         namings=(TIMM_IS_TORCHVISION,))

SPECS = [
    ModelSpec(
        name="densenet121",
        family="densenet",
        build=functools.partial(DenseNet, 32, (6, 12, 24, 16), 64, 4),
        input_size=224,
        # conv0 7/2 pad 3 and the 3/2 pad-1 max-pool never reach 0, the three 2×2/2 transition
        # pools need ≥ 8 px after them: 29 px → 15 → 8 → 4 → 2 → 1 (28 px ends at 0).
        min_input_size=29,
        num_classes=1000,
        normalization="imagenet",
        keymap=DENSENET_KEYMAP,
        head="classifier",
        description="DenseNet-121 (torchvision); legacy `norm.1`-style keys accepted",
    ),
]
