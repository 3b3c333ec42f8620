"""Building blocks shared by all model families, with PyTorch semantics.

Every padding is explicit (PyTorch pads symmetrically; Flax "SAME" does not at stride 2).
BatchNorm uses PyTorch's defaults: momentum 0.1 on the new value is Flax momentum 0.9.

Training speed on XLA:CPU (issue 9; numbers in docs/benchmarks.md, scripts/bench_ops.py):
the conv and BN implementations are fields of the model, never process globals read while
tracing. Every jaxnets model (:class:`ImplModule`) has ``conv_impl`` (default ``"auto"``) and
``bn_impl`` (default ``"flax"``), passed down to the blocks that call :func:`conv` and
:func:`batch_norm`; ``spec.create(num_classes, conv_impl=…, bn_impl=…)`` sets them.

* ``conv_impl``: ``"auto"`` is resolved when the model is constructed
  (:func:`resolve_conv_impl`): ``"fast"`` — :func:`conv_general_dilated`, XLA's convolution
  with a custom VJP tuned for XLA:CPU — when ``jax.default_backend()`` is CPU, ``"xla"``
  (plain XLA convolutions and autodiff) on GPU/TPU. ``"fast"``, ``"materialize"`` and ``"xla"``
  may be given explicitly. The model stores the resolved value; ``config.json`` records the
  one ``"auto"`` gives (``versions.conv_impl``). ``JAXNETS_CONV`` (one of those three), when
  set, overrides what ``"auto"`` resolves to — for benchmarks' A/B runs only; it is read at
  model construction, not while tracing.
* ``bn_impl``: ``"flax"`` gives nn.BatchNorm; ``"fast"`` gives :class:`BatchNorm` — the same
  numbers with a hand-written backward (opt-in, see :data:`BN_IMPLS`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from jaxnets.errors import JaxnetsError

Dtype = Any


def pad2(p: int | tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """PyTorch's symmetric `padding=p` as an explicit Flax padding."""
    ph, pw = (p, p) if isinstance(p, int) else p
    return ((ph, ph), (pw, pw))


# --------------------------------------------------------------------------- convolution

CONV_IMPLS = ("fast", "materialize", "xla")
CONV_IMPL_ENV = "JAXNETS_CONV"  # benchmarks only: overrides what "auto" resolves to


def resolve_conv_impl(value: str, backend: str | None = None) -> str:
    """The conv implementation a model with ``conv_impl=value`` uses: one of CONV_IMPLS.

    ``"auto"``: ``"fast"`` (the custom VJP, tuned for XLA:CPU) when ``backend`` — by default
    ``jax.default_backend()`` — is ``"cpu"``, else ``"xla"`` (plain XLA convolutions). The
    environment variable ``JAXNETS_CONV``, when set, replaces that choice (for benchmarks).
    Called when a model is constructed, so the model holds a concrete value.
    """
    if value == "auto":
        override = os.environ.get(CONV_IMPL_ENV, "")
        if override:
            if override not in CONV_IMPLS:
                raise JaxnetsError(f"{CONV_IMPL_ENV}={override!r} is not a conv implementation "
                                   f"(choose from {', '.join(CONV_IMPLS)}, or unset it)")
            return override
        backend = jax.default_backend() if backend is None else backend
        return "fast" if backend == "cpu" else "xla"
    if value not in CONV_IMPLS:
        raise JaxnetsError(f"unknown conv implementation {value!r} "
                           f"(choose from auto, {', '.join(CONV_IMPLS)})")
    return value


# Filter-gradient chunk: images per chunk such that x + dy of one chunk fit in about this many
# bytes (≈ the 2 MiB L2 of one core; measured by scripts/bench_ops.py, see docs/benchmarks.md).
CONV_CHUNK_BYTES = int(os.environ.get("JAXNETS_CONV_CHUNK_BYTES", str(2**21)))


def _materialize(tree: Any) -> Any:
    """Identity that XLA cannot see through, so consumers read stored buffers.

    Without it XLA:CPU fuses the whole elementwise chain that produced a conv's input
    (BN → add → ReLU of several residual blocks) into the layout transposes of the filter
    gradient, recomputing it there with 10–20 operands per element (a quarter of the ResNet-20
    train step). ``lax.optimization_barrier`` does not help: XLA:CPU drops it before fusion.
    A while loop with a data-dependent trip count (0 or 1; the result equals the input either
    way) is a boundary fusion cannot cross.
    """
    leaves = jax.tree_util.tree_leaves(tree)
    probe = leaves[0].reshape(-1)[0]
    trips = (probe == probe).astype(jnp.int32)  # 1 unless NaN; unknown at compile time

    def body(carry: tuple) -> tuple:
        # touch one element with a value XLA cannot prove zero (float(i) * 0.0); a loop whose
        # tensors pass through untouched is deleted by XLA's while-loop simplifier.
        i, t = carry
        zero = i.astype(jnp.float32) * 0.0
        t = jax.tree_util.tree_map(lambda a: a.at[(0,) * a.ndim].add(zero.astype(a.dtype)), t)
        return i + 1, t

    return lax.while_loop(lambda c: c[0] < trips, body, (jnp.int32(0), tree))[1]


