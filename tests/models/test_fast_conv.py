"""layers: the conv custom VJP and the BatchNorm backward equal autodiff (to 1e-5).

No timing here — the speed is measured by scripts/bench_ops.py and bench_models.py.
"""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxnets import runtime
from jaxnets.errors import JaxnetsError
from jaxnets.models import layers

NHWC = ("NHWC", "HWIO", "NHWC")


def _rel_err(a: jax.Array, b: jax.Array) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _grads(impl: str, x: jax.Array, w: jax.Array, dy: jax.Array, **conv: object) -> tuple:
    def f(x_: jax.Array, w_: jax.Array) -> jax.Array:
        if impl == "autodiff":
            return lax.conv_general_dilated(x_, w_, **conv)
        return layers.conv_general_dilated(x_, w_, impl=impl, **conv)

    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(dy))


CASES = {
    # name: (x shape, w shape, conv kwargs)
    "3x3 s1 p1": ((8, 10, 10, 4), (3, 3, 4, 6), dict(window_strides=(1, 1), padding=((1, 1), (1, 1)))),
    "3x3 s2 p1": ((6, 9, 9, 4), (3, 3, 4, 8), dict(window_strides=(2, 2), padding=((1, 1), (1, 1)))),
    "1x1 s2": ((4, 8, 8, 8), (1, 1, 8, 4), dict(window_strides=(2, 2), padding=((0, 0), (0, 0)))),
    "7x7 s2 p3": ((4, 16, 16, 3), (7, 7, 3, 8), dict(window_strides=(2, 2), padding=((3, 3), (3, 3)))),
    "grouped": ((4, 6, 6, 8), (3, 3, 2, 8), dict(window_strides=(1, 1), padding=((1, 1), (1, 1)),
                                                feature_group_count=4)),
    "dilated": ((4, 9, 9, 3), (3, 3, 3, 5), dict(window_strides=(1, 1), padding=((2, 2), (2, 2)),
                                                rhs_dilation=(2, 2))),
    "2x2 map (dot path)": ((4, 2, 2, 8), (3, 3, 8, 6), dict(window_strides=(1, 1),
                                                           padding=((1, 1), (1, 1)))),
    "1x1 map s1 (dot path)": ((4, 1, 1, 8), (3, 3, 8, 5), dict(window_strides=(1, 1),
                                                              padding=((1, 1), (1, 1)))),
    "2x2 map s2 (dot path)": ((4, 2, 2, 3), (3, 3, 3, 4), dict(window_strides=(2, 2),
                                                              padding=((1, 1), (1, 1)))),
    "NCHW": ((6, 4, 8, 8), (6, 4, 3, 3), dict(window_strides=(1, 1), padding=((1, 1), (1, 1)),
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))),
}


@pytest.mark.parametrize("impl", ["fast", "materialize", "xla"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_vjp_equals_autodiff(case: str, impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    xs, ws, conv = CASES[case]
    conv = {"dimension_numbers": NHWC, **conv}
    # tiny chunks: the filter gradient is split into as many batch chunks as it can be
    monkeypatch.setattr(layers, "CONV_CHUNK_BYTES", 1)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(xs), jnp.float32)
    w = jnp.asarray(rng.standard_normal(ws), jnp.float32)
    y_ref = lax.conv_general_dilated(x, w, **conv)
    dy = jnp.asarray(rng.standard_normal(y_ref.shape), jnp.float32)
    ref = jax.jit(lambda *a: _grads("autodiff", *a, **conv))(x, w, dy)
    got = jax.jit(lambda *a: _grads(impl, *a, **conv))(x, w, dy)
    for name, g, r in zip(("y", "dx", "dw"), got, ref, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype, name
        assert _rel_err(g, r) <= 1e-5, (name, _rel_err(g, r))


def test_chunked_and_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    # a budget of 4 examples per chunk → 8 chunks; bf16 compute (fp32 reference, bf16 tolerance)
    monkeypatch.setattr(layers, "CONV_CHUNK_BYTES", 4 * 2 * 16 * 16 * 16 * 4)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((32, 16, 16, 16)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 16, 16)), jnp.float32)
    conv = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), dimension_numbers=NHWC)
    assert layers.filter_grad_chunks(32, x[0].size * 2 * 4) == 8
    dy = jnp.asarray(rng.standard_normal((32, 16, 16, 16)), jnp.float32)
    ref = _grads("autodiff", x, w, dy, **conv)
    got = jax.jit(lambda *a: _grads("fast", *a, **conv))(x, w, dy)
    for g, r in zip(got, ref, strict=True):
        assert _rel_err(g, r) <= 1e-5
    xb, wb, dyb = (a.astype(jnp.bfloat16) for a in (x, w, dy))
    got_b = jax.jit(lambda *a: _grads("fast", *a, **conv))(xb, wb, dyb)
    for g, r in zip(got_b, ref, strict=True):
        assert g.dtype == jnp.bfloat16 and _rel_err(g, r) <= 3e-2


