"""`jaxnets train`: the hyperplane paper's train.py as a jaxnets command (specs/hyperplane-arrangements.md §4).

A train.py command line runs when pasted after ``jaxnets train`` (plus ``--weights FILE`` with its
value-less ``--pretrained``, which downloads): ``--arch`` is MODEL, ``--dataset NAME --data-path
DIR`` is ``--data``, ``--upscale`` is ``--upscale 224``, ``--upscale-padding`` is ``--upscale 112
--upscale-padding 56``; ``--cuda``, ``--workers``, ``--models-path``, ``--tb-logdir``, ``--log``
and ``--override`` are accepted with one warning line each (the parsing of the value-less flags:
``hyperplanes_cmd.TrainCommand``, which registers this command).

The options become :func:`jaxnets.train.command.run_train`; their defaults are
:class:`jaxnets.methods.hyperplanes.config.TrainConfig`'s. Fixed relative to the original (§7): resume
continues after the last finished epoch (``--resume`` and ``--resume-from``); the final snapshot is
labelled with the number of finished epochs; stratified splits work; class subsampling works for
every data set and the class list is stored; kill-plateaus stops cleanly (``converged: false``);
top-5 only with more than 5 classes; Adam warns that it ignores weight decay and momentum.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jaxnets.cli.common import (
    BatchOpt,
    CheckpointEveryOpt,
    ClassesOpt,
    CoordinatorOpt,
    DataOpt,
    DevicesOpt,
    LimitOpt,
    NumProcessesOpt,
    OutOpt,
    PrecisionOpt,
    ProcessIdOpt,
    SeedOpt,
    drop_ignored_flags,
    resolve_options,
    run_options,
)
from jaxnets.cli.hyperplanes_cmd import (
    ORIGINAL_IGNORED,
    ArchOpt,
    BarePretrainedOpt,
    BareUpscalePaddingOpt,
    CudaOpt,
    DataPathOpt,
    DatasetOpt,
    LogOpt,
    ModelArg,
    WorkersOpt,
    given_only,
    original_data,
    original_pretrained,
    original_upscale,
    take_arch,
)
from jaxnets.methods.hyperplanes.config import TrainConfig

TRAIN_DEFAULT = TrainConfig()  # the one place for the defaults (jaxnets/methods/hyperplanes/config.py)


@run_options
def train(
    ctx: typer.Context,
    model: ModelArg = None,
    data: DataOpt = TRAIN_DEFAULT.data,
    epochs: Annotated[int, typer.Option(help="The END epoch: epochs --start-epoch..N-1 are trained (as the original).")] = TRAIN_DEFAULT.epochs,
    batch_size: BatchOpt = TRAIN_DEFAULT.batch_size,
    optimizer: Annotated[str, typer.Option(help="sgd | adam.")] = TRAIN_DEFAULT.optimizer,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = TRAIN_DEFAULT.lr,
    lr_step: Annotated[int, typer.Option(help="Step-LR period in epochs (SGD and Adam; 0 = constant).")] = TRAIN_DEFAULT.lr_step,
    lr_decay: Annotated[float, typer.Option(help="Step-LR factor.")] = TRAIN_DEFAULT.lr_decay,
    weight_decay: Annotated[float, typer.Option(help="Coupled L2 on all parameters (SGD; ignored by Adam).")] = TRAIN_DEFAULT.weight_decay,
    momentum: Annotated[float, typer.Option(help="Heavy-ball momentum (SGD).")] = TRAIN_DEFAULT.momentum,
    augmentation: Annotated[bool, typer.Option("--augmentation/--no-augmentation", help="CIFAR flip + pad-4 crop; ImageNet random-resized crop. With --noise -1 the pixels are shuffled after it.")] = TRAIN_DEFAULT.augmentation,
    upscale: Annotated[int | None, typer.Option(help="Resize every image to N×N px (PIL bilinear) first, for models that need larger inputs (AlexNet on 32-px CIFAR); the original's --upscale is 224.")] = TRAIN_DEFAULT.upscale,
    upscale_padding: Annotated[int | None, typer.Option(help="After --upscale, zero-pad P px on every side; the original's --upscale-padding is --upscale 112 --upscale-padding 56.")] = TRAIN_DEFAULT.upscale_padding,
    noise: Annotated[float, typer.Option(help="Label-noise ratio in (0,1]; -1 = pixel shuffle.")] = TRAIN_DEFAULT.noise,
    noise_seed: Annotated[int | None, typer.Option(help="Seed of the corruption (label noise / pixel shuffle).")] = TRAIN_DEFAULT.noise_seed,
    subsample_classes: Annotated[int, typer.Option(help="Keep N classes (relabelled 0..N-1); 0 = all.")] = TRAIN_DEFAULT.subsample_classes,
    class_sample_seed: Annotated[int | None, typer.Option(help="Seed for choosing the classes (with --shuffle).")] = TRAIN_DEFAULT.class_sample_seed,
    split: Annotated[float, typer.Option(help="Validation fraction of the training set, in (0,1); 0 = validate on test.")] = TRAIN_DEFAULT.split,
    stratified: Annotated[bool, typer.Option(help="Stratified validation split.")] = TRAIN_DEFAULT.stratified,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the split shuffle.")] = TRAIN_DEFAULT.split_seed,
    shuffle: Annotated[bool, typer.Option("--shuffle/--no-shuffle", help="Shuffle training batches every epoch (the original's default is off).")] = TRAIN_DEFAULT.shuffle,
    snapshot_every: Annotated[int, typer.Option(help="Snapshot every E epochs (0 = only the last).")] = TRAIN_DEFAULT.snapshot_every,
    snapshot_all_until: Annotated[int, typer.Option(help="Also snapshot every epoch before K.")] = TRAIN_DEFAULT.snapshot_all_until,
    kill_plateaus: Annotated[bool, typer.Option(help="Stop when two consecutive evaluations have identical top-1.")] = TRAIN_DEFAULT.kill_plateaus,
    train_acc: Annotated[bool, typer.Option(help="Also evaluate on the training set at snapshot epochs.")] = TRAIN_DEFAULT.train_acc,
    pretrained: Annotated[Path | None, typer.Option("--pretrained", "--weights", "-w", help="Start from this checkpoint (PyTorch file, .npz or jaxnets folder).")] = TRAIN_DEFAULT.pretrained,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Evaluate on the test set and exit.")] = TRAIN_DEFAULT.evaluate,
    evaluate_train: Annotated[bool, typer.Option("--evaluate-train", help="Evaluate on the training set and exit.")] = TRAIN_DEFAULT.evaluate_train,
    eval_regularization_loss: Annotated[bool, typer.Option("--eval-regularization-loss", help="Print --weight-decay × Σ‖W‖₂ (unsquared norms of every conv/linear kernel and norm scale: the original's 'weight' tensors) of the starting weights and exit.")] = TRAIN_DEFAULT.eval_regularization_loss,
    start_epoch: Annotated[int, typer.Option(help="Index of the first epoch (snapshot names, --snapshot-* schedule); the LR schedule still starts at the run's first epoch, as the original's.")] = TRAIN_DEFAULT.start_epoch,
    resume_from: Annotated[Path | None, typer.Option(help="Continue from an original train.py snapshot (<arch>_<e>.tar): its weights, the epoch after e, and the SGD momentum / Adam moments where they map; a plain state_dict file gives the weights only.")] = TRAIN_DEFAULT.resume_from,
    unnormalize: Annotated[bool, typer.Option(help="No mean/std normalisation (pixels in [0,1]).")] = TRAIN_DEFAULT.unnormalize,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Normalisation override (default: the model's).")] = TRAIN_DEFAULT.normalize,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the data's).")] = TRAIN_DEFAULT.num_classes,
    limit: LimitOpt = TRAIN_DEFAULT.limit,
    classes: ClassesOpt = TRAIN_DEFAULT.classes,
    precision: PrecisionOpt = TRAIN_DEFAULT.precision,
    resume: Annotated[str | None, typer.Option(help="'auto' (this run folder) or a run/checkpoint folder.")] = TRAIN_DEFAULT.resume,
    checkpoint_every: CheckpointEveryOpt = TRAIN_DEFAULT.checkpoint_every,
    out: OutOpt = TRAIN_DEFAULT.out,
    seed: SeedOpt = TRAIN_DEFAULT.seed,
    devices: DevicesOpt = TRAIN_DEFAULT.devices,
    coordinator: CoordinatorOpt = TRAIN_DEFAULT.coordinator,
    num_processes: NumProcessesOpt = TRAIN_DEFAULT.num_processes,
    process_id: ProcessIdOpt = TRAIN_DEFAULT.process_id,
    arch: ArchOpt = None,
    dataset: DatasetOpt = None,
    data_path: DataPathOpt = None,
    original_upscale_padding: BareUpscalePaddingOpt = None,
    original_pretrained: BarePretrainedOpt = None,
    cuda: CudaOpt = None,
    workers: WorkersOpt = None,
    models_path: Annotated[str | None, typer.Option("--models-path", hidden=True, help="Original flag; ignored (--out).")] = None,
    tb_logdir: Annotated[str | None, typer.Option("--tb-logdir", hidden=True, help="Original flag; ignored (--out).")] = None,
    log: LogOpt = None,
    override: Annotated[bool | None, typer.Option("--override", hidden=True, help="Original flag; ignored.")] = None,
    **run_options: Any,
) -> None:
    """Train a model (snapshots, label noise, pixel shuffle, validation split, exact resume).

    Example: jaxnets train lenet --data digits --epochs 60 --optimizer adam --lr 0.003 --lr-step 40 --lr-decay 0.1 --shuffle
    """
    opts = resolve_options(ctx, given_only(dict(locals()), TRAIN_ORIGINAL), "train")
    train_spellings(ctx, opts)
    from jaxnets.train.command import run_train  # jaxnets.train imports JAX: not at CLI start-up

    run_train(opts)


TRAIN_IGNORED = ("cuda", "workers", "models_path", "tb_logdir", "log", "override")
TRAIN_ORIGINAL = ("arch", "dataset", "data_path", "original_upscale_padding", "original_pretrained", *TRAIN_IGNORED)


def train_spellings(ctx: typer.Context, opts: dict) -> None:
    """train.py's flags as the jaxnets options (nothing of them is recorded in config.json)."""
    source = ctx.get_parameter_source("data")
    take_arch(opts)
    original_data(opts, data_given=(source is not None and source.name != "DEFAULT")
                  or opts["data"] != TRAIN_DEFAULT.data)
    original_upscale(opts)
    original_pretrained(opts, "pretrained")
    drop_ignored_flags(opts, {k: ORIGINAL_IGNORED[k] for k in TRAIN_IGNORED})
