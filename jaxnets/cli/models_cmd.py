"""`jaxnets models` (the registry) and `jaxnets info` (versions, devices, caches)."""

from __future__ import annotations

from typing import Annotated

import typer


def models(
    family: Annotated[str | None, typer.Option(help="Only this family.")] = None,
    counts: Annotated[bool, typer.Option("--counts/--no-counts", help="Compute parameter counts (traces each model).")] = True,
) -> None:
    """List the registered models with input size, classes, normalisation and parameter counts.

    Example: jaxnets models --family resnet
    """
    from rich.table import Table

    from jaxnets.models.api import abstract_variables, count_params
    from jaxnets.models.registry import all_specs
    from jaxnets.ui import console

    table = Table("name", "family", "input", "classes", "normalisation", "params", "description")
    for spec in all_specs():
        if family and spec.family != family:
            continue
        n = f"{count_params(abstract_variables(spec, spec.create())):,}" if counts else "-"
        size = f"{spec.input_size}×{spec.input_size}×{spec.in_channels}"
        table.add_row(spec.name, spec.family, size, str(spec.num_classes), spec.normalization, n,
                      spec.description)
    console().print(table)


def info() -> None:
    """Print versions, devices and cache locations.

    Example: jaxnets info
    """
    import jax

    from jaxnets.runtime import cache_dir, versions

    for key, value in versions().items():
        print(f"{key:18s} {value}")
    print(f"{'backend':18s} {jax.default_backend()}")
    print(f"{'devices':18s} {', '.join(str(d) for d in jax.devices())}")
    print(f"{'cache':18s} {cache_dir()}  (XLA compilation cache: {cache_dir() / 'xla'}; "
          f"decoded images: {cache_dir() / 'decoded'})")
