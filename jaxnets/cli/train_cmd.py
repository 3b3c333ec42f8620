"""`jaxnets train`: the hyperplane paper's train.py as a jaxnets command (specs/hyperplane-arrangements.md §4).

The options become :func:`jaxnets.train.command.run_train`. Fixed relative to the original (§7): resume continues after the last finished epoch; the final
snapshot is labelled with the number of finished epochs; stratified splits work; class
subsampling works for every data set and the class list is stored; kill-plateaus stops cleanly
(``converged: false``); top-5 only with more than 5 classes; Adam warns that it ignores weight
decay and momentum.
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
    ModelArg,
    NumProcessesOpt,
    OutOpt,
    PrecisionOpt,
    ProcessIdOpt,
    SeedOpt,
    resolve_options,
    run_options,
)


@run_options
def train(
    ctx: typer.Context,
    model: ModelArg,
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Number of epochs.")] = 20,
    batch_size: BatchOpt = 128,
    optimizer: Annotated[str, typer.Option(help="sgd | adam.")] = "sgd",
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.001,
    lr_step: Annotated[int, typer.Option(help="Step-LR period in epochs (SGD and Adam; 0 = constant).")] = 0,
    lr_decay: Annotated[float, typer.Option(help="Step-LR factor.")] = 0.0,
    weight_decay: Annotated[float, typer.Option(help="Coupled L2 on all parameters (SGD; ignored by Adam).")] = 1e-4,
    momentum: Annotated[float, typer.Option(help="Heavy-ball momentum (SGD).")] = 0.9,
    augmentation: Annotated[bool, typer.Option("--augmentation/--no-augmentation", help="CIFAR flip + pad-4 crop; ImageNet random-resized crop.")] = False,
    upscale: Annotated[int | None, typer.Option(help="Resize every image to N×N px (PIL bilinear) first, for models that need larger inputs (AlexNet on 32-px CIFAR); the original's --upscale is 224.")] = None,
    upscale_padding: Annotated[int | None, typer.Option(help="After --upscale, zero-pad P px on every side; the original's --upscale-padding is --upscale 112 --upscale-padding 56.")] = None,
    noise: Annotated[float, typer.Option(help="Label-noise ratio in (0,1]; -1 = pixel shuffle.")] = 0.0,
    noise_seed: Annotated[int | None, typer.Option(help="Seed of the corruption (label noise / pixel shuffle).")] = None,
    subsample_classes: Annotated[int, typer.Option(help="Keep N classes (relabelled 0..N-1); 0 = all.")] = 0,
    class_sample_seed: Annotated[int | None, typer.Option(help="Seed for choosing the classes (with --shuffle).")] = None,
    split: Annotated[float, typer.Option(help="Validation fraction of the training set, in (0,1); 0 = validate on test.")] = 0.0,
    stratified: Annotated[bool, typer.Option(help="Stratified validation split.")] = False,
    split_seed: Annotated[int | None, typer.Option(help="Seed of the split shuffle.")] = None,
    shuffle: Annotated[bool, typer.Option("--shuffle/--no-shuffle", help="Shuffle training batches every epoch (the original's default is off).")] = False,
    snapshot_every: Annotated[int, typer.Option(help="Snapshot every E epochs (0 = only the last).")] = 0,
    snapshot_all_until: Annotated[int, typer.Option(help="Also snapshot every epoch before K.")] = 0,
    kill_plateaus: Annotated[bool, typer.Option(help="Stop when two consecutive evaluations have identical top-1.")] = False,
    train_acc: Annotated[bool, typer.Option(help="Also evaluate on the training set at snapshot epochs.")] = False,
    pretrained: Annotated[Path | None, typer.Option("--pretrained", "--weights", "-w", help="Start from this checkpoint (PyTorch file, .npz or jaxnets folder).")] = None,
    evaluate: Annotated[bool, typer.Option("--evaluate", help="Evaluate on the test set and exit.")] = False,
    evaluate_train: Annotated[bool, typer.Option("--evaluate-train", help="Evaluate on the training set and exit.")] = False,
    unnormalize: Annotated[bool, typer.Option(help="No mean/std normalisation (pixels in [0,1]).")] = False,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Normalisation override (default: the model's).")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the data's).")] = None,
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    precision: PrecisionOpt = "fp32",
    resume: Annotated[str | None, typer.Option(help="'auto' (this run folder) or a run/checkpoint folder.")] = None,
    checkpoint_every: CheckpointEveryOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    devices: DevicesOpt = "1",
    coordinator: CoordinatorOpt = None,
    num_processes: NumProcessesOpt = None,
    process_id: ProcessIdOpt = None,
    **run_options: Any,
) -> None:
    """Train a model (snapshots, label noise, pixel shuffle, validation split, exact resume).

    Example: jaxnets train lenet --data digits --epochs 60 --optimizer adam --lr 0.003 --lr-step 40 --lr-decay 0.1 --shuffle
    """
    opts = resolve_options(ctx, dict(locals()), "train")
    from jaxnets.train.command import run_train  # jaxnets.train imports JAX: not at CLI start-up

    run_train(opts)
