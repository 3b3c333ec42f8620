"""Data parallelism: one jitted step over a 1-D ``("data",)`` device mesh.

The batch is sharded along its first axis (``NamedSharding(mesh, P("data"))``), the train
state is replicated (``P()``); XLA inserts the gradient all-reduce, and batch-norm statistics
are computed over the *global* batch (synchronised BN) because the mean over the sharded
axis is a global reduction. This is what pmap-style training means today; the legacy
per-device APIs (see DESIGN.md) are not used.

Multi-host: call :func:`maybe_initialize_distributed` first on every host (same coordinator
address, ``num_processes``, each its own ``process_id``); ``make_mesh("auto")`` then spans all
hosts' devices, and each host feeds its own slice of the global batch through
:func:`shard_batch` (``jax.make_array_from_process_local_data``).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnets.errors import JaxnetsError

AXIS = "data"


def make_mesh(devices: int | str | None = "auto") -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (a count, ``"auto"``/None = all)."""
    available = jax.devices()
    if devices in (None, "auto"):
        chosen = available
    else:
        try:
            n = int(devices)
        except (TypeError, ValueError):
            raise JaxnetsError(f"--devices must be a positive integer or 'auto', got {devices!r}"
                               ) from None
        if n < 1:
            raise JaxnetsError(f"--devices must be at least 1, got {n}")
        if n > len(available):
            raise JaxnetsError(
                f"--devices {n} asked for, but only {len(available)} "
                f"{available[0].platform} device(s) are visible (on CPU, fake more with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count=N or jax_num_cpu_devices)")
        chosen = available[:n]
    return Mesh(np.asarray(chosen), (AXIS,))


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Place every array of ``tree`` on all devices of the mesh (a full copy each)."""
    return jax.device_put(tree, replicated(mesh))


def check_divisible(batch_size: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch_size % n:
        raise JaxnetsError(
            f"batch size {batch_size} is not divisible by the {n} devices of the mesh; "
            f"use a multiple of {n} (e.g. {max(n, batch_size // n * n)}) or --devices "
            f"that divides it")


def shard_batch(mesh: Mesh, *arrays: Any) -> tuple[Any, ...]:
    """Shard arrays along their first (batch) axis; raises JaxnetsError when the batch does
    not divide into the devices. Already-placed ``jax.Array``s with that sharding pass through.
    """
    sharding = data_sharding(mesh)
    out = []
    for a in arrays:
        if isinstance(a, jax.Array) and a.sharding.is_equivalent_to(sharding, a.ndim):
            out.append(a)
            continue
        if jax.process_count() > 1:
            # Every host runs the same seeded loader, so each sees the whole global batch and keeps
            # its own contiguous slice (the mesh orders devices by process).
            full = np.asarray(a)
            check_divisible(full.shape[0], mesh)
            k = full.shape[0] // jax.process_count()
            local = full[jax.process_index() * k:(jax.process_index() + 1) * k]
            out.append(jax.make_array_from_process_local_data(sharding, local))
        else:
            check_divisible(np.shape(a)[0], mesh)
            out.append(jax.device_put(a, sharding))
    return tuple(out)


def maybe_initialize_distributed(coordinator: str | None = None,
                                 num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
    """``jax.distributed.initialize`` for multi-host runs; a no-op without a coordinator.

    ``coordinator`` is ``"host:port"`` of process 0; every host runs the same command with its
    own ``process_id`` in ``[0, num_processes)``. On managed clusters (SLURM, TPU pods) the
    arguments may be left out and JAX discovers them. Must run before any other JAX call.
    Returns True when it initialised. Several processes on one machine (each with its own CPU
    device) are tested end to end: tests/train/test_multiprocess.py.
    """
    if coordinator is None and num_processes is None and process_id is None:
        return False
    if coordinator is not None and (num_processes is None or process_id is None):
        raise JaxnetsError("--coordinator needs --num-processes and --process-id as well")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise JaxnetsError(f"--process-id must lie in [0, {num_processes}), got {process_id}")
    # CPU devices of different processes reduce over gloo (TCP); without an implementation the
    # CPU client has no cross-process collectives. A choice made by the user (e.g. mpi) stays.
    if getattr(jax.config, "jax_cpu_collectives_implementation", None) is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
    if jax.default_backend() == "cpu":
        # Under jaxlib 0.12 an executable that process 0 loads from the persistent compilation
        # cache never meets its peers' freshly compiled one in the gloo all-reduce: the pair hangs
        # on the second run of the same command. CPU compiles take seconds, so multi-process CPU
        # runs compile afresh (tests/train/test_multiprocess.py checks nothing was cached).
        jax.config.update("jax_enable_compilation_cache", False)
    return True


def is_primary_process() -> bool:
    """True in process 0 (and in every single-process run): the one that writes run folders."""
    return jax.process_index() == 0


def describe(mesh: Mesh) -> str:
    devs = mesh.devices.reshape(-1)
    return f"{devs.size} × {devs[0].platform} ({devs[0].device_kind}), mesh axis '{AXIS}'"
