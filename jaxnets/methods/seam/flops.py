"""Analytic FLOPs of original and re-engineered models (specs/seam.md §3.3, §8.6).

fvcore's rules (one fused multiply-add = one FLOP; input = one image; head attached):

* Conv and Dense: ``prod(output leading dims) · size(kernel)`` dense — for a conv that is
  ``H_out·W_out·kh·kw·Cin/groups·Cout``, for a Dense on ``(…, in)`` inputs ``prod(…)·in·out``
  (the Mixer's token/channel linears included) — and ``… · nnz(kernel ⊙ mask)`` sparse (exact
  pre-existing zeros dropped too). Biases are not counted.
* BatchNorm (eval) ``2·numel`` (``1·numel`` without scale), LayerNorm ``5·numel``, adaptive /
  global average pooling ``numel(input)`` (not the Mixer's token mean), the head ``C·K``
  (dense in both counts). ReLU, adds, max pools, GELU, concat: not counted.

Output shapes come from one abstract pass (``jax.eval_shape`` with captured intermediates); the
pooling functions of ``jaxnets.models.layers`` are wrapped during that trace to see their inputs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.transforms import names

_POOL_FUNCS = ("global_avg_pool", "adaptive_avg_pool")


@contextlib.contextmanager
def _recording_pools(sink: list[int]) -> Iterator[None]:
    """Wrap the average-pool helpers in every loaded model module to record input numels."""
    from jaxnets.models import layers

    originals = {n: getattr(layers, n) for n in _POOL_FUNCS}

    def wrap(fn: Any) -> Any:
        def recorded(x: Any, *args: Any, **kwargs: Any) -> Any:
            sink.append(int(np.prod(x.shape[1:])))  # batch 1
            return fn(x, *args, **kwargs)

        return recorded

    patched: list[tuple[Any, str, Any]] = []
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "jaxnets.models.layers" or mod_name.startswith("jaxnets.models.")):
            continue
        for n in _POOL_FUNCS:
            if getattr(mod, n, None) is originals[n]:
                patched.append((mod, n, originals[n]))
                setattr(mod, n, wrap(originals[n]))
    try:
        yield
    finally:
        for mod, n, fn in patched:
            setattr(mod, n, fn)


def layer_shapes(module: Any, variables: Mapping, input_shape: tuple[int, ...]) -> tuple[dict, list[int]]:
    """({module path: [output shapes, one per call]}, [pool input numels]) at batch 1."""
    pools: list[int] = []
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(np.shape(a), jnp.float32), dict(variables))
    with _recording_pools(pools):
        _, state = jax.eval_shape(
            lambda v, x: module.apply(v, x, train=False, capture_intermediates=True,
                                      mutable=["intermediates"]), abstract, x)
    shapes: dict[str, list[tuple[int, ...]]] = {}

    def walk(node: Mapping, prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            if key == "__call__":
                shapes["/".join(prefix)] = [tuple(v.shape) for v in value]
            elif isinstance(value, Mapping):
                walk(value, prefix + (key,))

    walk(state["intermediates"], ())
    return shapes, pools


def count_flops(module: Any, variables: Mapping, input_shape: tuple[int, ...], *,
                scores: Any = None, head_shape: tuple[int, int] | None = None) -> dict:
    """Dense and sparse FLOPs (§3.3) with a per-kind breakdown.

    ``variables`` may hold arrays or shape structs (shapes suffice for the dense count and for
    a sparse count without ``scores``). ``scores``: the mask tree (``s > 0`` keeps); ``None``
    keeps every weight. ``head_shape`` = (C, K) of the module head, if attached.
    """
    params = variables["params"]
    shapes, pools = layer_shapes(module, variables, input_shape)
    flat_params = names.flatten(params)
    flat_scores = names.flatten(scores) if scores is not None else {}
    bn_owners = {n.rsplit("/", 1)[0] for n in names.flatten(variables.get("batch_stats", {}))}
    owners: dict[str, set[str]] = {}
    for n in flat_params:
        parent, _, leaf = n.rpartition("/")
        owners.setdefault(parent, set()).add(leaf)
    dense = {"conv": 0, "linear": 0, "bn": 0, "ln": 0, "pool": 0, "head": 0}
    sparse = dict(dense)
    for path, leaves in owners.items():
        outs = shapes.get(path, [])
        if "kernel" in leaves:
            kernel = flat_params[f"{path}/kernel"]
            size = int(np.prod(np.shape(kernel)))
            nnz = size
            score = flat_scores.get(f"{path}/kernel")
            if score is not None or (scores is not None and not isinstance(kernel, jax.ShapeDtypeStruct)):
                w = np.asarray(kernel)
                keep = np.asarray(score) > 0 if score is not None else True
                nnz = int(np.count_nonzero(np.where(keep, w, 0)))
            kind = "conv" if len(np.shape(kernel)) == 4 else "linear"
            for shape in outs:
                lead = int(np.prod(shape[:-1]))
                dense[kind] += lead * size
                sparse[kind] += lead * nnz
        elif path in bn_owners:
            per = 2 if "scale" in leaves or "bias" in leaves else 1
            for shape in outs:
                dense["bn"] += per * int(np.prod(shape))
        elif "scale" in leaves:  # LayerNorm
            for shape in outs:
                dense["ln"] += 5 * int(np.prod(shape))
    dense["pool"] = int(sum(pools))
    if head_shape is not None:
        dense["head"] = int(head_shape[0]) * int(head_shape[1])
    for k in ("bn", "ln", "pool", "head"):
        sparse[k] = dense[k]
    total_dense, total_sparse = sum(dense.values()), sum(sparse.values())
    return {"flops_dense": total_dense, "flops_sparse": total_sparse,
            "ratio": total_sparse / total_dense if total_dense else 0.0,
            "dense_breakdown": dense, "sparse_breakdown": sparse}
