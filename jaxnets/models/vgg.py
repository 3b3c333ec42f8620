"""VGG (torchvision), VGG-19 with the original paper's init, AlexNet, and chenyaofo's CIFAR VGG16-BN.

Flax submodules carry torchvision's ``nn.Sequential`` indices (``features_{i}``,
``classifier_{j}``): in ``features`` every conv takes one slot, its BN (if any) the next, its
ReLU the next, and every max-pool one slot, so ``features.7.weight`` maps onto ``features_7``
by the generic key rule with no table.

Torch flattens the pooled map in (C, H, W) order; we flatten NHWC as it is and let the family
KeyMap (``flatten_chw``) permute the first classifier Linear's kernel rows once on import and back
on export, so activations are never transposed.

The sown ``features`` (penultimate vector) is the *input of the last Linear*: for VGG the output
of the second 4096-wide ReLU → Dropout (identity in eval mode), for AlexNet the second ReLU, for
the CIFAR VGG the second 512-wide ReLU → Dropout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.converters.namings import VGG_TIMM
from jaxnets.models.layers import (
    ImplModule,
    adaptive_avg_pool,
    batch_norm,
    conv,
    flatten_nhwc,
    max_pool,
    pad2,
)
from jaxnets.models.registry import ModelSpec

Initializer = Callable[..., jax.Array]
Config = Sequence[int | str]

CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512, "M"),
}

# torchvision's VGG init: kaiming-normal (fan_out, relu gain) = N(0, 2/(O·k·k)), untruncated
# (jax's he_normal is fan_in and truncated — not the same); Linear N(0, 0.01²); biases 0.
KAIMING_FAN_OUT: Initializer = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
NORMAL_001: Initializer = nn.initializers.normal(0.01)
ZEROS: Initializer = nn.initializers.zeros
# PyTorch's default Conv2d/Linear weight init (kaiming-uniform, a=√5): U(±1/√fan_in).
TORCH_DEFAULT_WEIGHT: Initializer = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias init U(±1/√fan_in); Flax bias inits don't see fan_in, so bind it."""
    bound = fan_in ** -0.5

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def feature_layout(cfg: Config, with_bn: bool) -> list[tuple[str, int, int | None]]:
    """torchvision's ``make_layers`` slots: ``(kind, index, channels)``, kind ∈ conv/bn/relu/pool.

    E.g. vgg11 convs sit at ``features.{0,3,6,8,11,13,16,18}``; with BN at ``{0,4,8,11,…}``.
    """
    out: list[tuple[str, int, int | None]] = []
    i = 0
    for v in cfg:
        if v == "M":
            out.append(("pool", i, None))
            i += 1
            continue
        out.append(("conv", i, int(v)))
        i += 1
        if with_bn:
            out.append(("bn", i, int(v)))
            i += 1
        out.append(("relu", i, int(v)))
        i += 1
    return out


class VGG(ImplModule):
    """One VGG implementation with options.

    torchvision: ``pool_size=7, hidden=4096``; chenyaofo's CIFAR VGG: ``pool_size=None`` (the
    32-px input already ends at 1×1×512, flattened as it is) and ``hidden=512``.
    """

    cfg: tuple[int | str, ...] = CONFIGS["vgg16"]
    num_classes: int = 1000
    use_bn: bool = False
    pool_size: int | None = 7
    hidden: int = 4096
    dropout: float = 0.5
    conv_init: Initializer = KAIMING_FAN_OUT
    linear_init: Initializer = NORMAL_001
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        for kind, i, ch in feature_layout(self.cfg, self.use_bn):
            if kind == "conv":
                x = conv(ch, 3, 1, 1, bias=True, kernel_init=self.conv_init, dtype=self.dtype,
                         name=f"features_{i}", impl=self.conv_impl)(x)
            elif kind == "bn":
                x = batch_norm(train, f"features_{i}", self.dtype, impl=self.bn_impl)(x)
            elif kind == "relu":
                x = nn.relu(x)
            else:
                x = max_pool(x, 2, 2)
        if self.pool_size is not None:
            # On 32-px inputs the 1×1 map is replicated to 7×7 (torch's bin rule), as in torch.
            x = adaptive_avg_pool(x, self.pool_size)
        x = flatten_nhwc(x)
        dense = functools.partial(nn.Dense, kernel_init=self.linear_init, bias_init=ZEROS,
                                  dtype=self.dtype)
        x = nn.relu(dense(self.hidden, name="classifier_0")(x))
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_2")(x)
        x = nn.relu(dense(self.hidden, name="classifier_3")(x))
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_5")(x)
        self.sow("intermediates", "features", x)
        return dense(self.num_classes, name="classifier_6")(x)