# At most this many chunks: XLA:CPU with the oneDNN flags (jaxlib 0.12) fuses the sum of the
# per-chunk filter gradients into one oneDNN convolution as binary post-ops, and oneDNN takes at
# most 32: 33 chunks compiled, 48 and 64 aborted the process ("could not append a binary post-op").
MAX_FILTER_GRAD_CHUNKS = 32


def filter_grad_chunks(batch: int, bytes_per_example: int,
                       chunk_bytes: int | None = None) -> int:
    """How many batch chunks the filter gradient is split into (a divisor of ``batch``).

    The largest chunk whose conv input + output gradient fit in ``chunk_bytes``: XLA:CPU's
    filter-gradient convolution contracts over batch × height × width, and is 2–3× faster
    per FLOP when that operand fits in cache (bench_ops.py). Never more than
    ``MAX_FILTER_GRAD_CHUNKS`` chunks (larger chunks instead, e.g. 224-px images at batch 64).
    """
    limit = CONV_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    if limit <= 0:
        return 1
    per = max(1, limit // max(1, bytes_per_example))
    divisors = [d for d in range(1, batch + 1) if batch % d == 0]
    size = max((d for d in divisors if d <= per), default=1)
    if batch // size > MAX_FILTER_GRAD_CHUNKS:
        size = min(d for d in divisors if batch // d <= MAX_FILTER_GRAD_CHUNKS)
    return batch // size


def _chunk(x: jax.Array, axis: int, chunks: int, i: int) -> jax.Array:
    """Examples i, i + chunks, i + 2·chunks, … along ``axis``: a reshape (batch → per-chunk ×
    chunks) and an index on the inner axis, so a batch sharded over devices stays local."""
    n = x.shape[axis]
    x = x.reshape(x.shape[:axis] + (n // chunks, chunks) + x.shape[axis + 1:])
    return lax.index_in_dim(x, i, axis=axis + 1, keepdims=False)


# Inputs at most this many pixels (H·W) go through _conv_as_dot: XLA:CPU rewrites a 3×3 conv
# on a 2×2 map (VGG-16's last block at 32 px) into a slow generic kernel (~0.7 s per conv at
# batch 128 × 512 channels, 70 % of the VGG-16 train step); as one matmul it is milliseconds.
TINY_SPATIAL = int(os.environ.get("JAXNETS_CONV_TINY", "4"))


def _tiny_spatial(lhs: jax.Array, rhs: jax.Array, dn: Any, lhs_dilation: Any, rhs_dilation: Any,
                  groups: int, padding: Any) -> bool:
    nhwc_hwio = (tuple(dn.lhs_spec) == (0, 3, 1, 2) and tuple(dn.rhs_spec) == (3, 2, 0, 1)
                 and tuple(dn.out_spec) == (0, 3, 1, 2))
    plain = (groups == 1 and not isinstance(padding, str)
             and all(d == 1 for d in (lhs_dilation or (1, 1)))
             and all(d == 1 for d in (rhs_dilation or (1, 1))))
    return nhwc_hwio and plain and lhs.ndim == 4 and lhs.shape[1] * lhs.shape[2] <= TINY_SPATIAL


def _conv_as_dot(lhs: jax.Array, rhs: jax.Array, strides: Sequence[int], padding: Any,
                 precision: Any, preferred_element_type: Any) -> jax.Array:
    """NHWC × HWIO convolution as explicit patches (kh·kw strided slices, concatenated along
    channels in HWIO's (kh, kw, c) order) and one dot; autodiff gives slices/pads and dots."""
    kh, kw, c, o = rhs.shape
    n, h, w, _ = lhs.shape
    (pt, pb), (pl, pr) = padding
    sh, sw = strides
    x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    taps = [lax.slice(x, (0, i, j, 0), (n, i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1, c),
                      (1, sh, sw, 1)) for i in range(kh) for j in range(kw)]
    patches = jnp.concatenate(taps, axis=-1)
    return lax.dot_general(patches, rhs.reshape(kh * kw * c, o), (((3,), (0,)), ((), ())),
                           precision=precision, preferred_element_type=preferred_element_type)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: Any, lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers: Any = None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision: Any = None,
                         preferred_element_type: Any = None, *,
                         impl: str = "fast") -> jax.Array:
    """``lax.conv_general_dilated`` with a VJP that trains faster on XLA:CPU.

    Forward: XLA's convolution, unchanged. Backward (``impl="fast"``): the saved input and
    the incoming gradient are materialised (see :func:`_materialize`); the input gradient is
    XLA's own; the filter gradient is XLA's own *per batch chunk* (:func:`filter_grad_chunks`),
    summed — the same sums in a different order, equal to autodiff to float rounding
    (tests/models/test_fast_conv.py). NHWC inputs of at most ``TINY_SPATIAL`` pixels are
    computed as patches + one dot instead (forward and backward). ``"materialize"`` skips the
    chunking; ``"xla"`` is plain autodiff. Models pick ``impl`` through their ``conv_impl``.
    """
    if impl not in CONV_IMPLS:
        raise JaxnetsError(f"unknown conv implementation {impl!r} "
                           f"(choose from {', '.join(CONV_IMPLS)})")

    def f(a: jax.Array, b: jax.Array) -> jax.Array:
        return lax.conv_general_dilated(a, b, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count,
                                        batch_group_count, precision, preferred_element_type)

    if impl == "xla" or batch_group_count != 1:
        return f(lhs, rhs)
    dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if _tiny_spatial(lhs, rhs, dn, lhs_dilation, rhs_dilation, feature_group_count, padding):
        return _conv_as_dot(lhs, rhs, window_strides, padding, precision, preferred_element_type)
    batch_dim = dn.lhs_spec[0]

    @jax.custom_vjp
    def g(a: jax.Array, b: jax.Array) -> jax.Array:
        return f(a, b)

    def g_fwd(a: jax.Array, b: jax.Array) -> tuple[jax.Array, tuple]:
        return f(a, b), (a, b)

    def g_bwd(res: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
        a, b = res
        a, dy = _materialize((a, dy))
        da = jax.vjp(lambda a_: f(a_, b), a)[1](dy)[0]
        n = a.shape[batch_dim]
        per_example = (a.size + dy.size) // max(1, n) * a.dtype.itemsize
        chunks = filter_grad_chunks(n, per_example) if impl == "fast" else 1
        db = None
        for i in range(chunks):
            a_i, dy_i = _chunk(a, batch_dim, chunks, i), _chunk(dy, dn.out_spec[0], chunks, i)
            part = jax.vjp(lambda b_, a_i=a_i: f(a_i, b_), b)[1](dy_i)[0]
            db = part if db is None else db + part
        return da, db

    g.defvjp(g_fwd, g_bwd)
    return g(lhs, rhs)


# nn.Conv's conv_general_dilated per implementation (one object each: no new partial per call)
_CONV_FNS = {impl: functools.partial(conv_general_dilated, impl=impl) for impl in CONV_IMPLS}


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
    impl: str = "fast",
) -> nn.Conv:
    """A 2-D convolution laid out like `torch.nn.Conv2d(…, padding=padding)`.

    ``impl``: one of CONV_IMPLS (a model passes its resolved ``conv_impl``)."""
    if impl not in _CONV_FNS:
        raise JaxnetsError(f"unknown conv implementation {impl!r} (choose from "
                           f"{', '.join(CONV_IMPLS)}; resolve 'auto' with resolve_conv_impl)")
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=pad2(padding),
        use_bias=bias,
        feature_group_count=groups,
        dtype=dtype,
        kernel_init=kernel_init,
        conv_general_dilated=_CONV_FNS[impl],
        name=name,
    )


# --------------------------------------------------------------------------- batch norm

BN_IMPLS = ("flax", "fast")
# "flax": nn.BatchNorm (the default); "fast": :class:`BatchNorm` — the same numbers with a
# hand-written backward, ~5–7 % faster ResNet-20 train steps on XLA:CPU. Not the default: its
# float rounding differs from autodiff's by ~1e-7, and on tiny-image models (digits_cnn:
# ReLU/max-pool ties on zero pixels) such differences can flip a tie during an epoch, so
# tests/train/test_parallel.py's 1-vs-4-device tolerance was exceeded once (see docs).


def resolve_bn_impl(value: str) -> str:
    """Checks a model's ``bn_impl``: one of BN_IMPLS."""
    if value not in BN_IMPLS:
        raise JaxnetsError(f"unknown BN implementation {value!r} (choose from {', '.join(BN_IMPLS)})")
    return value


class ImplModule(nn.Module):
    """``nn.Module`` with the implementation fields of every jaxnets model (see the top).

    Both are keyword-only (they do not shift positional fields) and resolved at construction:
    ``conv_impl="auto"`` becomes ``"fast"`` or ``"xla"`` (:func:`resolve_conv_impl`), so the
    module — and every clone — holds the concrete value that tracing uses. A model passes both
    on to its blocks and to :func:`conv` / :func:`batch_norm`.
    """

    conv_impl: str = dataclasses.field(default="auto", kw_only=True)
    bn_impl: str = dataclasses.field(default="flax", kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "conv_impl", resolve_conv_impl(self.conv_impl))
        object.__setattr__(self, "bn_impl", resolve_bn_impl(self.bn_impl))
        super().__post_init__()

    @property
    def impls(self) -> dict[str, str]:
        """``conv_impl`` and ``bn_impl`` as keyword arguments for a block."""
        return {"conv_impl": self.conv_impl, "bn_impl": self.bn_impl}


def _bn_stats(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array, jax.Array]:
    # Flax's default ("fast variance"): E[x²] − E[x]², clipped at 0, in float32. Also returns
    # d clip / d raw (1 above 0, ½ at 0, 0 below: jnp.maximum's), which gates the variance
    # path of the backward as autodiff of the clip does.
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axes)
    raw = jnp.mean(xf * xf, axes) - mean * mean
    gate = jnp.where(raw > 0, 1.0, jnp.where(raw == 0, 0.5, 0.0))
    return mean, jnp.maximum(0.0, raw), gate


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _bn_train(x: jax.Array, scale: jax.Array, bias: jax.Array,
              epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Train-mode BN over all axes but the last: ``(y float32, batch mean, batch var)``."""
    return _bn_train_fwd(x, scale, bias, epsilon)[0]


def _bn_train_fwd(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> tuple:
    axes = tuple(range(x.ndim - 1))
    mean, var, gate = _bn_stats(x, axes)
    rstd = lax.rsqrt(var + epsilon)
    # the order of nn.BatchNorm's _normalize: (x − mean) · (rsqrt(var + eps) · scale) + bias
    y = (x - mean) * (rstd * scale) + bias
    return (y, mean, var), (x, mean, rstd, scale, gate)


def _bn_train_bwd(epsilon: float, res: tuple, cts: tuple) -> tuple:
    """dx = a·dy + b·(x − mean) + c per channel: two reductions over (dy, x) and one
    elementwise pass, where autodiff of the forward keeps and re-reads more intermediates."""
    del epsilon
    x, mean, rstd, scale, gate = res
    dy, dmean, dvar = cts
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    dy = dy.astype(jnp.float32)
    centred = x.astype(jnp.float32) - mean
    dbias = jnp.sum(dy, axes)
    dscale = jnp.sum(dy * centred, axes) * rstd
    a = scale * rstd
    # the statistics are outputs too (they feed the running averages): their cotangents
    # (zeros in training) enter through mean → 1/n and var → 2·(x − mean)/n
    b = (-a * dscale * rstd / n + 2.0 * dvar / n) * gate
    c = -a * dbias / n + dmean / n
    dx = (a * dy + b * centred + c).astype(x.dtype)
    return dx, dscale, dbias


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


class BatchNorm(nn.Module):
    """``nn.BatchNorm`` over the last axis (same parameters, statistics, defaults and numbers:
    fast variance, float32 statistics, biased running variance) with a hand-written backward
    (:func:`_bn_train_bwd`) in training mode."""

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        out_dtype = self.dtype or jnp.result_type(x, scale)
        if self.use_running_average:
            y = (x - ra_mean.value) * (lax.rsqrt(ra_var.value + self.epsilon) * scale) + bias
            return y.astype(out_dtype)
        y, mean, var = _bn_train(x, scale, bias, self.epsilon)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y.astype(out_dtype)


def batch_norm(train: bool, name: str | None = None, dtype: Dtype = jnp.float32,
               epsilon: float = 1e-5, momentum: float = 0.9, *, impl: str = "flax") -> nn.Module:
    """`torch.nn.BatchNorm2d/1d` defaults (eps 1e-5, momentum 0.1 ≙ Flax 0.9).

    ``impl="flax"``: ``nn.BatchNorm``; ``"fast"``: :class:`BatchNorm` — the same variables and
    numbers, hand-written backward (a model passes its ``bn_impl``)."""
    cls = {"flax": nn.BatchNorm, "fast": BatchNorm}[resolve_bn_impl(impl)]
    return cls(use_running_average=not train, momentum=momentum, epsilon=epsilon, dtype=dtype,
               name=name)


def max_pool(x: jnp.ndarray, window: int, stride: int, padding: int = 0, *,
             ceil_mode: bool = False) -> jnp.ndarray:
    """`torch.nn.MaxPool2d(window, stride, padding, ceil_mode=ceil_mode)` (padding with −∞).

    ``ceil_mode``: torch's rule — ⌈(size + 2p − k) / s⌉ + 1 windows, less the last one if it would
    start in the right padding — by padding the bottom/right edges with enough extra −∞.
    """
    if not ceil_mode:
        return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pad2(padding))
    pads = []
    for size in x.shape[1:3]:
        out = -(-(size + 2 * padding - window) // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        extra = max(0, (out - 1) * stride + window - (size + 2 * padding))
        pads.append((padding, padding + extra))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=tuple(pads))


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
