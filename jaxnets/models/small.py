"""Small networks: the hyperplane paper's LeNet and MLPs, WFN's All_Conv_4, and a digits CNN.

Submodule names follow the PyTorch module paths by the generic rule (``features.0`` →
``features_0``), so a torch ``state_dict`` converts mechanically. Where a Linear is fed by a
PyTorch (C, H, W) flatten, the family's KeyMap permutes its kernel rows once for NHWC.

The sown ``"features"`` is always the input of the final Dense (the head), as in the other
families: for the conv nets with a multi-layer classifier that is the last hidden vector.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.models.layers import (
    ImplModule,
    adaptive_avg_pool,
    batch_norm,
    conv,
    flatten_nhwc,
    global_avg_pool,
    max_pool,
    pad2,
)
from jaxnets.models.registry import ModelSpec

# Initialisers, written in PyTorch's terms (specs/hyperplane-arrangements.md §8.4).
xavier_uniform_relu = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")  # gain √2
kaiming_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int):
    """PyTorch's default bias init, U(±1/√fan_in) (fan_in is known only at the call site)."""
    bound = 1.0 / fan_in**0.5
    return lambda key, shape, dtype=jnp.float32: nn.initializers.uniform(2 * bound)(
        key, shape, dtype) - bound


# --------------------------------------------------------------------------------------------
# LeNet ("custom 9-layer LeNet" of the hyperplane code)
# --------------------------------------------------------------------------------------------

LENET_CFG: tuple[int | str, ...] = (6, 6, "M", 16, 16, "M", 64, 64, "M")


class LeNet(ImplModule):
    """Conv3×3(pad 1)+ReLU stacks with max-pools, AdaptiveAvgPool(3), 3-layer classifier.

    Torch keys ``features.{0,2,5,7,10,12}``, ``classifier.{0,3,6}``. On 32 px CIFAR the
    features end at 4×4 and the 4→3 adaptive pool uses overlapping windows.
    """

    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        idx = 0  # torch Sequential index: conv, relu → +2; pool → +1
        for v in LENET_CFG:
            if v == "M":
                x = max_pool(x, 2, 2)
                idx += 1
            else:
                x = conv(int(v), 3, 1, 1, bias=True, name=f"features_{idx}", dtype=self.dtype,
                         kernel_init=xavier_uniform_relu, impl=self.conv_impl)(x)
                x = nn.relu(x)
                idx += 2
        x = flatten_nhwc(adaptive_avg_pool(x, 3))

        def dense(n: int, name: str) -> nn.Dense:
            return nn.Dense(n, dtype=self.dtype, kernel_init=xavier_uniform_relu, name=name)

        x = nn.relu(dense(120, "classifier_0")(x))
        x = nn.Dropout(0.5, deterministic=not train, name="classifier_2")(x)
        x = nn.relu(dense(84, "classifier_3")(x))
        x = nn.Dropout(0.5, deterministic=not train, name="classifier_5")(x)
        self.sow("intermediates", "features", x)
        return dense(self.num_classes, "classifier_6")(x)


# --------------------------------------------------------------------------------------------
# MLP / MLP-BN (the hyperplane code's mlp sub-package)
# --------------------------------------------------------------------------------------------


class MLP(ImplModule):
    """``hidden1``: fc-Dropout(0.2)-[bn]-ReLU; ``hidden2..4``: fc1-fc2-Dropout-[bn]-ReLU.

    The bottleneck fc1→fc2 has no nonlinearity in between. Input is flattened (NHWC order;
    the key map permutes ``hidden1.fc`` rows from torch's CHW flatten).
    """

    num_classes: int = 10
    use_bn: bool = False
    width: int = 4096
    bottleneck: int = 1024
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = flatten_nhwc(x)
        x = MLPHidden1(self.width, self.use_bn, self.dtype, name="hidden1", **self.impls)(x, train)
        for i in (2, 3, 4):
            x = MLPBottleneck(self.width, self.bottleneck, self.use_bn, self.dtype,
                              name=f"hidden{i}", **self.impls)(x, train)
        self.sow("intermediates", "features", x)
        return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=kaiming_normal_fan_out,
                        name="classifier")(x)


class MLPHidden1(ImplModule):
    width: int
    use_bn: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = nn.Dense(self.width, dtype=self.dtype, kernel_init=kaiming_normal_fan_out,
                     name="fc")(x)
        x = nn.Dropout(0.2, deterministic=not train, name="dropout")(x)
        if self.use_bn:
            x = batch_norm(train, name="bn", dtype=self.dtype, impl=self.bn_impl)(x)
        return nn.relu(x)


class MLPBottleneck(ImplModule):
    width: int
    bottleneck: int
    use_bn: bool
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        x = nn.Dense(self.bottleneck, dtype=self.dtype, kernel_init=kaiming_normal_fan_out,
                     name="fc1")(x)
        x = nn.Dense(self.width, dtype=self.dtype, kernel_init=kaiming_normal_fan_out,
                     name="fc2")(x)
        x = nn.Dropout(0.2, deterministic=not train, name="dropout")(x)
        if self.use_bn:
            x = batch_norm(train, name="bn", dtype=self.dtype, impl=self.bn_impl)(x)
        return nn.relu(x)


