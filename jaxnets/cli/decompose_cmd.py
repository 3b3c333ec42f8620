"""CLI of "Decomposing the Deep": ``indices``, ``finetune``, ``essential``, ``mutual-info``.

Thin typer commands: each resolves its options and calls a ``run_*`` function of
:mod:`jaxnets.methods.decompose.runners`. ``validate --indices`` lives in validate_cmd.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ClassesOpt,
    ConfigOpt,
    DataOpt,
    DevicesOpt,
    DryRunOpt,
    LimitOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    WeightsOpt,
    resolve_options,
)

ModelArg = Annotated[str, typer.Argument(help="Registered model name (resnet20, resnet50, digits_cnn, …).")]
NormOpt = Annotated[str | None, typer.Option("--normalize", help="Normalisation override; default: the method's CIFAR constants for the option-A CIFAR ResNets, else the model's.")]
IndicesOpt = Annotated[Path | None, typer.Option("--indices", "-i", help="Index JSON ({\"0\": [channel ids], …}).")]
CsgWeightsOpt = Annotated[Path | None, typer.Option("--csg-weights", help="The CSG checkpoint (best_save_CSG.pth); its gate tensor gives the CSG indices.")]
CsgOrderOpt = Annotated[str, typer.Option("--csg-order", help="ascending (the published files: least-used channels) | descending (the semantically right one).")]


def indices(
    ctx: typer.Context,
    model: ModelArg,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    k: Annotated[str, typer.Option("--k", help="Per-image top-k values, comma-separated (e.g. 5,10,20).")] = "5",
    k_keep: Annotated[str | None, typer.Option("--k-keep", help="Channels kept per class, one per --k (default: the same).")] = None,
    split: Annotated[str, typer.Option(help="Split to count on (the method uses the training split).")] = "train",
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the registry's).")] = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 256,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Extract the influential channels per class (per-image top-k frequency histograms).

    Example: jaxnets indices resnet20 --weights resnet20-12fca82f.th --data cifar10:DIR --k 5,10,20
    """
    opts = resolve_options(ctx, dict(locals()), "indices")
    from jaxnets.methods.decompose.runners import run_indices

    run_indices(opts)


def finetune(
    ctx: typer.Context,
    model: ModelArg,
    indices: IndicesOpt = None,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 10,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1e-4 CIFAR-size, 1e-6 ImageNet-size).")] = None,
    batch_size: BatchOpt = 64,
    eval_batch_size: Annotated[int, typer.Option(help="Validation batch size.")] = 128,
    eval_split: Annotated[str | None, typer.Option(help="Validation split (default: test, else val).")] = None,
    limit: LimitOpt = None,
    eval_limit: Annotated[int | None, typer.Option(help="Validate on the first N images only.")] = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the registry's).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | auto.")] = "fp32",
    resume: Annotated[str | None, typer.Option(help="'auto' (this run folder) or a run/checkpoint folder.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Also checkpoint every N steps.")] = None,
    initial_eval: Annotated[bool, typer.Option("--initial-eval/--no-initial-eval", help="Validate the decomposed model before training.")] = True,
    export: Annotated[bool, typer.Option("--export/--no-export", help="Write the fine-tuned model (jaxnets checkpoint + PyTorch state_dict).")] = True,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    devices: DevicesOpt = "1",
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the whole network through the decomposed head (Adam, flip+crop, BN in train mode).

    Example: jaxnets finetune resnet20 --indices resnet20_cifar-10_indices.json --weights resnet20-12fca82f.th --data imagefolder:cifar10-jpeg --epochs 1
    """
    opts = resolve_options(ctx, dict(locals()), "finetune")
    from jaxnets.methods.decompose.runners import run_finetune

    run_finetune(opts)


def essential(
    ctx: typer.Context,
    indices: IndicesOpt = None,
    weights: WeightsOpt = None,
    csg_weights: CsgWeightsOpt = None,
    csg_indices: Annotated[Path | None, typer.Option("--csg-indices", help="CSG index JSON instead of the gates.")] = None,
    csg_order: CsgOrderOpt = "ascending",
    noise_mode: Annotated[str, typer.Option("--noise-mode", help="replace (the original) | add.")] = "replace",
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")] = "resnet20",
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option(help="Split (the paper's experiment uses the test split; another one is honoured with a warning).")] = "test",
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 256,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Replace the influential (vs the other) pooled features by N(0,1) noise; per-class counts.

    Example: jaxnets essential --weights resnet20-12fca82f.th --indices resnet20_cifar-10_indices.json --csg-weights best_save_CSG.pth --data cifar10:DIR
    """
    opts = resolve_options(ctx, dict(locals()), "essential")
    from jaxnets.methods.decompose.runners import run_essential

    run_essential(opts)


def mutual_info(
    ctx: typer.Context,
    indices: Annotated[list[Path] | None, typer.Option("--indices", "-i", help="Index JSON file(s); repeat for several k.")] = None,
    csg_weights: CsgWeightsOpt = None,
    csg_order: CsgOrderOpt = "ascending",
    model: Annotated[str, typer.Option("--model", "-m", help="Model whose penultimate width D is used (if no CSG gates).")] = "resnet20",
    num_features: Annotated[int | None, typer.Option(help="D, the penultimate width (default: from the gates or the model).")] = None,
    k: Annotated[str | None, typer.Option("--k", help="k values of the CSG rows, comma-separated (needs --csg-weights; default: the --indices files' k, else 5,10,20). Ours rows come from the --indices files, one per k.")] = None,
    out: OutOpt = None,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Pairwise mutual information of class membership vectors (ours vs CSG, both gate orders).

    Example: jaxnets mutual-info -i resnet20_cifar-10_indices.json -i resnet20_cifar-10_10_10_indices.json --csg-weights best_save_CSG.pth
    """
    opts = resolve_options(ctx, dict(locals()), "mutual-info")
    from jaxnets.methods.decompose.runners import run_mutual_info

    run_mutual_info(opts)


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.command("indices")(indices)
    app.command("finetune")(finetune)
    app.command("essential")(essential)
    app.command("mutual-info")(mutual_info)
