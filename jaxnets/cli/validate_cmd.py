"""`jaxnets validate`: accuracy of a model (top-1, top-5, per class) → RUN/results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ClassesOpt,
    DataOpt,
    DevicesOpt,
    LimitOpt,
    ModelArg,
    NormOpt,
    OutOpt,
    SeedOpt,
    SplitOpt,
    WeightsOpt,
    resolve_options,
    run_options,
)
from jaxnets.validate import run_validate


@run_options
def validate(
    ctx: typer.Context,
    model: ModelArg,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the model's head (default: the registry's).")] = None,
    save_logits: Annotated[bool, typer.Option("--save-logits", help="Also write logits.npz (logits, labels, indices).")] = False,
    indices: Annotated[Path | None, typer.Option("--indices", "-i", help="Index JSON of \"Decomposing the Deep\" ({\"0\": [channels], …}): also evaluate the decomposed head, side by side with the full model.")] = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 256,
    devices: DevicesOpt = "1",
    **run_options: Any,
) -> None:
    """Evaluate a model on a data set and write RUN/results.json.

    Example: jaxnets validate resnet20 --weights resnet20-12fca82f.th --data cifar10:../shared/data/cifar10-exact-subset/cifar-10-batches-bin

    Decomposed head: add --indices resnet20_cifar-10_indices.json (the results then hold both).
    """
    opts = resolve_options(ctx, dict(locals()), "validate")
    run_validate(opts)
