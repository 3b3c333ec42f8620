"""torchvision ResNets (v1.5), ResNeXt, Wide-ResNet, and the CIFAR ResNet-18 of PyTorch_CIFAR10.

Architecture (torchvision ``resnet.py`` semantics, NHWC):
  * stem ``"imagenet"``: ``conv1`` 7×7/2 pad 3 (no bias) → ``bn1`` → ReLU → max-pool 3×3/2 pad 1;
    stem ``"cifar"`` (huyvnphan/PyTorch_CIFAR10, used by the Sparsity Probe and WFN): ``conv1``
    3×3/1 pad 1 → ``bn1`` → ReLU → the same max-pool, so ``layer1`` runs at 16×16 on 32-px input;
  * stages ``layer1``..``layer4`` (64/128/256/512 planes, stride 1/2/2/2) of blocks named
    ``layer{L}_{B}``. BasicBlock: ``conv1`` 3×3/s → ``bn1`` → ReLU → ``conv2`` 3×3 → ``bn2``.
    Bottleneck (v1.5, the stride sits on the 3×3): ``conv1`` 1×1 → ``bn1`` → ``conv2`` 3×3/s
    (``groups``) → ``bn2`` → ``conv3`` 1×1 → ``bn3``, width
    ``int(planes * width_per_group / 64) * groups``, output ``4 * planes``. The first block of a
    stage whose stride or channel count changes has the shortcut ``downsample_0`` (1×1/s conv, no
    bias) + ``downsample_1`` (BN); the block ends with ReLU(residual + shortcut);
  * head: global average pool (== ``AdaptiveAvgPool2d(1)``) → sown ``features`` → Dense ``fc``.

Intermediates readable with :func:`jaxnets.models.api.apply_with_intermediates`:
  * ``"features"``: the pooled (B, C) vector before ``fc`` (torch's ``avgpool`` output, flattened);
  * any submodule path, its ``__call__`` output: ``conv1``/``bn1`` (stem, before ReLU and pool),
    ``layer2_1`` (a block's output, after the final ReLU), ``layer1_0/conv1`` (the raw conv
    output, **before** BN — what the Sparsity Probe hooks), ``layer1_0/bn2``,
    ``layer2_0/downsample_0``, ``fc`` (the logits).
Outputs are NHWC: transpose to NCHW before flattening when comparing with PyTorch features.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.converters.namings import TIMM_IS_TORCHVISION
from jaxnets.models.layers import ImplModule, batch_norm, conv, global_avg_pool, max_pool
from jaxnets.models.registry import ModelSpec

# torchvision initialises convs with kaiming_normal_(mode="fan_out", nonlinearity="relu");
# the same distribution keeps from-scratch training (WFN, re-initialisation) comparable.
_CONV_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

EXPANSION = {"basic": 1, "bottleneck": 4}


class BasicBlock(ImplModule):
    """Two 3×3 convs; torchvision's BasicBlock (no groups, no width change)."""

    planes: int
    stride: int = 1
    groups: int = 1
    width_per_group: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.groups != 1 or self.width_per_group != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        c = functools.partial(conv, dtype=self.dtype, kernel_init=_CONV_INIT, impl=self.conv_impl)
        out = c(self.planes, 3, self.stride, 1, name="conv1")(x)
        out = nn.relu(batch_norm(train, "bn1", self.dtype, impl=self.bn_impl)(out))
        out = c(self.planes, 3, 1, 1, name="conv2")(out)
        out = batch_norm(train, "bn2", self.dtype, impl=self.bn_impl)(out)
        return nn.relu(out + _shortcut(x, self.planes, self.stride, train, self.dtype, **self.impls))


class Bottleneck(ImplModule):
    """1×1 → 3×3 (stride, groups) → 1×1 ×4; the v1.5 placement of the stride."""

    planes: int
    stride: int = 1
    groups: int = 1
    width_per_group: int = 64
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        width = int(self.planes * (self.width_per_group / 64.0)) * self.groups
        out_planes = self.planes * EXPANSION["bottleneck"]
        c = functools.partial(conv, dtype=self.dtype, kernel_init=_CONV_INIT, impl=self.conv_impl)
        out = c(width, 1, name="conv1")(x)
        out = nn.relu(batch_norm(train, "bn1", self.dtype, impl=self.bn_impl)(out))
        out = c(width, 3, self.stride, 1, groups=self.groups, name="conv2")(out)
        out = nn.relu(batch_norm(train, "bn2", self.dtype, impl=self.bn_impl)(out))
        out = c(out_planes, 1, name="conv3")(out)
        out = batch_norm(train, "bn3", self.dtype, impl=self.bn_impl)(out)
        return nn.relu(out + _shortcut(x, out_planes, self.stride, train, self.dtype, **self.impls))


