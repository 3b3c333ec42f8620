"""`jaxnets seam …`: re-engineer a trained model into a module with learned weight masks (SeaM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ConfigOpt,
    DataOpt,
    DevicesOpt,
    DryRunOpt,
    LimitOpt,
    NormOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    WeightsOpt,
    resolve_options,
)

seam_app = typer.Typer(help="SeaM: re-engineer a model for a target problem with learned weight masks.",
                       no_args_is_help=True)

RunArg = Annotated[Path, typer.Argument(help="A finished `jaxnets seam reengineer` run folder (lr_head_mask_…).")]


@seam_app.command("reengineer")
def reengineer(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name (resnet20, resnet20_b, vgg16_bn_cifar, resnet50, densenet121, mixer_b16, digits_cnn, …).")],
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    target: Annotated[str, typer.Option(help="Target problem: binary:T (T vs rest, balanced), binary:A,B (class pair), superclass:I.")] = "binary:0",
    superclass_type: Annotated[str, typer.Option(help="predefined (CIFAR-100 coarse / ImageNet tables) | random (non-original: --n-classes drawn with --seed).")] = "predefined",
    n_classes: Annotated[int | None, typer.Option(help="Classes of a random superclass.")] = None,
    lr_head: Annotated[float, typer.Option(help="Adam learning rate of the head.")] = 0.1,
    lr_mask: Annotated[float, typer.Option(help="Adam learning rate of the mask scores.")] = 0.1,
    alpha: Annotated[float, typer.Option(help="Weight α of the retention term (≥ 0).")] = 1.0,
    epochs: Annotated[int, typer.Option(help="Epochs (head-only at 0, 5, 10, …).")] = 300,
    early_stop: Annotated[int, typer.Option(help="Stop after this many below-threshold epochs since the last sparsity gain (-1 never).")] = -1,
    limit: LimitOpt = None,
    test_limit: Annotated[int | None, typer.Option(help="Test images of the target problem (default: --limit).")] = None,
    augment: Annotated[bool, typer.Option(help="Random crop + flip on 32-px data (the original's).")] = True,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the original model's head (default: the registry's).")] = None,
    exclude: Annotated[str | None, typer.Option(help="Regex of parameter names never masked (e.g. '^fc/').")] = None,
    plots: Annotated[bool, typer.Option(help="Write history.png and layer_retention.png.")] = True,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    devices: DevicesOpt = "1",
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Learn masks + a head for a target problem; write OUT/lr_head_mask_<lr_head>_<lr_mask>_alpha_<alpha>/.

    Example: jaxnets seam reengineer resnet20 --weights resnet20-12fca82f.th --data imagefolder:cifar10-jpeg --target binary:3,5 --lr-mask 0.05 --epochs 20
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    from jaxnets.methods.seam.runner import run_reengineer

    run_reengineer(opts)


@seam_app.command("flops")
def flops(run: RunArg, verbose: VerboseOpt = 0, quiet: QuietOpt = False) -> None:
    """Dense and sparse FLOPs (fvcore's rules) of the original and the re-engineered model → RUN/flops.json.

    Example: jaxnets seam flops runs/seam/resnet20-cat-dog/lr_head_mask_0.1_0.05_alpha_1.0
    """
    from jaxnets.methods.seam.runner import run_flops
    from jaxnets.ui import set_verbosity

    set_verbosity(verbose, quiet)
    run_flops(run)


@seam_app.command("time")
def time_cmd(
    run: RunArg,
    batch: Annotated[int, typer.Option(help="Batch size of the timing (the original's 16).")] = 16,
    warmup: Annotated[int, typer.Option(help="Warm-up calls.")] = 3,
    repeats: Annotated[int, typer.Option(help="Timed calls (median reported).")] = 10,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Dense XLA latency of the original vs the pruned backbone (head excluded) → RUN/time.json.

    Example: jaxnets seam time runs/seam/resnet20-cat-dog/lr_head_mask_0.1_0.05_alpha_1.0 --batch 16
    """
    from jaxnets.methods.seam.runner import run_time
    from jaxnets.ui import set_verbosity

    set_verbosity(verbose, quiet)
    run_time(run, batch=batch, warmup=warmup, repeats=repeats)


@seam_app.command("finetune")
def finetune(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="ImageNet ResNet (resnet18, resnet50) or any registered model.")],
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    masks: Annotated[Path | None, typer.Option(help="Masks to start from (skips steps 1-2): a run folder or an original mask-dict .pth. Default: step 1 (fit a new output layer) and step 2 (re-engineer) first.")] = None,
    lr_s1_output: Annotated[float, typer.Option(help="Step-1 SGD learning rate of the new output layer.")] = 0.1,
    lr_mask: Annotated[float, typer.Option(help="Step-2 Adam learning rate of the scores.")] = 0.1,
    lr_s2_output: Annotated[float, typer.Option(help="Step-2 Adam learning rate of the output layer.")] = 0.001,
    alpha: Annotated[float, typer.Option(help="Step-2 retention weight α (≥ 0).")] = 1.0,
    prune_threshold: Annotated[float, typer.Option(help="Step 2 stops once the pruned fraction 1 - retention reaches this (1.0: never before all are pruned).")] = 1.0,
    epochs: Annotated[int, typer.Option(help="Epochs of each step (at most).")] = 300,
    early_stop: Annotated[int, typer.Option(help="Each step stops after this many epochs without improvement (-1 never).")] = 30,
    lr: Annotated[float, typer.Option(help="Step-3 SGD learning rate of the backbone (the new output layer gets 10×).")] = 0.005,
    enforce_masks: Annotated[bool, typer.Option(help="Non-original: keep pruned weights at 0 during fine-tuning.")] = False,
    pgd_eps: Annotated[float, typer.Option(help="PGD L∞ radius in normalised input space.")] = 0.1,
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = 40,
    limit: LimitOpt = None,
    augment: Annotated[bool, typer.Option(help="Training augmentation as `seam reengineer`: random-resized crop + flip for 224-px models, crop + flip on 32-px data.")] = True,
    normalize: NormOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Indirect reuse: fit a new output layer (1), re-engineer with a prune threshold (2), fine-tune (3), measure the defect inheritance rate (PGD).

    Example: jaxnets seam finetune resnet18 --weights resnet18-5c106cde.pth --data imagefolder:mit67 --lr-mask 0.05 --alpha 0.5 --prune-threshold 0.6
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    from jaxnets.methods.seam.finetune import run_finetune

    run_finetune(opts)


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.add_typer(seam_app, name="seam")
