"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class JaxnetsError(Exception):
    """Bad input from the user (file, option, data). Never a bug in jaxnets."""


class ConfigError(JaxnetsError):
    """A bad value of one field of a method's Config. The message names the field as Python
    does (``trees must be at least 1``); the CLI shows it as the flag (``--trees …``)."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"{field} {problem}")

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


class CheckpointError(JaxnetsError):
    """A checkpoint that cannot be read, is unsafe, or does not fit the model."""


class DataError(JaxnetsError):
    """A data source or data spec that cannot be used."""


class UnknownModelError(JaxnetsError):
    """A model name missing from the registry."""
