"""The decomposed head (spec §3.3) as a mask over the final Dense kernel.

Flax stores the head kernel as (D, C) (features × classes). Class ``c`` keeps the entries
``kernel[I[c, j], c]``; everything else is masked to exactly zero. Applied with
:func:`jaxnets.transforms.masks.apply_mask` as a ``param_transform``, the *same* model code runs
decomposed (mask given) and full (mask ``None``), and the masked entries get zero gradient
during fine-tuning (``where``, not multiply), so Adam never moves them.

The gather form ``z[n, c] = Σ_j F[n, I[c, j]] V[c, j] + β[c]`` (:func:`decomposed_logits`) and
the compact (C, k) weight table V (:func:`final_weights`) are here for checks and export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.transforms import names
from jaxnets.transforms.masks import apply_mask


def head_mask(table: Any, num_features: int, num_classes: int) -> np.ndarray:
    """Bool (D, C): ``M[d, c]`` is True iff ``d`` is one of class ``c``'s channels."""
    t = np.asarray(table)
    if t.shape[0] != num_classes:
        raise JaxnetsError(f"index table has {t.shape[0]} classes, the head has {num_classes}")
    m = np.zeros((num_features, num_classes), dtype=bool)
    m[t, np.arange(num_classes)[:, None]] = True
    return m


def head_kernel(params: Mapping, head: str) -> Any:
    try:
        node = names.get_subtree(params, head)
    except KeyError as exc:
        raise JaxnetsError(f"the model has no head '{head}' ({exc.args[0]})") from None
    if not isinstance(node, Mapping) or "kernel" not in node or np.ndim(node["kernel"]) != 2:
        raise JaxnetsError(f"'{head}' is not a Dense layer with a 2-D kernel")
    return node["kernel"]


def head_shape(params: Mapping, head: str) -> tuple[int, int]:
    """(D, C) of the head kernel (works on abstract shapes too)."""
    shape = tuple(head_kernel(params, head).shape)
    return int(shape[0]), int(shape[1])


def mask_tree(params: Mapping, head: str, table: Any) -> dict:
    """A params-shaped mask: the (D, C) bool mask on ``<head>/kernel``, ``None`` elsewhere.

    Top-level entries other than the head's are single ``None`` leaves (they cover whole
    subtrees), so the mask is tiny whatever the backbone.
    """
    d, c = head_shape(params, head)
    parts = head.split("/")
    node: dict = {k: None for k in params}
    root = node
    sub: Mapping = params
    for i, part in enumerate(parts):
        sub = sub[part]
        if i == len(parts) - 1:
            node[part] = {k: None for k in sub}
            node[part]["kernel"] = jnp.asarray(head_mask(table, d, c))
        else:
            node[part] = {k: None for k in sub}
            node = node[part]
    return root


def apply_head_mask(params: Mapping, mask: Any) -> Any:
    """The ``param_transform`` of the decomposed model (``mask=None``: the full model)."""
    return apply_mask(params, mask)


def bake(params: Mapping, head: str, table: Any) -> Any:
    """Params whose head kernel is zero outside the kept entries: a plain dense model that
    computes the decomposed logits (for export)."""
    return apply_mask(params, mask_tree(params, head, table))


def final_weights(params: Mapping, head: str, table: Any) -> tuple[np.ndarray, np.ndarray]:
    """The compact head: V (C, k) with ``V[c, j] = W[c, I[c, j]] = kernel[I[c, j], c]``, and β."""
    kernel = np.asarray(head_kernel(params, head))
    t = np.asarray(table)
    v = np.take_along_axis(kernel.T, t, axis=1)
    bias_node = names.get_subtree(params, head)
    bias = np.asarray(bias_node["bias"]) if "bias" in bias_node else np.zeros(t.shape[0], v.dtype)
    return v, bias


def recompose(v: Any, table: Any, num_features: int) -> np.ndarray:
    """Scatter V (C, k) back into a (D, C) kernel, zero outside the kept entries."""
    v, t = np.asarray(v), np.asarray(table)
    w = np.zeros((t.shape[0], num_features), v.dtype)
    np.put_along_axis(w, t, v, axis=1)
    return w.T


def decomposed_logits(features: jax.Array, v: jax.Array, bias: jax.Array, table: jax.Array) -> jax.Array:
    """Gather form: ``F[:, I]`` (B, C, k) · V (C, k) summed over k, plus β."""
    gathered = jnp.take(features, jnp.asarray(table), axis=1)
    return jnp.einsum("bck,ck->bc", gathered, v) + bias
