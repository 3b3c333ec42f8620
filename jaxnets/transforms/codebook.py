"""Codebooks (Weight Fixing Networks): a few shared values, and which weights are fixed to them.

``Codebook(values, assign, fixed, valid)`` is a registered pytree (specs/weight-fixing-networks.md
§8.1):

- ``values``: 1-D float32, the centres, padded to a fixed ``k_max`` with a *finite* dummy
  (``values[0]``) so a codebook that grows does not change shapes — jitted steps that take it
  as an argument never recompile;
- ``valid``: 1-D bool, which ``values`` are real centres (padding is False);
- ``assign``: a params-shaped tree of int32, the index into ``values`` or -1 for a free
  weight; ``None`` for leaves that are never quantised;
- ``fixed``: a params-shaped tree of bool (``assign >= 0``), ``None`` where not quantised.

A fixed weight's value is *implied*: ``values[assign]``. :func:`quantize` writes it into the
params; training keeps fixed entries frozen through :meth:`Codebook.trainable_mask` (the
update is masked after the optimiser, see ``jaxnets.train.state``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.transforms import names


def _is_none(x: Any) -> bool:
    return x is None


@flax.struct.dataclass
class Codebook:
    values: Any
    assign: Any
    fixed: Any
    valid: Any = None

    @classmethod
    def create(cls, values: Any, assign: Any, k_max: int | None = None) -> Codebook:
        """From the real centres and an assignment tree (int, -1 free, ``None`` untouched).

        ``values`` keep the given order (``assign`` indexes them); ``-0.0`` becomes ``+0.0``
        (weight-fixing spec P21); padding repeats ``values[0]`` up to ``k_max``.
        """
        v = np.asarray(values, np.float32).reshape(-1)
        v = np.where(v == 0, np.float32(0.0), v)  # -0.0 → +0.0
        k = v.size
        k_max = k if k_max is None else int(k_max)
        if k_max < max(k, 1):
            raise JaxnetsError(f"codebook has {k} values, more than k_max={k_max}")
        pad = np.full(k_max - k, v[0] if k else 0.0, np.float32)
        valid = np.concatenate([np.ones(k, bool), np.zeros(k_max - k, bool)])
        assign = jax.tree_util.tree_map(lambda a: None if a is None else np.asarray(a, np.int32),
                                        assign, is_leaf=_is_none)
        for name, a in names.iter_leaves(assign):
            if a.size and (a.max() >= k or a.min() < -1):
                raise JaxnetsError(f"codebook assignment of {name} outside [-1, {k - 1}]")
        fixed = jax.tree_util.tree_map(lambda a: None if a is None else a >= 0, assign,
                                       is_leaf=_is_none)
        return cls(values=np.concatenate([v, pad]), assign=assign, fixed=fixed, valid=valid)

    @classmethod
    def empty(cls, params: Any, select: Callable[[str, Any], bool] | names.Patterns,
              k_max: int = 1) -> Codebook:
        """Nothing fixed yet: every selected leaf assigned -1, others ``None``."""
        if not callable(select):
            compiled = names.compile_patterns(select)
            pred = lambda n, _: any(p.search(n) for p in compiled)
        else:
            pred = select
        assign = names.tree_from_predicate(
            params, pred, lambda w: np.full(np.shape(w), -1, np.int32), None)
        return cls.create(np.zeros(0, np.float32), assign, k_max=k_max)

    @property
    def k_max(self) -> int:
        return int(np.shape(self.values)[0])

    def fixed_values(self) -> Any:
        """``values[assign]`` where fixed (0 where free), ``None`` where not quantised."""
        return jax.tree_util.tree_map(
            lambda a, f: None if a is None else jnp.where(
                f, jnp.asarray(self.values)[jnp.maximum(a, 0)], 0.0),
            self.assign, self.fixed, is_leaf=_is_none)

    def trainable_mask(self) -> Any:
        """``~fixed`` (True = may change), ``None`` for leaves never quantised."""
        return jax.tree_util.tree_map(lambda f: None if f is None else jnp.logical_not(f),
                                      self.fixed, is_leaf=_is_none)

    def num_fixed(self) -> int:
        return int(sum(np.sum(np.asarray(f)) for f in jax.tree_util.tree_leaves(self.fixed)))

    def num_quantisable(self) -> int:
        return int(sum(np.size(f) for f in jax.tree_util.tree_leaves(self.fixed)))


def quantize(params: Any, codebook: Codebook) -> Any:
    """``params`` with every fixed entry replaced by its codebook value (free ones untouched).

    Jit-friendly: the codebook is data, so new values or assignments do not recompile.
    The gradient w.r.t. a fixed entry is 0 (it no longer depends on the parameter).
    """
    values = jnp.asarray(codebook.values)

    def one(a: Any, f: Any, w: Any) -> Any:
        return jnp.where(f, values[jnp.maximum(a, 0)].astype(w.dtype), w)

    return jax.tree_util.tree_map(
        lambda a, f, w: w if a is None else one(a, f, w),
        codebook.assign, codebook.fixed, params, is_leaf=_is_none)
