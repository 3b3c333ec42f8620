"""The training engine: train state, jitted steps, data-parallel mesh, checkpoints, logging."""

from jaxnets.train.checkpoint import Checkpointer, abstract_state, checkpoint_dir, find_resume
from jaxnets.train.logging import MetricsWriter, ProgressBar, library_versions, write_config
from jaxnets.train.loop import FitResult, NonFiniteLossError, fit
from jaxnets.train.parallel import (
    data_sharding,
    make_mesh,
    maybe_initialize_distributed,
    replicate,
    replicated,
    shard_batch,
)
from jaxnets.train.state import (
    TrainState,
    apply_updates_frozen,
    device_copy,
    host_copy,
    mask_frozen,
    trainable_from_mask,
    trainable_from_patterns,
    zero_frozen,
)
from jaxnets.train.steps import cross_entropy, make_eval_step, make_train_step, normalize_images

__all__ = [
    "Checkpointer",
    "FitResult",
    "MetricsWriter",
    "NonFiniteLossError",
    "ProgressBar",
    "TrainState",
    "abstract_state",
    "apply_updates_frozen",
    "checkpoint_dir",
    "cross_entropy",
    "data_sharding",
    "device_copy",
    "find_resume",
    "fit",
    "host_copy",
    "library_versions",
    "make_eval_step",
    "make_mesh",
    "make_train_step",
    "mask_frozen",
    "maybe_initialize_distributed",
    "normalize_images",
    "replicate",
    "replicated",
    "shard_batch",
    "trainable_from_mask",
    "trainable_from_patterns",
    "write_config",
    "zero_frozen",
]
