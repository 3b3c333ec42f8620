"""Masks over parameter trees: data, not modules.

A *mask* is a tree with the structure of the params whose leaves are bool or float arrays
(broadcastable to the parameter, so a scalar masks a whole leaf) or ``None`` where the
parameter is untouched; ``None`` may also stand for a whole untouched subtree. Masks enter
jitted steps as ordinary (traced) arguments, so a new mask value never recompiles.

SeaM (specs/seam.md §2.3, §8.2) learns real-valued *scores* of the same structure and
binarises them with :func:`ste_binarize`: forward ``score > 0``, backward the incoming
gradient clipped to [-1, 1] whatever the score.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.transforms import names

Mask = Any  # a params-shaped tree of bool/float arrays or None


def _is_none(x: Any) -> bool:
    return x is None


def map_mask(fn: Callable[[Any, Any], Any], mask: Mask, tree: Any) -> Any:
    """``fn(mask_leaf, subtree)`` where the mask has an entry; the subtree itself where it is
    ``None``. The mask's structure leads, so ``None`` can cover a whole subtree."""
    return jax.tree_util.tree_map(
        lambda m, t: t if m is None else fn(m, t), mask, tree, is_leaf=_is_none)


def _apply_one(m: Any, w: Any) -> Any:
    m = jnp.asarray(m)
    if m.dtype == jnp.bool_:
        # where, not multiply: exact zeros and no NaN*0 surprises.
        return jnp.where(m, w, jnp.zeros((), w.dtype))
    # A float mask multiplies, so gradients reach it (the STE path of SeaM).
    return w * m.astype(w.dtype)


def apply_mask(params: Any, mask: Mask | None) -> Any:
    """``params ⊙ mask`` leaf by leaf; ``None`` (the whole mask or an entry) leaves it as is."""
    if mask is None:
        return params
    return map_mask(_apply_one, mask, params)


@jax.custom_vjp
def ste_binarize(scores: jnp.ndarray) -> jnp.ndarray:
    """``(scores > 0)`` as the scores' dtype; the backward pass is ``clip(g, -1, 1)``.

    A score of exactly 0 drops the weight (strict comparison, as in SeaM).
    """
    return (scores > 0).astype(scores.dtype)


def _ste_fwd(scores: jnp.ndarray) -> tuple[jnp.ndarray, None]:
    return ste_binarize(scores), None


def _ste_bwd(_: None, g: jnp.ndarray) -> tuple[jnp.ndarray]:
    # The hard-tanh is on the *gradient*, independent of the score (seam.md §2.3).
    return (jnp.clip(g, -1.0, 1.0),)


ste_binarize.defvjp(_ste_fwd, _ste_bwd)


def binarize_scores(scores: Mask) -> Mask:
    """A float 0/1 mask from a score tree (``None`` entries stay ``None``)."""
    return jax.tree_util.tree_map(lambda s: None if s is None else ste_binarize(s), scores,
                                  is_leaf=_is_none)


def masked_params(params: Any, scores: Mask) -> Any:
    """``params ⊙ ste(scores)``: the SeaM forward parameters, differentiable in the scores."""
    return apply_mask(params, binarize_scores(scores))


def mask_from_patterns(params: Any, patterns: names.Patterns, value: bool = True,
                       dtype: Any = bool) -> Mask:
    """A mask that is ``value`` on every entry of the leaves whose name matches, ``None``
    elsewhere (names relative to ``params``)."""
    return names.tree_from_patterns(
        params, patterns, lambda w: np.full(np.shape(w), value, dtype=dtype), None)


def scores_like(params: Any, select: Callable[[str, Any], bool] | names.Patterns,
                init: float = 1.0, dtype: Any = jnp.float32) -> Mask:
    """A score tree: ``init`` (SeaM uses 1.0, keeping every weight) on selected leaves, ``None``
    elsewhere. ``select`` is a predicate ``(name, leaf) -> bool`` or regex patterns."""
    if not callable(select):
        compiled = names.compile_patterns(select)
        select_fn = lambda n, _: any(p.search(n) for p in compiled)
    else:
        select_fn = select
    return names.tree_from_predicate(
        params, select_fn, lambda w: jnp.full(jnp.shape(w), init, dtype), None)


def kernel_owner_predicate(params: Any, exclude: names.Patterns = None
                           ) -> Callable[[str, Any], bool]:
    """True for ``kernel`` and ``bias`` leaves of modules that own a ``kernel`` (Conv/Dense,
    never BatchNorm/LayerNorm), except names matching ``exclude``."""
    flat = names.flatten(params)
    owners = {n.rsplit("/", 1)[0] for n in flat if n.rsplit("/", 1)[-1] == "kernel"}
    compiled = names.compile_patterns(exclude)

    def pred(name: str, _: Any) -> bool:
        parent, _, leaf = name.rpartition("/")
        return (leaf in ("kernel", "bias") and parent in owners
                and not any(p.search(name) for p in compiled))

    return pred


def count_entries(mask: Mask) -> int:
    """Number of parameter entries a mask (or score tree) covers — SeaM's N."""
    return int(sum(np.size(m) for m in jax.tree_util.tree_leaves(mask)))


def count_kept(mask: Mask) -> jnp.ndarray:
    """Number of kept entries (``> 0``) of a mask or a score tree (a device scalar)."""
    leaves = jax.tree_util.tree_leaves(mask)
    if not leaves:
        return jnp.zeros((), jnp.int32)
    return sum(jnp.sum(jnp.asarray(m) > 0) for m in leaves)


def retention(scores: Mask) -> jnp.ndarray:
    """SeaM's weight-retention rate: mean of ``ste(scores)`` over all covered entries, with
    the STE applied afresh (seam.md §2.5: a separate application from the forward mask)."""
    leaves = jax.tree_util.tree_leaves(scores)
    total = count_entries(scores)
    if total == 0:
        return jnp.zeros((), jnp.float32)
    kept = sum(jnp.sum(ste_binarize(s)) for s in leaves)
    return kept / total
