"""Model family (being written)."""

SPECS: list = []
