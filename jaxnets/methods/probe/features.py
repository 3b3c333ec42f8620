"""Layer outputs for the probe: named intermediates under ``jax.jit``, flattened in NCHW order.

A layer is ``"input"`` (the normalised image), a sown name (``"features"``: the pooled
penultimate vector) or a submodule path (``"layer1_0/conv1"``: that module's raw output).
Every requested layer is captured in one jitted forward pass per batch; 4-D maps are transposed
NHWC → NCHW on the device before the reshape (P24), so columns are in PyTorch's flatten order.
Batches are fixed-size (the last one padded, rows dropped on the host by the loader mask) and
concatenated; the row count is asserted (P14).

Default layers of the ResNets — the spec's own CIFAR ResNet-18 (``resnet18_cifar``), the other
torchvision-style ResNets and the CIFAR ResNets (``resnet20`` … and the ``_b`` variants): the
spec's hooked tensors (§2.1, P23), stage by stage — input, the raw conv1/conv2 outputs (before
BN) of the first block of stages 1–3, and the global average pool. Other models: the input, the
outputs of the top-level submodules in call order (head excluded), and ``features``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError

INPUT = "input"
CIFAR_RESNET_LAYERS = (INPUT, "layer1_0/conv1", "layer1_0/conv2", "layer2_0/conv1", "layer2_0/conv2",
                       "layer3_0/conv1", "layer3_0/conv2", "features")
# Families whose blocks carry the spec's module names (layerN_0/conv1, conv2): "resnet" holds the
# spec's model itself (resnet18_cifar), "cifar_resnet" the option-A/B CIFAR ResNets.
SPEC_LAYER_FAMILIES = ("resnet", "cifar_resnet")


def call_order_names(spec: Any, module: Any) -> list[str]:
    """Submodule paths in the order their ``__call__`` runs (a recording capture filter)."""
    import jax
    import jax.numpy as jnp

    from jaxnets.models.api import abstract_variables

    seen: list[str] = []

    def record(mod: Any, method_name: str) -> bool:
        path = "/".join(mod.path)
        if method_name == "__call__" and path and path not in seen:
            seen.append(path)
        return False

    x = jax.ShapeDtypeStruct(spec.input_shape(1), jnp.float32)
    jax.eval_shape(lambda v, x: module.apply(v, x, train=False, capture_intermediates=record,
                                             mutable=["intermediates"]),
                   abstract_variables(spec, module), x)
    return seen


def available_layers(spec: Any, module: Any) -> list[str]:
    """Every valid layer name: ``input``, the submodule paths in call order, the sown names."""
    from jaxnets.models.api import intermediate_names

    ordered = call_order_names(spec, module)
    sown = [n for n in intermediate_names(spec, module) if n not in ordered]
    return [INPUT, *ordered, *sown]


def default_layers(spec: Any, module: Any) -> list[str]:
    if spec.family in SPEC_LAYER_FAMILIES:
        return list(CIFAR_RESNET_LAYERS)
    top = [n for n in call_order_names(spec, module) if "/" not in n and n != spec.head]
    return [INPUT, *top, "features"]


def resolve_layers(spec: Any, module: Any, layers: Sequence[str] | str | None) -> list[str]:
    """The requested layer list (comma-separated text or a list), validated; the default if None."""
    if layers is None or layers == "" or layers == []:
        return default_layers(spec, module)
    if isinstance(layers, str):
        layers = [s.strip() for s in layers.split(",") if s.strip()]
    valid = available_layers(spec, module)
    bad = [name for name in layers if name not in valid]
    if bad:
        raise JaxnetsError(f"unknown layer(s) {', '.join(bad)} for {spec.name}; valid names: "
                           f"{', '.join(valid)}")
    if len(set(layers)) != len(layers):
        raise JaxnetsError("--layers lists a layer twice")
    return list(layers)


def _flatten_nchw(a: Any) -> Any:
    import jax.numpy as jnp

    if a.ndim == 4:  # NHWC → NCHW, then row-major: channel-major, then row, then column
        a = jnp.transpose(a, (0, 3, 1, 2))
    return a.reshape(a.shape[0], -1).astype(jnp.float32)


def make_extract_fn(module: Any, names: Sequence[str], mean: Any, std: Any):
    """A jitted ``fn(variables, uint8 images) → (logits, {name: (B, D) float32})``."""
    import jax

    from jaxnets.data.transforms import normalize
    from jaxnets.models.api import apply_with_intermediates

    captured = tuple(n for n in names if n != INPUT)

    @jax.jit
    def fn(variables: Mapping, images: Any) -> tuple[Any, dict[str, Any]]:
        x = normalize(images, mean, std)
        logits, inter = apply_with_intermediates(module, variables, x, captured or ("features",))
        out = {n: _flatten_nchw(inter[n]) for n in captured}
        if INPUT in names:
            out[INPUT] = _flatten_nchw(x)
        return logits, out

    return fn


def layer_dims(spec: Any, module: Any, names: Sequence[str], mean: Any, std: Any) -> dict[str, int]:
    """Flattened width of every layer (shape inference only, nothing computed)."""
    import jax
    import jax.numpy as jnp

    from jaxnets.models.api import abstract_variables

    fn = make_extract_fn(module, names, mean, std)
    x = jax.ShapeDtypeStruct(spec.input_shape(1), jnp.uint8)
    _, out = jax.eval_shape(fn, abstract_variables(spec, module), x)
    return {n: int(out[n].shape[1]) for n in names}


def extract_layers(module: Any, variables: Mapping, loader: Any, names: Sequence[str], mean: Any,
                   std: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """({layer: (N, D) float32}, labels (N,), logits (N, K)) over one pass of ``loader``."""
    from jaxnets.ui import progress

    fn = make_extract_fn(module, tuple(names), mean, std)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    labels: list[np.ndarray] = []
    logits: list[np.ndarray] = []
    with progress("layer outputs", loader.steps_per_epoch) as advance:
        for batch in loader.epoch(0):
            out_logits, out = fn(variables, batch.images)
            m = batch.mask
            for n in names:
                chunks[n].append(np.asarray(out[n])[m])
            labels.append(batch.labels[m])
            logits.append(np.asarray(out_logits)[m])
            advance()
    expected = loader.num_examples
    feats = {n: np.concatenate(chunks[n]) for n in names}
    for n, a in feats.items():
        if a.shape[0] != expected:  # the original silently dropped failing batches (P14)
            raise RuntimeError(f"layer {n}: collected {a.shape[0]} rows, expected {expected}")
    return feats, np.concatenate(labels).astype(np.int64), np.concatenate(logits)
