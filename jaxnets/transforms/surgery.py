"""Layer surgery as pure functions: swap a layer's subtree from another tree, re-initialise it,
select layers by regex (specs/hyperplane-arrangements.md §8.3).

Nothing is mutated: each function returns a new tree sharing every untouched leaf, so
"restore the trained layer" is simply keeping the old tree. A *layer* is a module path
(slash-joined, relative to the tree given, e.g. ``"features_0"`` or ``"layer1_0/conv1"``)
whose subtree holds a ``kernel``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from jaxnets.errors import JaxnetsError
from jaxnets.transforms import names


def layer_paths(params: Mapping, leaf: str = "kernel") -> list[str]:
    """Every module path that owns a ``leaf`` (default: Conv/Dense layers), in tree order."""
    out = []
    for name, _ in names.iter_leaves(params):
        parent, _, last = name.rpartition("/")
        if last == leaf and parent not in out:
            out.append(parent)
    return out


def select_layers(params: Mapping, patterns: names.Patterns = None, *, leaf: str = "kernel",
                  exclude: names.Patterns = None,
                  kernel_ndim: int | Sequence[int] | None = None,
                  skip_1x1: bool = False) -> list[str]:
    """Layer paths matching any of ``patterns`` (all layers when None) and none of ``exclude``.

    ``kernel_ndim=4`` keeps convolutions (HWIO), ``2`` dense layers; ``skip_1x1`` drops 1×1
    convolutions (the hyperplane tool's rule). Order is the tree's own order; for a fixed,
    model-defined order prefer an explicit layer registry.
    """
    inc = names.compile_patterns(patterns)
    exc = names.compile_patterns(exclude)
    ndims = {kernel_ndim} if isinstance(kernel_ndim, int) else (
        set(kernel_ndim) if kernel_ndim is not None else None)
    out = []
    for path in layer_paths(params, leaf):
        if inc and not any(p.search(path) for p in inc):
            continue
        if any(p.search(path) for p in exc):
            continue
        kernel = names.get_subtree(params, f"{path}/{leaf}" if path else leaf)
        shape = getattr(kernel, "shape", ())
        if ndims is not None and len(shape) not in ndims:
            continue
        if skip_1x1 and len(shape) == 4 and tuple(shape[:2]) == (1, 1):
            continue
        out.append(path)
    if patterns is not None and not out:
        raise JaxnetsError(f"no layer matches {patterns!r}; layers are: "
                           f"{', '.join(layer_paths(params, leaf)) or '(none)'}")
    return out


def _check_same(path: str, key: str, ours: Any, theirs: Any) -> None:
    s1, s2 = getattr(ours, "shape", None), getattr(theirs, "shape", None)
    if s1 != s2:
        raise JaxnetsError(f"cannot swap {path}/{key}: shape {s1} vs donor {s2}")


def swap_layer(params: Mapping, path: str, donor: Mapping,
               keys: Iterable[str] | None = ("kernel", "bias")) -> dict:
    """``params`` with ``params[path][k] = donor[path][k]`` for each ``k`` in ``keys`` that the
    layer has (``keys=None``: the whole subtree). Shapes must agree."""
    try:
        ours = names.get_subtree(params, path)
        theirs = names.get_subtree(donor, path)
    except KeyError as exc:
        raise JaxnetsError(f"cannot swap layer '{path}': {exc.args[0]}") from None
    if keys is None:
        flat_theirs = names.flatten(theirs)
        for name, leaf in names.iter_leaves(ours):
            other = flat_theirs.get(name)
            if other is None:
                raise JaxnetsError(f"donor lacks {path}/{name}")
            _check_same(path, name, leaf, other)
        return names.set_subtree(params, path, theirs)
    if not isinstance(ours, Mapping):
        raise JaxnetsError(f"'{path}' is a leaf, not a layer")
    new = dict(ours)
    for k in keys:
        if k not in ours:
            continue  # e.g. a conv without bias
        if not isinstance(theirs, Mapping) or k not in theirs:
            raise JaxnetsError(f"donor lacks {path}/{k}")
        _check_same(path, k, ours[k], theirs[k])
        new[k] = theirs[k]
    return names.set_subtree(params, path, new)


def swap_layers(params: Mapping, paths: Iterable[str], donor: Mapping,
                keys: Iterable[str] | None = ("kernel", "bias")) -> dict:
    for path in paths:
        params = swap_layer(params, path, donor, keys)
    return params


def reinit_layer(variables: Mapping, path: str, fresh: Mapping,
                 keys: Iterable[str] | None = ("kernel", "bias"),
                 include_batch_stats: bool = False) -> dict:
    """Re-initialise one layer from ``fresh`` (e.g. ``init_variables(spec, module, seed)``).

    Takes and returns *variables* (``{"params", "batch_stats"}``) or a bare params tree; with
    ``include_batch_stats`` the layer's running statistics are swapped too (where it has any).
    """
    if "params" not in variables:
        return swap_layer(variables, path, fresh, keys)
    out = dict(variables)
    out["params"] = swap_layer(variables["params"], path, fresh["params"], keys)
    stats = variables.get("batch_stats")
    if include_batch_stats and stats:
        try:
            names.get_subtree(stats, path)
        except KeyError:
            return out
        out["batch_stats"] = swap_layer(stats, path, fresh["batch_stats"], None)
    return out
