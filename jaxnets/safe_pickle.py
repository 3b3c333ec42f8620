"""The one restricted unpickler: checkpoints and data pickles come from strangers.

A pickle may name only the globals on the caller's allow-list; anything else is refused, naming
the global, before any of it runs. The helpers here are the small allow-listed stand-ins both
readers need (bytes spelt as ``_codecs.encode`` in protocol-2 pickles, NumPy scalars).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from jaxnets.errors import JaxnetsError


def short_repr(value: Any, limit: int = 60) -> str:
    """A repr of a value from the file, cut short: a crafted value may be huge."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def one_line(text: str, limit: int = 400) -> str:
    """The message on one line (the CLI prints errors as one ``error:`` line), cut short."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "…"


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``allowed`` globals; subclasses set the allow-list, the error and its wording."""

    allowed: ClassVar[Mapping[tuple[str, str], Any]] = {}
    error: ClassVar[type[JaxnetsError]] = JaxnetsError
    refusal_hint: ClassVar[str] = "the file may be malicious"

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise self.error(
                f"refusing to load: the pickle names the global '{one_line(module, 80)}.{one_line(name, 80)}', "
                f"which is not on jaxnets' allow-list ({self.refusal_hint})") from None


def latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode(str, "latin1")``: how protocol-2 pickles spell bytes; nothing else is allowed."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise JaxnetsError(f"refusing to load: _codecs.encode with encoding {short_repr(encoding)}")
    return text.encode("latin1")


def numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """``numpy.core.multiarray.scalar``: a numeric NumPy scalar from exactly its bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biufc":
        raise JaxnetsError(f"refusing to load: a NumPy scalar of dtype {short_repr(dtype)}")
    if data is None:
        return dtype.type()
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise JaxnetsError(f"a NumPy scalar of dtype {dtype.name} holds {short_repr(data)}")
    return np.frombuffer(data, dtype=dtype)[0]
