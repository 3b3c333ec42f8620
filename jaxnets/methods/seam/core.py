"""SeaM's pieces as pure functions over pytrees (specs/seam.md §2.2–§2.6, §8.1–§8.4).

* **Scores** — a tree with the structure of ``params``: float32 ones on every ``kernel``/``bias``
  of a module that owns a ``kernel`` (Conv/Dense: stem, shortcuts, the original output layer),
  ``None`` elsewhere (BatchNorm/LayerNorm; the new head lives in its own tree).
* **Masked forward** — the unchanged model applied to ``params ⊙ ste(scores)``
  (``jaxnets.transforms.masks``). BN always uses its running statistics; dropout can be switched
  on separately (an interceptor), which is what re-engineering trains with (§2.6, pitfall 5).
* **Head** — ReLU → Dense(C → K), both leaves drawn from U(±1/√C) like PyTorch's ``Linear``.
* **Loss** — CE(head(masked logits)) + α·R(scores), with the STE applied *again* for R (pitfall 2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.transforms import masks, names

Scores = Any  # params-shaped tree of float32 arrays / None


def _is_none(x: Any) -> bool:
    return x is None


# --------------------------------------------------------------------------- scores


def init_scores(params: Mapping, exclude: names.Patterns = None, init: float = 1.0) -> Scores:
    """One score per masked weight/bias (§8.1), all ``init`` (1.0 keeps every weight).

    ``exclude``: regexes of leaf names never masked (the defect-inheritance ``fc``).
    """
    return masks.scores_like(params, masks.kernel_owner_predicate(params, exclude), init=init)


def num_entries(scores: Scores) -> int:
    """N: how many weights and biases are masked (a Python int, computed once)."""
    return masks.count_entries(scores)


def count_kept(scores: Scores) -> int:
    """Exact integer count of scores > 0 (host side; float32 means drift on 60 M, pitfall 26)."""
    return int(sum(int(np.count_nonzero(np.asarray(s) > 0))
                   for s in jax.tree_util.tree_leaves(scores)))


def retention_rate(scores: Scores) -> float:
    """WRR = kept / N from exact integer counts (§3.2)."""
    n = num_entries(scores)
    return count_kept(scores) / n if n else 0.0


def masked_layers(scores: Scores) -> list[str]:
    """The modules with a masked kernel (slash paths, call order of the params tree)."""
    return [n.rsplit("/", 1)[0] for n, _ in names.iter_leaves(scores) if n.endswith("/kernel")]


def per_layer_retention(scores: Scores) -> list[dict]:
    """Kept / total per masked module (weight and bias together)."""
    rows: dict[str, list[int]] = {}
    for name, s in names.iter_leaves(scores):
        module = name.rsplit("/", 1)[0]
        arr = np.asarray(s)
        kept, total = rows.setdefault(module, [0, 0])
        rows[module] = [kept + int(np.count_nonzero(arr > 0)), total + int(arr.size)]
    return [{"layer": k, "kept": v[0], "total": v[1], "retention": v[0] / v[1] if v[1] else 0.0}
            for k, v in rows.items()]


def unmasked(scores: Scores, module: str) -> Scores:
    """The same scores with the top-level module ``module`` unmasked (``None``): the output layer
    of indirect reuse, whose shape changes with the target's classes."""
    return names.map_with_names(lambda n, s: None if n.split("/", 1)[0] == module else s, scores)


def binary_masks(scores: Scores) -> Scores:
    """``1[s > 0]`` as bool arrays (host), ``None`` where unmasked."""
    return jax.tree_util.tree_map(lambda s: None if s is None else np.asarray(s) > 0, scores,
                                  is_leaf=_is_none)


def pruned_params(params: Mapping, scores: Scores) -> Any:
    """Extraction (§2.9): ``W ⊙ 1[s > 0]`` — exactly 0 where dropped, bitwise unchanged
    elsewhere (``where``, not a multiply, so -0.0 and NaN-free zeros are exact)."""
    return masks.apply_mask(params, binary_masks(scores))


