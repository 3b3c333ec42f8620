"""Pure transforms over variable trees: names, masks, codebooks, layer surgery."""

from jaxnets.transforms.codebook import Codebook, quantize
from jaxnets.transforms.masks import (
    apply_mask,
    binarize_scores,
    mask_from_patterns,
    masked_params,
    retention,
    scores_like,
    ste_binarize,
)
from jaxnets.transforms.names import flatten, select, tree_from_patterns, tree_from_predicate
from jaxnets.transforms.surgery import reinit_layer, select_layers, swap_layer

__all__ = [
    "Codebook",
    "apply_mask",
    "binarize_scores",
    "flatten",
    "mask_from_patterns",
    "masked_params",
    "quantize",
    "reinit_layer",
    "retention",
    "scores_like",
    "select",
    "select_layers",
    "ste_binarize",
    "swap_layer",
    "tree_from_patterns",
    "tree_from_predicate",
]