# --------------------------------------------------------------------------------------------
# All_Conv_4 (WFN / Sparsity Probe)
# --------------------------------------------------------------------------------------------


class AllConv4(ImplModule):
    """Four unpadded 3×3 convs (64, 64, M, 128, 128, M), then three Linears, no ReLU between.

    The specs give no PyTorch key names for All_Conv_4 (its checkpoints are not public), so the
    torch-style names ``conv1..conv4`` and ``fc1..fc3`` are our choice. Default PyTorch init.
    """

    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train
        for i, (width, pool) in enumerate(((64, False), (64, True), (128, False), (128, True)),
                                          start=1):
            # Unpadded, PyTorch default init (the bias bound needs fan_in, known here).
            x = nn.Conv(width, (3, 3), padding=pad2(0), dtype=self.dtype,
                        kernel_init=torch_default_kernel,
                        bias_init=torch_default_bias(9 * x.shape[-1]), name=f"conv{i}")(x)
            x = nn.relu(x)
            if pool:
                x = max_pool(x, 2, 2)
        x = flatten_nhwc(x)
        for i, width in enumerate((256, 256), start=1):
            x = _torch_dense(width, x.shape[-1], f"fc{i}", self.dtype)(x)
        self.sow("intermediates", "features", x)
        return _torch_dense(self.num_classes, x.shape[-1], "fc3", self.dtype)(x)


def _torch_dense(features: int, fan_in: int, name: str, dtype: Any) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, kernel_init=torch_default_kernel,
                    bias_init=torch_default_bias(fan_in), name=name)


# --------------------------------------------------------------------------------------------
# digits_cnn: the demo model for scikit-learn's 8×8 digits
# --------------------------------------------------------------------------------------------


class DigitsCNN(ImplModule):
    """conv1-bn1-ReLU (32), conv2-bn2-ReLU (64), max-pool 2, conv3-bn3-ReLU (64), GAP, ``fc``."""

    num_classes: int = 10
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        for i, width in enumerate((32, 64, 64), start=1):
            x = conv(width, 3, 1, 1, name=f"conv{i}", dtype=self.dtype,
                     kernel_init=kaiming_normal_fan_out, impl=self.conv_impl)(x)
            x = nn.relu(batch_norm(train, f"bn{i}", self.dtype, impl=self.bn_impl)(x))
            if i == 2:
                x = max_pool(x, 2, 2)
        features = global_avg_pool(x)
        self.sow("intermediates", "features", features)
        return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(features)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

# The hyperplane-paper models share CIFAR-10 at 32 px with its 2020 normalisation.
_cifar_spec = functools.partial(ModelSpec, family="small", input_size=32, num_classes=10,
                                normalization="cifar_2020")

SPECS = [
    _cifar_spec(
        name="lenet",
        build=LeNet,
        min_input_size=2 ** LENET_CFG.count("M"),  # padded convs, three 2×2/2 pools: 8 px → 1×1
        keymap=KeyMap(flatten_chw={"classifier.0": (64, 3, 3)}),
        head="classifier_6",
        description="hyperplane paper's custom 9-layer LeNet (Xavier-uniform gain √2 init)",
    ),
    _cifar_spec(
        name="mlp",
        build=functools.partial(MLP, use_bn=False),
        fixed_input_size=True,  # the first Dense takes the flattened image
        keymap=KeyMap(flatten_chw={"hidden1.fc": (3, 32, 32)}),
        head="classifier",
        description="hyperplane paper's MLP 3072-4096-(1024-4096)×3 (kaiming fan_out init)",
    ),
    _cifar_spec(
        name="mlp_bn",
        build=functools.partial(MLP, use_bn=True),
        fixed_input_size=True,  # the first Dense takes the flattened image
        keymap=KeyMap(flatten_chw={"hidden1.fc": (3, 32, 32)}),
        head="classifier",
        description="hyperplane paper's MLP with BatchNorm1d after each hidden block",
    ),
    _cifar_spec(
        name="allconv4",
        build=AllConv4,
        min_input_size=16,  # unpadded 3×3 convs and 2×2/2 pools: 16 → 14 → 12 → 6 → 4 → 2 → 1
        fixed_input_size=True,  # fc1 takes the flattened 128×5×5 map of 32-px input
        keymap=KeyMap(flatten_chw={"fc1": (128, 5, 5)}),
        head="fc3",
        description="All_Conv_4 of WFN (4 convs, 3 linears without nonlinearity between)",
        aliases=("conv4", "all_conv4"),
    ),
    ModelSpec(
        name="digits_cnn",
        family="small",
        build=DigitsCNN,
        input_size=8,
        min_input_size=2,  # padded convs, one 2×2/2 max-pool
        num_classes=10,
        normalization="digits",
        in_channels=1,
        head="fc",
        description="small CNN for scikit-learn's 8×8 digits (the demo model)",
    ),
]
