"""Data: sources (CIFAR, image folders, digits, tfds), specs, host transforms, the loader."""

from jaxnets.data.loader import Batch, Loader
from jaxnets.data.sources import (
    CifarBinarySource,
    CifarPythonSource,
    DigitsSource,
    ImageFolderSource,
    Source,
    Subset,
    TfdsSource,
)
from jaxnets.data.spec import DataSpec, open_source, parse_data_spec

__all__ = [
    "Batch",
    "CifarBinarySource",
    "CifarPythonSource",
    "DataSpec",
    "DigitsSource",
    "ImageFolderSource",
    "Loader",
    "Source",
    "Subset",
    "TfdsSource",
    "open_source",
    "parse_data_spec",
]