def _shortcut(x: jnp.ndarray, out_planes: int, stride: int, train: bool, dtype: Any, *,
              conv_impl: str, bn_impl: str) -> jnp.ndarray:
    """Identity, or torchvision's ``downsample`` Sequential(1×1 conv, BN) when the shape changes.

    Called inside a block's compact ``__call__``, so the layers are named in that block's scope.
    """
    if stride == 1 and x.shape[-1] == out_planes:
        return x
    x = conv(out_planes, 1, stride, 0, name="downsample_0", dtype=dtype, kernel_init=_CONV_INIT,
             impl=conv_impl)(x)
    return batch_norm(train, "downsample_1", dtype, impl=bn_impl)(x)


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(ImplModule):
    """torchvision's ``ResNet`` with a choice of stem (``"imagenet"`` or ``"cifar"``)."""

    block: str = "basic"  # "basic" | "bottleneck"
    layers: tuple[int, ...] = (2, 2, 2, 2)
    num_classes: int = 1000
    groups: int = 1
    width_per_group: int = 64
    stem: str = "imagenet"  # "imagenet" | "cifar"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        if self.block not in BLOCKS:
            raise ValueError(f"unknown block {self.block!r}; expected one of {sorted(BLOCKS)}")
        if len(self.layers) != 4:
            raise ValueError(f"layers must give 4 stage depths, got {self.layers}")
        if self.stem == "imagenet":
            x = conv(64, 7, 2, 3, name="conv1", dtype=self.dtype, kernel_init=_CONV_INIT,
                     impl=self.conv_impl)(x)
        elif self.stem == "cifar":
            x = conv(64, 3, 1, 1, name="conv1", dtype=self.dtype, kernel_init=_CONV_INIT,
                     impl=self.conv_impl)(x)
        else:
            raise ValueError(f"unknown stem {self.stem!r}; expected 'imagenet' or 'cifar'")
        x = nn.relu(batch_norm(train, "bn1", self.dtype, impl=self.bn_impl)(x))
        # Both stems keep the max-pool (the CIFAR variant too: layer1 runs at 16×16 on 32 px).
        x = max_pool(x, 3, 2, 1)
        block_cls = BLOCKS[self.block]
        for stage, (planes, depth) in enumerate(zip((64, 128, 256, 512), self.layers, strict=True), start=1):
            for b in range(depth):
                stride = 2 if stage > 1 and b == 0 else 1
                x = block_cls(planes, stride, self.groups, self.width_per_group, self.dtype,
                              name=f"layer{stage}_{b}", **self.impls)(x, train)
        features = global_avg_pool(x)
        self.sow("intermediates", "features", features)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(features)


# name → (block, layers, groups, width_per_group, description)
_IMAGENET: dict[str, tuple[str, tuple[int, ...], int, int, str]] = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64, "ResNet-18"),
    "resnet34": ("basic", (3, 4, 6, 3), 1, 64, "ResNet-34"),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64, "ResNet-50 (v1.5)"),
    "resnet101": ("bottleneck", (3, 4, 23, 3), 1, 64, "ResNet-101 (v1.5)"),
    "resnet152": ("bottleneck", (3, 8, 36, 3), 1, 64, "ResNet-152 (v1.5)"),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4, "ResNeXt-50 32×4d"),
    "resnext101_32x8d": ("bottleneck", (3, 4, 23, 3), 32, 8, "ResNeXt-101 32×8d"),
    "wide_resnet50_2": ("bottleneck", (3, 4, 6, 3), 1, 128, "Wide ResNet-50-2"),
    "wide_resnet101_2": ("bottleneck", (3, 4, 23, 3), 1, 128, "Wide ResNet-101-2"),
}


# timm's ResNets of these architectures keep torchvision's names (conv1, layer1.0.bn1, fc, …).
RESNET_KEYMAP = KeyMap(namings=(TIMM_IS_TORCHVISION,))


def _imagenet_spec(name: str) -> ModelSpec:
    block, layers, groups, width, title = _IMAGENET[name]
    return ModelSpec(
        name=name,
        family="resnet",
        build=functools.partial(ResNet, block, layers, groups=groups, width_per_group=width),
        input_size=224,
        num_classes=1000,
        normalization="imagenet",
        head="fc",
        keymap=RESNET_KEYMAP,
        description=f"{title}, torchvision layout (ImageNet, 224 px)",
        extra={"block": block, "layers": layers, "groups": groups, "width_per_group": width},
    )


RESNET18_CIFAR = ModelSpec(
    name="resnet18_cifar",
    family="resnet",
    build=functools.partial(ResNet, "basic", (2, 2, 2, 2), stem="cifar"),
    input_size=32,
    num_classes=10,
    normalization="cifar_std",
    head="fc",
    description="CIFAR ResNet-18 of PyTorch_CIFAR10 (3×3 stem + max-pool; Sparsity Probe, WFN)",
    aliases=("cifar10_resnet18",),
    extra={"block": "basic", "layers": (2, 2, 2, 2), "stem": "cifar"},
)

SPECS = [_imagenet_spec(n) for n in _IMAGENET] + [RESNET18_CIFAR]
