"""The train state (a pytree) and freezing.

``TrainState`` holds everything a step changes — step counter, params, batch_stats, optimiser
state, PRNG key data and a free ``extras`` dict for method state (mask scores, a codebook) —
plus two static fields (``apply_fn``, ``tx``) that are not part of the pytree.

**Freezing.** A *trainable mask* is a params-shaped tree whose leaves say what may change:
``True``/``False`` (Python bools, or bool scalars: a whole leaf), bool arrays (elementwise,
e.g. WFN's free weights), or ``None`` (= trainable; may cover a whole subtree). Frozen entries
are bitwise unchanged by *any* optimiser: the gradient is zeroed before the optimiser (so
Adam's moments stay 0 there) and, because coupled weight decay or momentum would still move
them, the new parameter is selected with ``where(trainable, p + u, p)`` after it — not just
``p + 0``, which would even turn a ``-0.0`` into ``+0.0``.

For a different order (WFN clips the global norm *before* zeroing fixed gradients,
weight-fixing spec §8.2), put :func:`zero_frozen` inside your optax chain and build the
step with ``mask_gradients=False``; the trainable mask reaches it as the extra argument
``trainable`` of ``tx.update``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets.transforms import names

TrainableMask = Any  # params-shaped tree of bool / bool arrays / None


def _is_none(x: Any) -> bool:
    return x is None


def device_copy(tree: Any) -> Any:
    """The tree in new device buffers: a jax array keeps its placement and sharding, a host
    (numpy) leaf goes to the default device.

    Train steps donate their state: anything that must outlive a step — the caller's variables
    (a jaxnets.Model's, reused by the next method), a best-so-far snapshot — needs its own
    buffers (jax >= 0.12 deletes donated CPU arrays)."""
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, may_alias=False) if isinstance(x, jax.Array) else jnp.array(x),
        tree)


def host_copy(tree: Any) -> Any:
    """The tree as numpy arrays that share no memory with any device buffer."""
    return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), jax.device_get(tree))


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array  # raw key data (uint32), so it checkpoints like any array
    extras: dict
    apply_fn: Callable[..., Any] = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformationExtraArgs = flax.struct.field(pytree_node=False)

    @classmethod
    def create(cls, model: Any, variables: Mapping, tx: optax.GradientTransformation, *,
               seed: int = 0, rng: jax.Array | None = None,
               extras: Mapping | None = None) -> TrainState:
        """From a Flax module (or an ``apply`` function), its variables and an optax
        transformation. ``rng``: a typed key or raw key data; default ``key(seed)``."""
        apply_fn = model.apply if hasattr(model, "apply") else model
        params = device_copy(variables["params"])
        if rng is None:
            rng = jax.random.key(seed)
        data = jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) \
            else jnp.asarray(rng, jnp.uint32)
        tx = optax.with_extra_args_support(tx)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=device_copy(dict(variables.get("batch_stats", {}))),
            opt_state=tx.init(params),
            rng=data,
            extras=dict(extras or {}),
            apply_fn=apply_fn,
            tx=tx,
        )

    @property
    def key(self) -> jax.Array:
        """The base PRNG key (typed). Per-step keys: ``fold_in(state.key, state.step)``."""
        return jax.random.wrap_key_data(self.rng)

    @property
    def variables(self) -> dict:
        out = {"params": self.params}
        if self.batch_stats:
            out["batch_stats"] = self.batch_stats
        return out

    def apply_gradients(self, grads: Any, *, trainable: TrainableMask = None,
                        mask_gradients: bool = True, batch_stats: Any = None,
                        **tx_args: Any) -> TrainState:
        """One optimiser step; entries that ``trainable`` marks False stay bitwise unchanged."""
        if mask_gradients:
            grads = mask_frozen(grads, trainable)
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params,
                                            trainable=trainable, **tx_args)
        params = apply_updates_frozen(self.params, updates, trainable)
        return self.replace(
            step=self.step + 1, params=params, opt_state=opt_state,
            batch_stats=self.batch_stats if batch_stats is None else batch_stats)


# --------------------------------------------------------------------------- freezing


def _zero_where_frozen(m: Any, x: Any) -> Any:
    if x is None:
        return None
    if m is True:
        return x
    if m is False:
        return jax.tree_util.tree_map(jnp.zeros_like, x)
    return jax.tree_util.tree_map(
        lambda leaf: jnp.where(jnp.asarray(m), leaf, jnp.zeros((), leaf.dtype)), x)


def mask_frozen(tree: Any, trainable: TrainableMask) -> Any:
    """Zero the entries of ``tree`` (gradients or updates) that ``trainable`` freezes."""
    if trainable is None:
        return tree
    return jax.tree_util.tree_map(
        lambda m, x: x if m is None else _zero_where_frozen(m, x), trainable, tree,
        is_leaf=_is_none)


def apply_updates_frozen(params: Any, updates: Any, trainable: TrainableMask) -> Any:
    """``optax.apply_updates`` that keeps frozen entries bitwise (``where``, not ``+ 0``)."""
    if trainable is None:
        return optax.apply_updates(params, updates)

    def one(m: Any, p: Any, u: Any) -> Any:
        if m is None or m is True:
            return optax.apply_updates(p, u)
        if m is False:
            return p
        return jax.tree_util.tree_map(
            lambda pl, ul: jnp.where(jnp.asarray(m), (pl + ul).astype(pl.dtype), pl), p, u)

    return jax.tree_util.tree_map(one, trainable, params, updates, is_leaf=_is_none)


class ZeroFrozenState(NamedTuple):
    pass


def zero_frozen(arg: str = "trainable") -> optax.GradientTransformationExtraArgs:
    """An optax transformation zeroing frozen entries, the mask read from the extra argument
    ``arg`` of ``update`` (``TrainState.apply_gradients`` passes ``trainable=…``). Without
    the argument it is the identity. Place it anywhere in a chain, e.g. after a clip."""

    def init(params: Any) -> ZeroFrozenState:
        del params
        return ZeroFrozenState()

    def update(updates: Any, state: ZeroFrozenState, params: Any = None,
               **extra: Any) -> tuple[Any, ZeroFrozenState]:
        del params
        return mask_frozen(updates, extra.get(arg)), state

    return optax.GradientTransformationExtraArgs(init, update)


def trainable_from_patterns(params: Any, trainable: names.Patterns = None,
                            frozen: names.Patterns = None) -> TrainableMask:
    """Leaf-level labels from name patterns (names relative to ``params``): a leaf is
    trainable when it matches ``trainable`` (or ``trainable`` is None) and does not match
    ``frozen``. Leaves are Python bools, so a step can close over the tree for free."""
    inc = names.compile_patterns(trainable)
    exc = names.compile_patterns(frozen)

    def label(name: str, _: Any) -> bool:
        ok = trainable is None or any(p.search(name) for p in inc)
        return ok and not any(p.search(name) for p in exc)

    return names.map_with_names(label, params)


def trainable_from_mask(fixed: Any) -> TrainableMask:
    """Elementwise labels from a mask of *fixed* entries (True = frozen; ``None`` = free)."""
    return jax.tree_util.tree_map(
        lambda f: None if f is None else jnp.logical_not(jnp.asarray(f, bool)), fixed,
        is_leaf=_is_none)


def count_trainable(params: Any, trainable: TrainableMask) -> int:
    """How many parameter entries may change (host-side; for logs)."""
    import numpy as np

    if trainable is None:
        return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(params)))

    def one(m: Any, p: Any) -> int:
        n = sum(np.size(x) for x in jax.tree_util.tree_leaves(p))
        if m is None or m is True:
            return n
        if m is False:
            return 0
        return int(np.sum(np.broadcast_to(np.asarray(m), np.shape(p))))

    counts = jax.tree_util.tree_map(one, trainable, params, is_leaf=_is_none)
    return int(sum(jax.tree_util.tree_leaves(counts)))