class AlexNet(ImplModule):
    """torchvision's AlexNet ("one weird trick" variant: 64/192/384/256/256 channels)."""

    num_classes: int = 1000
    hidden: int = 4096
    dropout: float = 0.5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        def conv_layer(x: jnp.ndarray, ch: int, k: int, s: int, p: int, idx: int) -> jnp.ndarray:
            # nn.Conv directly: layers.conv() has no bias_init, and this bias depends on fan_in.
            return nn.Conv(ch, (k, k), strides=(s, s), padding=pad2(p),
                           kernel_init=TORCH_DEFAULT_WEIGHT,
                           bias_init=torch_default_bias(k * k * x.shape[-1]), dtype=self.dtype,
                           name=f"features_{idx}")(x)

        def dense(x: jnp.ndarray, n: int, idx: int) -> jnp.ndarray:
            return nn.Dense(n, kernel_init=TORCH_DEFAULT_WEIGHT,
                            bias_init=torch_default_bias(x.shape[-1]), dtype=self.dtype,
                            name=f"classifier_{idx}")(x)

        x = nn.relu(conv_layer(x, 64, 11, 4, 2, 0))
        x = max_pool(x, 3, 2)
        x = nn.relu(conv_layer(x, 192, 5, 1, 2, 3))
        x = max_pool(x, 3, 2)
        x = nn.relu(conv_layer(x, 384, 3, 1, 1, 6))
        x = nn.relu(conv_layer(x, 256, 3, 1, 1, 8))
        x = nn.relu(conv_layer(x, 256, 3, 1, 1, 10))
        x = max_pool(x, 3, 2)
        x = flatten_nhwc(adaptive_avg_pool(x, 6))
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_0")(x)
        x = nn.relu(dense(x, self.hidden, 1))
        x = nn.Dropout(self.dropout, deterministic=not train, name="classifier_3")(x)
        x = nn.relu(dense(x, self.hidden, 4))
        self.sow("intermediates", "features", x)
        return dense(x, self.num_classes, 6)


VGG_KEYMAP = KeyMap(flatten_chw={"classifier.0": (512, 7, 7)}, namings=(VGG_TIMM,))
ALEXNET_KEYMAP = KeyMap(flatten_chw={"classifier.1": (256, 6, 6)})


def min_size_of(cfg: Config) -> int:
    """Padded 3×3 convs keep the size and every 2×2/2 max-pool floors it: 2^pools px reach 1×1."""
    return 2 ** sum(1 for v in cfg if v == "M")


# torchvision AlexNet, floor((s + 2p − k) / stride) + 1 per layer: conv 11/4 pad 2, then three
# 3/2 max-pools (the convs between keep the size). 63 px → 15 → 7 → 3 → 1; 62 px → 14 → 6 → 2 → 0,
# an empty map whose adaptive average pool is NaN (spec §5.1: AlexNet on 32-px CIFAR).
ALEXNET_MIN_INPUT = 63


def _vgg_spec(depth: int, with_bn: bool) -> ModelSpec:
    base = f"vgg{depth}"
    name = f"{base}_bn" if with_bn else base
    return ModelSpec(
        name=name,
        family="vgg",
        build=functools.partial(VGG, CONFIGS[base], use_bn=with_bn),
        input_size=224,
        min_input_size=min_size_of(CONFIGS[base]),
        num_classes=1000,
        normalization="imagenet",
        keymap=VGG_KEYMAP,
        head="classifier_6",
        description=f"VGG-{depth}{' with BatchNorm' if with_bn else ''} (torchvision)",
        # the hyperplane code spells the BN variants without the underscore
        aliases=(f"{base}bn",) if with_bn else (),
    )


SPECS = [_vgg_spec(d, bn) for bn in (False, True) for d in (11, 13, 16, 19)] + [
    ModelSpec(
        name="vgg19_orig",
        family="vgg",
        build=functools.partial(VGG, CONFIGS["vgg19"], use_bn=False, conv_init=NORMAL_001),
        input_size=224,
        min_input_size=min_size_of(CONFIGS["vgg19"]),
        num_classes=1000,
        normalization="imagenet",
        keymap=VGG_KEYMAP,
        head="classifier_6",
        description="VGG-19 with the original paper's init: every weight N(0, 0.01²), biases 0",
    ),
    ModelSpec(
        name="alexnet",
        family="vgg",
        build=AlexNet,
        input_size=224,
        min_input_size=ALEXNET_MIN_INPUT,
        num_classes=1000,
        normalization="imagenet",
        keymap=ALEXNET_KEYMAP,
        head="classifier_6",
        description="AlexNet (torchvision), PyTorch default init",
    ),
    ModelSpec(
        name="vgg16_bn_cifar",
        family="vgg",
        build=functools.partial(VGG, CONFIGS["vgg16"], use_bn=True, pool_size=None, hidden=512),
        input_size=32,
        min_input_size=min_size_of(CONFIGS["vgg16"]),
        fixed_input_size=True,  # no adaptive pool: classifier_0 takes the flattened 1×1×512 map
        num_classes=10,
        normalization="cifar_std",
        head="classifier_6",
        description="CIFAR VGG16-BN of chenyaofo/pytorch-cifar-models (SeaM): 512-wide classifier",
        aliases=("cifar10_vgg16_bn",),
    ),
]
