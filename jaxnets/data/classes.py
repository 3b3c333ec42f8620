"""``--classes``: a class subset given as text (``"0,3,7"``) or a list."""

from __future__ import annotations

from jaxnets.errors import JaxnetsError


def parse_classes(text: str | None) -> list[int] | None:
    if text in (None, ""):
        return None
    if isinstance(text, list):
        return [int(c) for c in text]
    try:
        return [int(c) for c in str(text).split(",") if c.strip() != ""]
    except ValueError:
        raise JaxnetsError(f"--classes must be comma-separated integers, got {text!r}") from None
