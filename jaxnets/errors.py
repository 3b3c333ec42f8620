"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class JaxnetsError(Exception):
    """Bad input from the user (file, option, data). Never a bug in jaxnets."""


class CheckpointError(JaxnetsError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the model."""


class DataError(JaxnetsError):
    """A data source or data spec that cannot be used."""


class UnknownModelError(JaxnetsError):
    """A model name missing from the registry."""
