"""`jaxnets validate`: accuracy of a model (top-1, top-5, per class) → RUN/results.json."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from jaxnets.cli.common import (
    IGNORED_FLAGS,
    BatchOpt,
    ClassesOpt,
    DataOpt,
    DevicesOpt,
    GpuOpt,
    LimitOpt,
    ModelArg,
    NormOpt,
    OutOpt,
    SeedOpt,
    SplitOpt,
    drop_ignored_flags,
    resolve_options,
    run_options,
)
from jaxnets.cli.decompose_cmd import EvalResizeOpt, IndicesOpt, WeightsOpt
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
    indices: IndicesOpt = None,
    eval_resize: EvalResizeOpt = "crop",
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 256,
    devices: DevicesOpt = "1",
    gpu: GpuOpt = None,
    lr: Annotated[float | None, typer.Option("--lr", hidden=True, help="Original flag (main.py validate); ignored.")] = None,
    num_epochs: Annotated[int | None, typer.Option("--num-epochs", hidden=True, help="Original flag (main.py validate); ignored.")] = None,
    **run_options: Any,
) -> None:
    """Evaluate a model on a data set and write RUN/results.json.

    Example: jaxnets validate resnet20 --weights resnet20-12fca82f.th --data cifar10:../shared/data/cifar10-exact-subset/cifar-10-batches-bin

    Decomposed head: add --indices resnet20_cifar-10_indices.json (the results then hold both);
    the original main.py's `validate resnet20 -i F -w W --gpu 0` works as it is (plus --data).
    ImageNet-size models on other-size images: --eval-resize crop (resize 256, centre 224, the
    standard protocol; default here) or squash (224×224, main.py's).
    """
    opts = resolve_options(ctx, dict(locals()), "validate")
    drop_ignored_flags(opts, {**IGNORED_FLAGS, "lr": "--lr is ignored by validate (nothing is trained)",
                              "num_epochs": "--num-epochs is ignored by validate (nothing is trained)"})
    run_validate(opts)
