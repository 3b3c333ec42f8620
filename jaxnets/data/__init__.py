"""Data: sources (CIFAR, image folders, SeaM's target sets, digits, tfds), specs, host transforms, the loader."""

from jaxnets.data.finegrained import TARGET_SETS, ListedImageSource, open_target_set
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
from jaxnets.data.spec import DataSpec, few_shot_indices, open_source, parse_data_spec

__all__ = [
    "Batch",
    "CifarBinarySource",
    "CifarPythonSource",
    "DataSpec",
    "DigitsSource",
    "ImageFolderSource",
    "ListedImageSource",
    "Loader",
    "Source",
    "Subset",
    "TARGET_SETS",
    "TfdsSource",
    "few_shot_indices",
    "open_source",
    "open_target_set",
    "parse_data_spec",
]
