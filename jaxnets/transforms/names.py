"""Slash-joined names over variable trees: flatten, select by regex, build same-shaped trees.

A leaf's name is the path of dict keys joined with ``/``, relative to the tree passed in:
``flatten(variables)`` gives ``"params/layer1_0/conv1/kernel"``, ``flatten(params)`` gives
``"layer1_0/conv1/kernel"``. Patterns are regular expressions matched with :func:`re.search`
(anchor them with ``^``/``$`` for an exact match), so ``"conv"`` selects every conv leaf.

Mappings are walked in their own (insertion) order, which for freshly initialised Flax
variables is the order the modules were created — unlike ``jax.tree_util``, which sorts keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax

SEP = "/"
Patterns = str | Iterable[str] | None


def _key_str(key: Any) -> str:
    # jax key-path entries: DictKey(.key), GetAttrKey(.name), SequenceKey(.idx), FlattenedIndexKey.
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_name(path: Iterable[Any], sep: str = SEP) -> str:
    """A ``jax.tree_util`` key path (or a tuple of strings) as a slash-joined name."""
    return sep.join(p if isinstance(p, str) else _key_str(p) for p in path)


def _children(node: Any) -> list[tuple[str, Any]] | None:
    """One level of ``node``'s children as (name, child), or None for a leaf."""
    if isinstance(node, Mapping):
        return [(str(k), v) for k, v in node.items()]
    if node is None:
        return None
    # Any other pytree node (tuple, namedtuple, dataclass): one level through jax's key paths.
    flat, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if len(flat) == 1 and flat[0][0] == () and flat[0][1] is node:
        return None  # a leaf
    return [(path_name(p), v) for p, v in flat]


def iter_leaves(tree: Any, *, keep_none: bool = False, sep: str = SEP) -> Iterator[tuple[str, Any]]:
    """(name, leaf) pairs in the tree's own order; ``None`` entries only with ``keep_none``."""

    def walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        if node is None:
            if keep_none:
                yield prefix, None
            return
        children = _children(node)
        if children is None:
            yield prefix, node
            return
        for name, child in children:
            yield from walk(child, f"{prefix}{sep}{name}" if prefix else name)

    yield from walk(tree, "")


def flatten(tree: Any, *, keep_none: bool = False, sep: str = SEP) -> dict[str, Any]:
    """``{"params/layer1_0/conv1/kernel": leaf, ...}`` (insertion order kept)."""
    return dict(iter_leaves(tree, keep_none=keep_none, sep=sep))


def unflatten(flat: Mapping[str, Any], sep: str = SEP) -> dict[str, Any]:
    """The nested-dict inverse of :func:`flatten` (for trees made only of dicts)."""
    out: dict[str, Any] = {}
    for name, leaf in flat.items():
        *parents, last = name.split(sep)
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return out


def compile_patterns(patterns: Patterns) -> list[re.Pattern]:
    if patterns is None:
        return []
    if isinstance(patterns, str):
        patterns = [patterns]
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            from jaxnets.errors import JaxnetsError

            raise JaxnetsError(f"invalid layer pattern {p!r}: {exc}") from None
    return compiled


def matches(name: str, patterns: Patterns) -> bool:
    """True when any pattern is found in ``name`` (``re.search``)."""
    return any(p.search(name) for p in compile_patterns(patterns))


def select(tree: Any, patterns: Patterns, *, sep: str = SEP) -> list[str]:
    """Names of the leaves matching any of ``patterns``, in tree order."""
    compiled = compile_patterns(patterns)
    return [n for n, _ in iter_leaves(tree, sep=sep) if any(p.search(n) for p in compiled)]


def map_with_names(fn: Callable[..., Any], tree: Any, *rest: Any, sep: str = SEP) -> Any:
    """``tree_map`` where ``fn(name, leaf, *rest_leaves)`` also gets the leaf's name.

    ``None`` entries of ``tree`` are kept as ``None`` (they are empty subtrees to JAX).
    """
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf, *r: fn(path_name(path, sep), leaf, *r), tree, *rest)


def tree_from_predicate(
    tree: Any,
    predicate: Callable[[str, Any], bool],
    true_value: Any | Callable[[Any], Any] = True,
    false_value: Any | Callable[[Any], Any] = None,
    *,
    sep: str = SEP,
) -> Any:
    """A tree shaped like ``tree``: ``true_value`` where ``predicate(name, leaf)``, else
    ``false_value``. Either value may be a callable of the leaf (e.g. ``jnp.ones_like``)."""

    def pick(name: str, leaf: Any) -> Any:
        value = true_value if predicate(name, leaf) else false_value
        return value(leaf) if callable(value) else value

    return map_with_names(pick, tree, sep=sep)


def tree_from_patterns(
    tree: Any,
    patterns: Patterns,
    true_value: Any | Callable[[Any], Any] = True,
    false_value: Any | Callable[[Any], Any] = None,
) -> Any:
    """:func:`tree_from_predicate` with "the name matches one of ``patterns``"."""
    compiled = compile_patterns(patterns)
    return tree_from_predicate(tree, lambda n, _: any(p.search(n) for p in compiled),
                               true_value, false_value)


def get_subtree(tree: Mapping, name: str, sep: str = SEP) -> Any:
    """``tree["a"]["b"]`` for ``name="a/b"`` with a clear KeyError naming the missing part."""
    node: Any = tree
    done: list[str] = []
    for part in name.split(sep) if name else []:
        if not isinstance(node, Mapping) or part not in node:
            where = sep.join(done) or "<root>"
            have = sorted(node) if isinstance(node, Mapping) else type(node).__name__
            raise KeyError(f"no '{part}' under {where} (have: {have})")
        node = node[part]
        done.append(part)
    return node


def set_subtree(tree: Mapping, name: str, value: Any, sep: str = SEP) -> dict:
    """A new nested dict equal to ``tree`` with ``name`` replaced (path copied, rest shared)."""
    parts = name.split(sep)
    get_subtree(tree, sep.join(parts[:-1]), sep)  # clear error when a parent is missing
    out = dict(tree)
    if len(parts) == 1:
        if parts[0] not in out:
            raise KeyError(f"no '{parts[0]}' at the root (have: {sorted(out)})")
        out[parts[0]] = value
        return out
    out[parts[0]] = set_subtree(tree[parts[0]], sep.join(parts[1:]), value, sep)
    return out