def test_filter_grad_chunks() -> None:
    assert layers.filter_grad_chunks(128, 128 * 1024, 2**21) == 8  # 16 examples per chunk
    assert layers.filter_grad_chunks(128, 1, 2**21) == 1  # everything fits
    assert layers.filter_grad_chunks(12, 1000, 4500) == 3  # 4 per chunk (divisor ≤ 4.5)
    assert layers.filter_grad_chunks(7, 10**9, 2**21) == 7  # one example per chunk
    assert layers.filter_grad_chunks(64, 10, 0) == 1  # 0 = no chunking
    # never more than 32 chunks (oneDNN's post-op limit): larger chunks instead
    assert layers.filter_grad_chunks(64, 10**9, 2**21) == 32  # 2 per chunk, not 1
    assert layers.filter_grad_chunks(96, 10**9, 2**21) == 32  # 3 per chunk
    assert layers.filter_grad_chunks(37, 10**9, 2**21) == 1  # a prime: the whole batch
    assert layers.filter_grad_chunks(32, 10**9, 2**21) == 32


@pytest.mark.skipif(not runtime.onednn_supported(),
                    reason="oneDNN convolution custom calls need jaxlib >= 0.12 on x86")
def test_many_chunks_compile_under_onednn() -> None:
    """224-px-sized activations at batch 64 (64 chunks of 1 before the cap): with the oneDNN
    flags, XLA fused the 64-term sum into one convolution's post-ops and aborted the process."""
    flags = os.environ.get("XLA_FLAGS", "")
    if not all(flag in flags for flag in runtime.ONEDNN_XLA_FLAGS):
        pytest.skip(f"the oneDNN flags are not in force (XLA_FLAGS={flags!r}, JAXNETS_ONEDNN)")
    x = jnp.ones((64, 56, 56, 8), jnp.float32)
    w = jnp.full((3, 3, 8, 8), 0.01, jnp.float32)
    assert layers.filter_grad_chunks(64, x[0].size * 2 * 4, 8 * 1024) == 32

    def loss(x_: jax.Array, w_: jax.Array) -> jax.Array:
        y = layers.conv_general_dilated(x_, w_, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), impl="fast")
        return jnp.sum(y * y)

    with mock.patch.object(layers, "CONV_CHUNK_BYTES", 8 * 1024):  # 1 example per chunk wanted
        grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
    assert all(bool(jnp.isfinite(g).all()) for g in grads)


def test_materialize_is_identity_even_for_nan() -> None:
    x = jnp.asarray([[np.nan, 1.0], [-0.5, 2.0]], jnp.float32)
    y = jax.jit(layers._materialize)({"a": x, "b": jnp.arange(3)})
    np.testing.assert_array_equal(np.asarray(y["a"]), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(y["b"]), np.arange(3))


def test_unknown_impl() -> None:
    x, w = jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1))
    with pytest.raises(JaxnetsError, match="unknown conv implementation"):
        layers.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC,
                                    impl="nope")
    with pytest.raises(JaxnetsError, match="unknown conv implementation 'auto'"):
        layers.conv(4, 3, impl="auto")  # a model resolves "auto" before its layers see it


