"""`jaxnets seam …`: re-engineer a trained model into a module with learned weight masks (SeaM)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jaxnets.cli.common import (
    BatchOpt,
    CheckpointEveryOpt,
    DataOpt,
    DevicesOpt,
    LimitOpt,
    NormOpt,
    OutOpt,
    PrecisionOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    WeightsOpt,
    resolve_options,
    run_options,
)
from jaxnets.methods.seam.config import FinetuneConfig, ReengineerConfig

if TYPE_CHECKING:  # the library imports JAX; the CLI loads it only when a command runs
    from jaxnets.methods.seam.indirect import FinetuneResult
    from jaxnets.methods.seam.runner import ReengineerResult

DEFAULT = ReengineerConfig()
FT_DEFAULT = FinetuneConfig()

seam_app = typer.Typer(help="SeaM: re-engineer a model for a target problem with learned weight masks.",
                       no_args_is_help=True)

RunArg = Annotated[Path, typer.Argument(help="A finished `jaxnets seam reengineer` run folder (lr_head_mask_…).")]


@seam_app.command("reengineer")
@run_options
def reengineer(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name (resnet20, resnet20_b, vgg16_bn_cifar, resnet50, densenet121, mixer_b16, digits_cnn, …).")],
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    target: Annotated[str, typer.Option(help="Target problem: binary:T (T vs rest, balanced), binary:A,B (class pair), superclass:I.")] = DEFAULT.target,
    superclass_type: Annotated[str, typer.Option(help="predefined (CIFAR-100 coarse / ImageNet tables) | random (non-original: --n-classes drawn with --seed).")] = DEFAULT.superclass_type,
    n_classes: Annotated[int | None, typer.Option(help="Classes of a random superclass.")] = DEFAULT.n_classes,
    lr_head: Annotated[float, typer.Option(help="Adam learning rate of the head.")] = DEFAULT.lr_head,
    lr_mask: Annotated[float, typer.Option(help="Adam learning rate of the mask scores.")] = DEFAULT.lr_mask,
    alpha: Annotated[float, typer.Option(help="Weight α of the retention term (≥ 0).")] = DEFAULT.alpha,
    epochs: Annotated[int, typer.Option(help="Epochs (head-only at 0, 5, 10, …).")] = DEFAULT.epochs,
    early_stop: Annotated[int, typer.Option(help="Stop after this many below-threshold epochs since the last sparsity gain (-1 never).")] = DEFAULT.early_stop,
    limit: Annotated[int | None, typer.Option(help="Training images of the target problem (default: all).")] = DEFAULT.limit,
    test_limit: Annotated[int | None, typer.Option(help="Test images of the target problem (default: --limit).")] = DEFAULT.test_limit,
    augment: Annotated[bool, typer.Option(help="Random crop + flip on 32-px data (the original's).")] = DEFAULT.augment,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the original model's head (default: the registry's).")] = None,
    exclude: Annotated[str | None, typer.Option(help="Regex of parameter names never masked (e.g. '^fc/').")] = DEFAULT.exclude,
    plots: Annotated[bool, typer.Option(help="Write history.png and layer_retention.png.")] = DEFAULT.plots,
    out: OutOpt = None,
    seed: SeedOpt = DEFAULT.seed,
    batch_size: BatchOpt = DEFAULT.batch_size,
    precision: PrecisionOpt = DEFAULT.precision,
    checkpoint_every: CheckpointEveryOpt = DEFAULT.checkpoint_every,
    resume: Annotated[str | None, typer.Option("--resume", help="'auto' (the run folder's latest checkpoint, if any) or a run/checkpoints folder to continue from.")] = None,
    devices: DevicesOpt = "1",
    **run_options: Any,
) -> None:
    """Learn masks + a head for a target problem; write OUT/lr_head_mask_<lr_head>_<lr_mask>_alpha_<alpha>/.

    Checkpoints go to the run folder's checkpoints/ at every epoch end (and every --checkpoint-every
    steps); --resume auto continues a killed run exactly.

    Example: jaxnets seam reengineer resnet20 --weights resnet20-12fca82f.th --data imagefolder:cifar10-jpeg --target binary:3,5 --lr-mask 0.05 --epochs 20
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    result = reengineer_from_options(opts)
    print(result.describe())
    from jaxnets.ui import info

    info(f"wrote {result.run_dir}")


# Flags that are ReengineerConfig / FinetuneConfig fields (the rest say where the model and data
# come from, or how to run).
REENGINEER_FLAGS = tuple(f.name for f in dataclasses.fields(ReengineerConfig))
FINETUNE_FLAGS = tuple(f.name for f in dataclasses.fields(FinetuneConfig))


def _provenance(opts: dict, flags: tuple[str, ...]) -> dict:
    return {k: v for k, v in opts.items() if k not in flags}


