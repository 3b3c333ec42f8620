"""The ordered layer registry both tools iterate (specs/hyperplane-arrangements.md §2.2, §8.1).

The original walks ``model.modules()`` and keeps two counters: a 2-D max-pool starts a new
*stage* (``stage_id += 1; block_id = 0``), every recorded layer takes the next *block* id of its
stage. Convs with a 1×1 kernel, BatchNorm and everything else are skipped; linears are recorded
only with ``--with-linear``.

Flax has no module list, so the order comes from the model itself: we trace one forward pass to a
jaxpr (abstractly: nothing is computed) and walk its equations in execution order. Every
``conv_general_dilated`` / ``dot_general`` whose kernel operand is a parameter leaf is a layer;
every ``reduce_window_max`` is a max-pool. For the sequential nets of the paper (VGG, AlexNet,
LeNet, MLP) execution order is definition order, so the ids equal the original's.

Grouping rules (``rule``):

- ``"pool"`` — the original rule, literally: max-pools separate stages. Default for every family
  except the residual ones (vgg, small, mixer).
- ``"stage"`` — residual networks (families ``cifar_resnet``, ``resnet``, ``densenet``). Taken
  literally, the pool rule would put every ResNet conv after the stem's max-pool into one stage
  (and CIFAR ResNets have no max-pool at all), so here a stage is a resolution stage of the
  network: the stem is stage 0, ``layerN`` (``denseblockN`` for DenseNet) is stage N, and
  linears (``--with-linear``) form one more stage after the last. Block ids still count recorded
  layers within a stage (not residual blocks). 1×1 convs (bottleneck reductions, projection
  shortcuts, DenseNet transitions) are skipped as in the original. resnet20: stage "0" = conv1,
  stages "1"–"3" = the 6 convs of layer1–3 (19 convs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jaxnets.errors import JaxnetsError

RESIDUAL_FAMILIES = ("cifar_resnet", "resnet", "densenet")
_STAGE_RE = re.compile(r"(?:^|/|_)(?:layer|denseblock)(\d+)(?:/|_|$)")


@dataclass(frozen=True)
class LayerInfo:
    """One recorded layer: its param path, kind (conv | linear), kernel shape (HWIO or (in,out)),
    string stage/block ids, and the BatchNorm module directly after it (for ``--include-bn``)."""

    path: str
    kind: str
    kernel_shape: tuple[int, ...]
    stage: str
    block: str
    bn: str | None = None

    @property
    def fan_in(self) -> int:
        n = 1
        for d in self.kernel_shape[:-1]:
            n *= d
        return n

    @property
    def units(self) -> int:
        return self.kernel_shape[-1]

    @property
    def is_1x1(self) -> bool:
        return self.kind == "conv" and tuple(self.kernel_shape[:2]) == (1, 1)


def default_rule(family: str) -> str:
    return "stage" if family in RESIDUAL_FAMILIES else "pool"


def _sub_jaxprs(eqn: Any) -> list[Any]:
    """Inner jaxprs of call-like equations (pjit, custom_jvp/vjp, remat), as open jaxprs."""
    out = []
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is None:
            continue
        out.append(getattr(sub, "jaxpr", sub))
    return out


def trace_events(module: Any, variables: Mapping, input_shape: tuple[int, ...]) -> list[tuple]:
    """Forward-pass events in execution order: ``("conv"|"linear", path)``, ``("pool",)``,
    ``("use", path)`` (any other first use of a parameter leaf, e.g. a BN scale)."""
    import jax
    import jax.numpy as jnp

    from jaxnets.transforms import names

    flat, treedef = jax.tree_util.tree_flatten_with_path(dict(variables))
    leaf_names = [names.path_name(p) for p, _ in flat]
    abstract = [jax.ShapeDtypeStruct(v.shape, v.dtype) for _, v in flat]
    x = jax.ShapeDtypeStruct(input_shape, jnp.float32)

    def fwd(leaves, x):
        return module.apply(jax.tree_util.tree_unflatten(treedef, leaves), x, train=False)

    closed = jax.make_jaxpr(fwd)(abstract, x)
    jaxpr = closed.jaxpr
    origin: dict[Any, str] = {}
    for var, name in zip(jaxpr.invars[: len(leaf_names)], leaf_names, strict=True):
        origin[var] = name
    events: list[tuple] = []
    seen: set[str] = set()
    passthrough = {"convert_element_type", "copy", "copy_p", "reduce_precision"}

    def src(var: Any, env: dict) -> str | None:
        return env.get(var) if not hasattr(var, "val") else None  # Literals have .val

    def walk(jx: Any, env: dict) -> None:
        for eqn in jx.eqns:
            prim = eqn.primitive.name
            ins = [src(v, env) for v in eqn.invars]
            if prim == "reduce_window_max":
                events.append(("pool",))
            elif prim in ("conv_general_dilated", "dot_general") and len(ins) > 1 and ins[1]:
                path, _, leaf = ins[1].rpartition("/")
                if leaf == "kernel" and ins[1] not in seen:
                    seen.add(ins[1])
                    events.append(("conv" if prim == "conv_general_dilated" else "linear", path))
            # Inner jaxprs first: a conv wrapped in a custom_vjp (layers.conv_general_dilated)
            # must be seen as a conv before its kernel counts as a plain "use".
            for sub in _sub_jaxprs(eqn):
                inner = {iv: ins[i] for i, iv in enumerate(sub.invars) if i < len(ins) and ins[i]}
                walk(sub, inner)
            for name in ins:
                if name and name not in seen:
                    seen.add(name)
                    events.append(("use", name))
            if prim in passthrough and ins and ins[0]:
                for v in eqn.outvars:
                    env[v] = ins[0]

    walk(jaxpr, origin)
    return events


def _has_stats(variables: Mapping, path: str) -> bool:
    """True for a BatchNorm (a scale with running statistics), not a LayerNorm."""
    from jaxnets.transforms import names

    try:
        names.get_subtree(variables.get("batch_stats", {}), path)
    except KeyError:
        return False
    return True


def _params_of(variables: Mapping) -> Mapping:
    return variables.get("params", variables)


def build_registry(module: Any, variables: Mapping, input_shape: tuple[int, ...], *,
                   family: str = "vgg", rule: str | None = None, with_linear: bool = False,
                   ) -> list[LayerInfo]:
    """The ordered layer registry of a model (see the module docstring for the rules).

    ``variables`` may be abstract (``abstract_variables``); only shapes are used.
    """
    from jaxnets.transforms import names

    rule = rule or default_rule(family)
    if rule not in ("pool", "stage"):
        raise JaxnetsError(f"grouping rule must be 'pool' or 'stage', got {rule!r}")
    full = variables if "params" in variables else {"params": variables}
    events = trace_events(module, full, input_shape)
    params = _params_of(full)
    layers: list[dict] = []
    stage, block = 0, 0
    max_stage = 0
    pending_linear: list[dict] = []
    last_conv: dict | None = None
    for ev in events:
        if ev[0] == "pool":
            if rule == "pool":
                stage, block = stage + 1, 0
            continue
        if ev[0] == "use":
            name = ev[1]
            parent, _, leaf = name.rpartition("/")
            # The first BN scale used after a conv (and before the next layer) is that conv's BN.
            if leaf == "scale" and parent.startswith("params/") and last_conv is not None \
                    and last_conv["bn"] is None and _has_stats(full, parent[len("params/"):]):
                last_conv["bn"] = parent[len("params/"):]
            continue
        kind, path = ev
        path = path[len("params/"):] if path.startswith("params/") else path
        shape = tuple(int(d) for d in names.get_subtree(params, f"{path}/kernel").shape)
        entry = {"path": path, "kind": kind, "kernel_shape": shape, "bn": None}
        last_conv = entry
        if kind == "conv" and len(shape) == 4 and shape[:2] == (1, 1):
            continue  # the original skips 1×1 convs
        if kind == "linear" and not with_linear:
            continue
        if rule == "stage":
            if kind == "linear":
                pending_linear.append(entry)
                continue
            m = _STAGE_RE.search(path)
            s = int(m.group(1)) if m else 0
            max_stage = max(max_stage, s)
            entry["stage"] = s
        else:
            entry["stage"], entry["block"] = stage, block
            block += 1
        layers.append(entry)
    if rule == "stage":
        counters: dict[int, int] = {}
        for e in layers:
            e["block"] = counters.get(e["stage"], 0)
            counters[e["stage"]] = e["block"] + 1
        for i, e in enumerate(pending_linear):
            e["stage"], e["block"] = max_stage + 1, i
            layers.append(e)
    return [LayerInfo(e["path"], e["kind"], e["kernel_shape"], str(e["stage"]), str(e["block"]),
                      e["bn"]) for e in layers]


def registry_for(spec: Any, module: Any, variables: Mapping | None = None, *,
                 rule: str | None = None, with_linear: bool = False) -> list[LayerInfo]:
    """:func:`build_registry` for a registry model (abstract variables when none given)."""
    from jaxnets.models.api import abstract_variables

    if variables is None:
        variables = abstract_variables(spec, module)
    return build_registry(module, variables, spec.input_shape(1), family=spec.family, rule=rule,
                          with_linear=with_linear)


def conv_layers(layers: list[LayerInfo]) -> list[LayerInfo]:
    return [layer for layer in layers if layer.kind == "conv"]