def test_resnet20_train_gradients_equal_autodiff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole model in train mode (BN batch statistics), fast conv VJP + layers.BatchNorm vs
    plain autodiff + nn.BatchNorm: every parameter gradient and the updated batch_stats agree
    to 1e-5."""
    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import get_spec

    spec = get_spec("resnet20")
    modules = {"xla": spec.create(conv_impl="xla", bn_impl="flax"),
               "fast": spec.create(conv_impl="fast", bn_impl="fast")}
    variables = init_variables(spec, modules["xla"], seed=3)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((8, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8))

    def loss(params: dict, module: Any) -> tuple:
        logits, upd = module.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                                   train=True, mutable=["batch_stats"])
        ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))
        return ce, upd

    out = {}
    monkeypatch.setattr(layers, "CONV_CHUNK_BYTES", 4 * 32 * 32 * 32 * 4)  # chunks of 4 at 32 px
    for impl, module in modules.items():  # the model's fields choose both implementations
        out[impl] = jax.jit(jax.value_and_grad(lambda p, m=module: loss(p, m), has_aux=True))(
            variables["params"])
    (l_x, upd_x), g_x = out["xla"]
    (l_f, upd_f), g_f = out["fast"]
    assert abs(float(l_x) - float(l_f)) <= 1e-6
    flat_x = jax.tree_util.tree_leaves_with_path(g_x)
    flat_f = jax.tree_util.tree_leaves(g_f)
    assert len(flat_x) == len(flat_f) == len(jax.tree_util.tree_leaves(variables["params"]))
    for (path, a), b in zip(flat_x, flat_f, strict=True):
        assert _rel_err(b, a) <= 1e-5, (jax.tree_util.keystr(path), _rel_err(b, a))
    for a, b in zip(jax.tree_util.tree_leaves(upd_x), jax.tree_util.tree_leaves(upd_f), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_fast_batch_norm_equals_flax(dtype: Any) -> None:
    """layers.BatchNorm vs nn.BatchNorm: same variables, outputs, running statistics and
    gradients (x, scale, bias) — 1e-5 in float32 (bf16: output rounding only)."""
    from flax import linen as nn

    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((6, 5, 5, 8)) * 3 + 1, jnp.float32)
    g = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    mods = {"flax": lambda train: nn.BatchNorm(use_running_average=not train, momentum=0.9,
                                               epsilon=1e-5, dtype=dtype),
            "fast": lambda train: layers.BatchNorm(use_running_average=not train, momentum=0.9,
                                                   epsilon=1e-5, dtype=dtype)}
    v = {k: m(True).init(jax.random.key(0), x) for k, m in mods.items()}
    assert jax.tree_util.tree_structure(v["flax"]) == jax.tree_util.tree_structure(v["fast"])
    # non-trivial parameters and running statistics, the same on both sides
    params = {"scale": jnp.asarray(rng.uniform(0.5, 2, 8), jnp.float32),
              "bias": jnp.asarray(rng.standard_normal(8), jnp.float32)}
    stats = {"mean": jnp.asarray(rng.standard_normal(8), jnp.float32),
             "var": jnp.asarray(rng.uniform(0.5, 2, 8), jnp.float32)}
    tol = 1e-5 if dtype == jnp.float32 else 1e-2
    out = {}
    for k, m in mods.items():
        def loss(p: dict, x_: jax.Array, m: Any = m) -> tuple:
            y, upd = m(True).apply({"params": p, "batch_stats": stats}, x_.astype(dtype),
                                   mutable=["batch_stats"])
            return jnp.sum(y.astype(jnp.float32) * g), (y, upd)

        (_, (y, upd)), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
            params, x)
        y_eval = m(False).apply({"params": params, "batch_stats": stats}, x.astype(dtype))
        out[k] = (y, upd["batch_stats"], grads, y_eval)
    (y_a, s_a, g_a, e_a), (y_b, s_b, g_b, e_b) = out["flax"], out["fast"]
    assert y_a.dtype == y_b.dtype == e_a.dtype == e_b.dtype == dtype
    assert _rel_err(y_b, y_a) <= tol and _rel_err(e_b, e_a) <= tol
    for name in ("mean", "var"):
        assert _rel_err(s_b[name], s_a[name]) <= 1e-5
    for a, b in zip(jax.tree_util.tree_leaves(g_a), jax.tree_util.tree_leaves(g_b), strict=True):
        assert _rel_err(b, a) <= tol


def test_batch_norm_switch() -> None:
    from flax import linen as nn

    from jaxnets.models.registry import get_spec

    assert isinstance(layers.batch_norm(True, impl="fast"), layers.BatchNorm)
    assert isinstance(layers.batch_norm(True, impl="flax"), nn.BatchNorm)
    assert isinstance(layers.batch_norm(True), nn.BatchNorm)  # the default
    with pytest.raises(JaxnetsError, match="unknown BN implementation 'nope'"):
        layers.batch_norm(True, impl="nope")
    assert get_spec("resnet20").create().bn_impl == "flax"
    assert get_spec("resnet20").create(bn_impl="fast").bn_impl == "fast"
    with pytest.raises(JaxnetsError, match="unknown BN implementation"):
        get_spec("resnet20").create(bn_impl="nope")  # refused when the model is built