# --------------------------------------------------------------------------- head


def _uniform(bound: float) -> Any:
    def init(key: jax.Array, shape: tuple, dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class ModuleHead(nn.Module):
    """``module_head = Sequential(ReLU, Linear(C, K))``; the Dense is named ``linear``
    (exported as ``module_head.1.*``)."""

    num_targets: int
    fan_in: int

    @nn.compact
    def __call__(self, logits: jax.Array) -> jax.Array:
        bound = 1.0 / float(np.sqrt(self.fan_in))
        return nn.Dense(self.num_targets, kernel_init=_uniform(bound), bias_init=_uniform(bound),
                        name="linear")(nn.relu(logits))


def init_head(num_classes: int, num_targets: int, seed: int = 0) -> tuple[ModuleHead, dict]:
    head = ModuleHead(num_targets, num_classes)
    params = head.init(jax.random.key(seed), jnp.zeros((1, num_classes), jnp.float32))["params"]
    return head, dict(params)


# --------------------------------------------------------------------------- forward


def _dropout_interceptor(next_fun: Any, args: tuple, kwargs: dict, context: Any) -> Any:
    """Active dropout inside a model applied with ``train=False`` (BN on running statistics).

    The models build ``nn.Dropout(rate, deterministic=not train)``; re-engineering needs BN in
    eval mode *and* dropout on (§2.6), which one ``train`` flag cannot say, so the dropout call
    is replaced here by inverted dropout drawing from the module's own rng stream.
    """
    mod = context.module
    if isinstance(mod, nn.Dropout) and context.method_name == "__call__":
        x = args[0] if args else kwargs["inputs"]
        if mod.rate <= 0.0:
            return x
        keep = 1.0 - mod.rate
        if mod.rate >= 1.0:
            return jnp.zeros_like(x)
        rng = mod.make_rng(mod.rng_collection)
        bern = jax.random.bernoulli(rng, keep, x.shape)
        return jnp.where(bern, x / keep, jnp.zeros((), x.dtype)).astype(x.dtype)
    return next_fun(*args, **kwargs)


def apply_backbone(module: Any, params: Mapping, batch_stats: Mapping | None, x: jax.Array, *,
                   dropout_rng: jax.Array | None = None) -> jax.Array:
    """The original model's C logits, BN frozen; dropout on iff ``dropout_rng`` is given."""
    variables = {"params": params}
    if batch_stats:
        variables["batch_stats"] = batch_stats
    if dropout_rng is None:
        return module.apply(variables, x, train=False)
    with nn.intercept_methods(_dropout_interceptor):
        return module.apply(variables, x, train=False, rngs={"dropout": dropout_rng})


def masked_logits(module: Any, params: Mapping, batch_stats: Mapping | None, scores: Scores,
                  x: jax.Array, *, dropout_rng: jax.Array | None = None) -> jax.Array:
    """Backbone logits with ``params ⊙ ste(scores)`` (differentiable in the scores)."""
    return apply_backbone(module, masks.masked_params(params, scores), batch_stats, x,
                          dropout_rng=dropout_rng)


def seam_loss(logits_k: jax.Array, labels: jax.Array, valid: jax.Array, scores: Scores,
              alpha: float, n_entries: int) -> tuple[jax.Array, dict]:
    """CE (mean over the valid rows) + α·R, R from a *separate* STE application (§2.5)."""
    import optax

    ce = optax.softmax_cross_entropy_with_integer_labels(logits_k.astype(jnp.float32), labels)
    m = valid.astype(jnp.float32)
    ce = jnp.sum(ce * m) / jnp.maximum(jnp.sum(m), 1.0)
    del n_entries  # masks.retention counts the entries itself (a static Python int)
    r = masks.retention(scores)
    return ce + alpha * r, {"ce": ce, "retention": r}
