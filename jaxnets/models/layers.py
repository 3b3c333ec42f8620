"""Building blocks shared by all model families, with PyTorch semantics.

Every padding is explicit (PyTorch pads symmetrically; Flax "SAME" does not at stride 2).
BatchNorm uses PyTorch's defaults: momentum 0.1 on the new value is Flax momentum 0.9.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


def pad2(p: int | tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """PyTorch's symmetric `padding=p` as an explicit Flax padding."""
    ph, pw = (p, p) if isinstance(p, int) else p
    return ((ph, ph), (pw, pw))


def conv(
    features: int,
    kernel: int,
    stride: int = 1,
    padding: int = 0,
    *,
    bias: bool = False,
    groups: int = 1,
    name: str | None = None,
    dtype: Dtype = jnp.float32,
    kernel_init: Any = nn.initializers.kaiming_normal(),
) -> nn.Conv:
    """A 2-D convolution laid out like `torch.nn.Conv2d(…, padding=padding)`."""
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=pad2(padding),
        use_bias=bias,
        feature_group_count=groups,
        dtype=dtype,
        kernel_init=kernel_init,
        name=name,
    )


def batch_norm(train: bool, name: str | None = None, dtype: Dtype = jnp.float32,
               epsilon: float = 1e-5, momentum: float = 0.9) -> nn.BatchNorm:
    """`torch.nn.BatchNorm2d/1d` defaults (eps 1e-5, momentum 0.1 ≙ Flax 0.9)."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        name=name,
    )


def max_pool(x: jnp.ndarray, window: int, stride: int, padding: int = 0) -> jnp.ndarray:
    """`torch.nn.MaxPool2d(window, stride, padding)` (floor mode, padding with −∞)."""
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pad2(padding))


def avg_pool(x: jnp.ndarray, window: int, stride: int, padding: int = 0) -> jnp.ndarray:
    """`torch.nn.AvgPool2d(window, stride, padding)` with count_include_pad=True."""
    return nn.avg_pool(x, (window, window), strides=(stride, stride), padding=pad2(padding),
                       count_include_pad=True)


def _adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    # torch's rule: bin j covers [floor(j*i/o), ceil((j+1)*i/o)).
    return [((j * size) // out, math.ceil((j + 1) * size / out)) for j in range(out)]


def adaptive_avg_pool(x: jnp.ndarray, output_size: int | Sequence[int]) -> jnp.ndarray:
    """`torch.nn.AdaptiveAvgPool2d` on an NHWC tensor, bins chosen as torch does.

    Static shapes, so the bins are Python ints; when the input size is a multiple of the
    output size this is a plain reshape-mean, otherwise an explicit sum over (possibly
    overlapping or replicated) windows.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, h, w, c = x.shape
    if h % oh == 0 and w % ow == 0:
        return x.reshape(n, oh, h // oh, ow, w // ow, c).mean(axis=(2, 4))
    rows = [x[:, a:b].mean(axis=1) for a, b in _adaptive_bins(h, oh)]
    x = jnp.stack(rows, axis=1)
    cols = [x[:, :, a:b].mean(axis=2) for a, b in _adaptive_bins(w, ow)]
    return jnp.stack(cols, axis=2)


def global_avg_pool(x: jnp.ndarray) -> jnp.ndarray:
    """Mean over H and W: NHWC → NC."""
    return jnp.mean(x, axis=(1, 2))


def flatten_nhwc(x: jnp.ndarray) -> jnp.ndarray:
    """Flatten in NHWC order; converters permute the first classifier kernel to match torch."""
    return x.reshape(x.shape[0], -1)


dense = functools.partial(nn.Dense)
