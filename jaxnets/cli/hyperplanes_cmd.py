"""`jaxnets projections` and `jaxnets reinit`: the hyperplane-arrangement tools
(specs/hyperplane-arrangements.md §2, §3). The work is done by plain functions in
jaxnets.methods.hyperplanes.runner; these commands only gather options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ClassesOpt,
    ConfigOpt,
    DryRunOpt,
    LimitOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    resolve_options,
)

ModelArg = Annotated[str, typer.Argument(help="Registered model name (see `jaxnets models`).")]
DataOptional = Annotated[str | None, typer.Option("--data", "-d", help="Data spec (digits | cifar10:DIR | …); default: the snapshot's own data set.")]
NumClassesOpt = Annotated[int | None, typer.Option(help="Classes of the head (default: snapshot metadata, else the data's, else the registry's).")]
RuleOpt = Annotated[str | None, typer.Option(help="Stage grouping: pool (the original: max-pools start stages) | stage (ResNets: layerN = stage N). Default per family.")]
LegacyOpt = Annotated[bool, typer.Option("--legacy-epoch-labels", help="The original's epoch labels (final .pt = E+1; reinit parses the full path).")]
PlotsOpt = Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")]


def projections(
    ctx: typer.Context,
    model: ModelArg,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Snapshot / checkpoint (jaxnets folder, .pt/.tar/.th, .npz). Without it: a random init with --seed.")] = None,
    pretrained: Annotated[Path | None, typer.Option("--pretrained", help="ImageNet-pretrained checkpoint (torchvision file): output pretrained_<arch>, epoch -1.")] = None,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="Initial weights (e.g. RUN/snapshots/<arch>_init_0): adds l2_dist and l_inf_dist per layer.")] = None,
    normalize: Annotated[bool, typer.Option("--normalize", help="Normalise by ||w||·√n (cosine with the all-ones vector); default raw sums.")] = False,
    with_linear: Annotated[bool, typer.Option("--with-linear", help="Also record linear layers.")] = False,
    data: DataOptional = None,
    num_classes: NumClassesOpt = None,
    rule: RuleOpt = None,
    legacy_epoch_labels: LegacyOpt = False,
    plots: PlotsOpt = True,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Projection statistics of each filter on the all-ones vector: per-layer mean and mass P(p ≤ 0),
    network aggregate, distance from init → RUN/<name>.json (the original schema), results.json, PNGs.

    Example: jaxnets projections lenet --weights runs/train/lenet/snapshots/lenet_final_30 --init-from runs/train/lenet/snapshots/lenet_init_0 --normalize
    """
    opts = resolve_options(ctx, dict(locals()), "projections")
    from jaxnets.methods.hyperplanes.runner import run_projections

    run_projections(opts)


def reinit(
    ctx: typer.Context,
    model: ModelArg,
    weights: Annotated[Path, typer.Option("--weights", "-w", help="The trained model (snapshot or checkpoint).")],
    inits_from: Annotated[Path | None, typer.Option("--inits-from", help="Text file with one snapshot path per line (missing ones skipped with a warning), or a snapshots folder.")] = None,
    rand: Annotated[bool, typer.Option("--rand", help="Add a 'rand' row: each layer from a fresh init (the arch's initialiser).")] = False,
    data: DataOptional = None,
    batch_size: BatchOpt = 128,
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Normalisation override (default: the training run's, else the model's).")] = None,
    num_classes: NumClassesOpt = None,
    include_bn: Annotated[bool, typer.Option("--include-bn", help="Extension: also swap the BatchNorm after each conv (params and running statistics).")] = False,
    include_linear: Annotated[bool, typer.Option("--include-linear", help="Extension: also re-initialise the linear layers (Zhang et al. reset whole layers).")] = False,
    rule: RuleOpt = None,
    legacy_epoch_labels: LegacyOpt = False,
    vmin: Annotated[float | None, typer.Option(help="Heatmap colour minimum (default automatic).")] = None,
    vmax: Annotated[float | None, typer.Option(help="Heatmap colour maximum (default automatic).")] = None,
    plots: PlotsOpt = True,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Layer re-initialisation robustness: swap each conv layer for an earlier snapshot's (or a
    fresh init's), evaluate top-1 → RUN/reinit_<name>.json (the original schema) and a heatmap PNG.

    Example: jaxnets reinit resnet20 --weights resnet20-12fca82f.th --inits-from inits.txt --rand --data cifar10:DIR
    """
    opts = resolve_options(ctx, dict(locals()), "reinit")
    from jaxnets.methods.hyperplanes.runner import run_reinit

    run_reinit(opts)


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.command("projections")(projections)
    app.command("reinit")(reinit)
