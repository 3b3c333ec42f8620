"""Which leaves WFN quantises, and the canonical flat vector (spec §2.1, §8.1, P8).

The clustering vector concatenates the quantisable tensors in PyTorch module order, each
flattened row-major in PyTorch layout (conv O×I×kh×kw, Linear out×in), so ties break as in the
original. ``Layout`` converts between a params tree and that vector (``flatten``/``unflatten``)
and holds, per tensor, its Flax path, PyTorch name, PyTorch shape and the permutation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from jaxnets.converters.keymaps import flax_module_to_torch
from jaxnets.errors import JaxnetsError
from jaxnets.transforms import names


@dataclass(frozen=True)
class Entry:
    path: str  # slash name inside params, e.g. "layer1_0/conv1/kernel"
    torch_name: str  # e.g. "layer1.0.conv1.weight"
    kind: str  # "conv" | "dense" | "bn"
    flax_shape: tuple[int, ...]
    torch_shape: tuple[int, ...]
    offset: int
    size: int


def _torch_leaf(kind: str, leaf: str) -> str:
    return "bias" if leaf == "bias" else "weight"


def module_kinds(params: Mapping, batch_stats: Mapping | None) -> dict[str, str]:
    """Module path → "conv"/"dense" (has a kernel) or "bn" (scale + batch statistics).

    Other modules (LayerNorm, embeddings, …) are never quantised, as in the original."""
    stats = set()
    for name, _ in names.iter_leaves(batch_stats or {}):
        stats.add(name.rpartition("/")[0])
    kinds: dict[str, str] = {}
    for name, leaf in names.iter_leaves(params):
        module, _, key = name.rpartition("/")
        if key == "kernel":
            kinds[module] = "conv" if np.ndim(leaf) >= 3 else "dense"
        elif key == "scale" and module in stats:
            kinds.setdefault(module, "bn")
    return kinds


def creation_order(module: Any, spec: Any) -> list[str]:
    """Param names in the order the Flax modules create them (= PyTorch registration order for
    jaxnets models), read while tracing ``init`` (``jax.eval_shape`` would sort the keys)."""
    import jax.numpy as jnp

    order: list[str] = []

    def init() -> Any:
        v = module.init(jax.random.key(0), jnp.zeros(spec.input_shape(1), jnp.float32))
        order.extend(n for n, _ in names.iter_leaves(v["params"]))
        return v

    jax.eval_shape(init)
    return order


class Layout:
    """The quantisable tensors of one model and their place in the flat vector."""

    def __init__(self, params: Mapping, batch_stats: Mapping | None = None, *,
                 bn_inc: bool = False, order: list[str] | None = None,
                 flatten_chw: Mapping[str, tuple[int, int, int]] | None = None):
        flat = names.flatten(params)
        order = [n for n in (order or []) if n in flat] + [n for n in flat if n not in (order or [])]
        kinds = module_kinds(params, batch_stats)
        chw = {tuple(k.split(".")): v for k, v in (flatten_chw or {}).items()}
        entries: list[Entry] = []
        offset = 0
        for name in order:
            module, _, leaf = name.rpartition("/")
            kind = kinds.get(module)
            if kind is None or (kind == "bn" and not bn_inc) or leaf not in ("kernel", "bias", "scale"):
                continue
            shape = tuple(np.shape(flat[name]))
            torch_shape = shape
            if leaf == "kernel" and len(shape) == 4:
                torch_shape = (shape[3], shape[2], shape[0], shape[1])
            elif leaf == "kernel" and len(shape) == 2:
                torch_shape = (shape[1], shape[0])
            size = int(np.prod(shape, dtype=np.int64))
            tname = f"{flax_module_to_torch(tuple(module.split('/')))}.{_torch_leaf(kind, leaf)}"
            entries.append(Entry(name, tname, kind, shape, torch_shape, offset, size))
            offset += size
        if not entries:
            raise JaxnetsError("the model has no quantisable (conv / linear) parameters")
        self.entries = entries
        self.size = offset
        self.bn_inc = bn_inc
        self._chw = {e.path: chw[tuple(flax_module_to_torch(tuple(e.path.split("/")[:-1])).split("."))]
                     for e in entries if e.path.endswith("kernel") and len(e.flax_shape) == 2
                     and tuple(flax_module_to_torch(tuple(e.path.split("/")[:-1])).split(".")) in chw}

    @classmethod
    def for_model(cls, spec: Any, module: Any, variables: Mapping, *, bn_inc: bool = False
                  ) -> Layout:
        return cls(variables["params"], variables.get("batch_stats"), bn_inc=bn_inc,
                   order=creation_order(module, spec),
                   flatten_chw=getattr(spec.keymap, "flatten_chw", None))

    @property
    def paths(self) -> list[str]:
        return [e.path for e in self.entries]

    def _to_torch(self, e: Entry, x: np.ndarray) -> np.ndarray:
        if e.path.endswith("kernel") and x.ndim == 4:
            return x.transpose(3, 2, 0, 1)
        if e.path.endswith("kernel") and x.ndim == 2:
            if e.path in self._chw:  # rows in (C, H, W) order as PyTorch flattens
                c, h, w = self._chw[e.path]
                x = x.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
            return x.T
        return x

    def _from_torch(self, e: Entry, x: np.ndarray) -> np.ndarray:
        x = x.reshape(e.torch_shape)
        if e.path.endswith("kernel") and x.ndim == 4:
            return x.transpose(2, 3, 1, 0)
        if e.path.endswith("kernel") and x.ndim == 2:
            x = x.T
            if e.path in self._chw:
                c, h, w = self._chw[e.path]
                x = x.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
            return x
        return x

    def flatten(self, params: Mapping, dtype: Any = np.float32) -> np.ndarray:
        """The canonical flat vector of the quantisable entries (host NumPy)."""
        flat = names.flatten(params)
        parts = [np.ascontiguousarray(self._to_torch(e, np.asarray(jax.device_get(flat[e.path]))))
                 .reshape(-1) for e in self.entries]
        return np.concatenate(parts).astype(dtype, copy=False)

    def split(self, vec: np.ndarray) -> dict[str, np.ndarray]:
        """Flat vector → {params path: array in Flax layout}."""
        vec = np.asarray(vec)
        return {e.path: np.ascontiguousarray(self._from_torch(e, vec[e.offset:e.offset + e.size]))
                for e in self.entries}

    def unflatten(self, vec: np.ndarray, params: Mapping) -> dict:
        """``params`` with the quantisable leaves replaced from ``vec`` (others untouched)."""
        parts = self.split(vec)
        flat = names.flatten(params)
        out = {n: (parts[n].astype(np.asarray(flat[n]).dtype) if n in parts else flat[n])
               for n in flat}
        return names.unflatten(out)

    def tree(self, vec: np.ndarray, params: Mapping, fill: Any = None) -> dict:
        """A params-shaped tree: the quantisable leaves from ``vec``, ``fill`` elsewhere."""
        parts = self.split(vec)
        flat = names.flatten(params)
        return names.unflatten({n: parts.get(n, fill) for n in flat})

    def per_tensor(self, vec: np.ndarray) -> list[tuple[Entry, np.ndarray]]:
        vec = np.asarray(vec)
        return [(e, vec[e.offset:e.offset + e.size]) for e in self.entries]