def reengineer_from_options(opts: dict) -> ReengineerResult:
    """The flags → ReengineerConfig, model and data opened by the library, then SeaM's reengineer."""
    from jaxnets.api import load
    from jaxnets.methods.seam.loaders import open_split
    from jaxnets.methods.seam.runner import config_target, reengineer, run_folder
    from jaxnets.runtime import default_run_path, parse_devices
    from jaxnets.ui import warn

    config = ReengineerConfig(**{k: opts[k] for k in REENGINEER_FLAGS})
    devices = parse_devices(opts["devices"])
    partial = config.limit is not None  # a limited target problem reads few images: no decode cache
    train = open_split(opts["data"], "train", partial=partial)
    test = open_split(opts["data"], "test", partial=partial)
    config_target(config, train)  # a bad --target fails before the model loads
    model = load(opts["model"], opts["weights"], num_classes=opts["num_classes"], normalize=opts["normalize"],
                 data=test, seed=config.seed)
    if opts["weights"] is None:
        warn(f"no --weights given: re-engineering a randomly initialised {model.name}")
    run_dir = run_folder(default_run_path(opts["out"], "seam", model.name), config)
    return reengineer(model, train, config, run_dir, test_data=test, devices=devices,
                      provenance=_provenance(opts, REENGINEER_FLAGS), resume=opts["resume"])


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
@run_options
def finetune(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="ImageNet ResNet (resnet18, resnet50) or any registered model.")],
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    masks: Annotated[Path | None, typer.Option(help="Masks to start from (skips steps 1-2): a run folder or an original mask-dict .pth. Default: step 1 (fit a new output layer) and step 2 (re-engineer) first.")] = None,
    lr_s1_output: Annotated[float, typer.Option(help="Step-1 SGD learning rate of the new output layer.")] = FT_DEFAULT.lr_s1_output,
    lr_mask: Annotated[float, typer.Option(help="Step-2 Adam learning rate of the scores.")] = FT_DEFAULT.lr_mask,
    lr_s2_output: Annotated[float, typer.Option(help="Step-2 Adam learning rate of the output layer.")] = FT_DEFAULT.lr_s2_output,
    alpha: Annotated[float, typer.Option(help="Step-2 retention weight α (≥ 0).")] = FT_DEFAULT.alpha,
    prune_threshold: Annotated[float, typer.Option(help="Step 2 stops once the pruned fraction 1 - retention reaches this (1.0: never before all are pruned).")] = FT_DEFAULT.prune_threshold,
    epochs: Annotated[int, typer.Option(help="Epochs of each step (at most).")] = FT_DEFAULT.epochs,
    early_stop: Annotated[int, typer.Option(help="Each step stops after this many epochs without improvement (-1 never).")] = FT_DEFAULT.early_stop,
    lr: Annotated[float, typer.Option(help="Step-3 SGD learning rate of the backbone (the new output layer gets 10×).")] = FT_DEFAULT.lr,
    enforce_masks: Annotated[bool, typer.Option(help="Non-original: keep pruned weights at 0 during fine-tuning.")] = FT_DEFAULT.enforce_masks,
    pgd_eps: Annotated[float, typer.Option(help="PGD L∞ radius in normalised input space.")] = FT_DEFAULT.pgd_eps,
    pgd_steps: Annotated[int, typer.Option(help="PGD iterations.")] = FT_DEFAULT.pgd_steps,
    limit: LimitOpt = None,
    augment: Annotated[bool, typer.Option(help="Training augmentation as `seam reengineer`: random-resized crop + flip for 224-px models, crop + flip on 32-px data.")] = FT_DEFAULT.augment,
    normalize: NormOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = FT_DEFAULT.seed,
    batch_size: BatchOpt = FT_DEFAULT.batch_size,
    **run_options: Any,
) -> None:
    """Indirect reuse: fit a new output layer (1), re-engineer with a prune threshold (2), fine-tune (3), measure the defect inheritance rate (PGD).

    Example: jaxnets seam finetune resnet18 --weights resnet18-5c106cde.pth --data imagefolder:mit67 --lr-mask 0.05 --alpha 0.5 --prune-threshold 0.6
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    result = finetune_from_options(opts)
    print(result.describe())


def finetune_from_options(opts: dict) -> FinetuneResult:
    """The flags → FinetuneConfig, the public model and the data opened by the library, then SeaM's finetune."""
    from jaxnets.api import load
    from jaxnets.methods.seam.indirect import finetune
    from jaxnets.methods.seam.loaders import open_split
    from jaxnets.runtime import default_run_path

    config = FinetuneConfig(**{k: opts[k] for k in FINETUNE_FLAGS})
    limit = opts["limit"]
    train = open_split(opts["data"], "train", limit=limit, partial=bool(limit))
    test = open_split(opts["data"], "test", limit=limit, partial=bool(limit))
    model = load(opts["model"], opts["weights"], normalize=opts["normalize"], data=test, seed=config.seed)
    run_dir = default_run_path(opts["out"], "seam-finetune", model.name)
    return finetune(model, train, config, run_dir, test_data=test, masks=opts["masks"],
                    provenance=_provenance(opts, FINETUNE_FLAGS))


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.add_typer(seam_app, name="seam")
