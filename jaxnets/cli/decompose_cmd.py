"""CLI of "Decomposing the Deep": ``indices``, ``finetune``, ``essential``, ``mutual-info``.

Thin typer commands: the flags default to the Configs of :mod:`jaxnets.methods.decompose.config`;
each ``*_from_options`` builds its Config, opens model and data with :mod:`jaxnets.api` and calls
the library (:mod:`jaxnets.methods.decompose.runners`). ``validate --indices`` lives in validate_cmd.py.

The original ``main.py`` spellings work as aliases, so ``main.py finetune resnet20 -i F -w W
--gpu 0 --lr 0.0001 --num-epochs 1`` runs as ``jaxnets finetune resnet20 …`` (plus ``--data``):
``--inds-file``, ``--weights-file``, ``--num-epochs``, ``-b``; ``essential`` takes the model as
its argument too. Flags with no meaning here (``--gpu``; ``--lr``/``--num-epochs`` of
``essential``, which the original parses for every command) are accepted with a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jaxnets.cli.common import (
    IGNORED_FLAGS,
    BatchOpt,
    ClassesOpt,
    DataOpt,
    DevicesOpt,
    GpuOpt,
    LimitOpt,
    OutOpt,
    SeedOpt,
    drop_ignored_flags,
    resolve_options,
    run_options,
)
from jaxnets.methods.decompose.config import EssentialConfig, FinetuneConfig, IndicesConfig, MutualInfoConfig

if TYPE_CHECKING:  # the library imports JAX: only for the hints, the CLI imports it lazily
    from jaxnets.api import Data, Model
    from jaxnets.methods.decompose.runners import EssentialResult, FinetuneResult, IndicesResult, MutualInfoResult
    from jaxnets.rundir import RunDir

INDICES = IndicesConfig()
FINETUNE = FinetuneConfig()
ESSENTIAL = EssentialConfig()
MUTUAL_INFO = MutualInfoConfig()

ModelArg = Annotated[str, typer.Argument(help="Registered model name (resnet20, resnet50, digits_cnn, …).")]
NormOpt = Annotated[str | None, typer.Option("--normalize", help="Normalisation override; default: the method's CIFAR constants for the option-A CIFAR ResNets, else the model's.")]
IndicesOpt = Annotated[Path | None, typer.Option("--indices", "--inds-file", "-i", help="Index JSON: a list of channel ids per class key \"0\", \"1\", ….")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", "--weights-file", "-w", help="Checkpoint: PyTorch .th/.pth/.pt/.tar, .npz, or a jaxnets checkpoint folder.")]
EvalResizeOpt = Annotated[str, typer.Option("--eval-resize", help="ImageNet-size models on other-size images: squash (resize to 224×224, the original's) | crop (resize 256, centre crop 224).")]
CsgWeightsOpt = Annotated[Path | None, typer.Option("--csg-weights", help="The CSG checkpoint (best_save_CSG.pth); its gate tensor gives the CSG indices.")]
CsgOrderOpt = Annotated[str, typer.Option("--csg-order", help="ascending (the published files: least-used channels) | descending (the semantically right one).")]


@run_options
def indices(
    ctx: typer.Context,
    model: ModelArg,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    k: Annotated[str, typer.Option("--k", help="Per-image top-k values, comma-separated (e.g. 5,10,20).")] = ",".join(map(str, INDICES.k)),
    k_keep: Annotated[str | None, typer.Option("--k-keep", help="Channels kept per class, one per --k (default: the same).")] = None,
    split: Annotated[str, typer.Option(help="Split to count on (the method uses the training split).")] = "train",
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the registry's).")] = None,
    eval_resize: EvalResizeOpt = INDICES.eval_resize,
    out: OutOpt = None,
    seed: SeedOpt = INDICES.seed,
    batch_size: BatchOpt = INDICES.batch_size,
    **run_options: Any,
) -> None:
    """Extract the influential channels per class (per-image top-k frequency histograms).

    Example: jaxnets indices resnet20 --weights resnet20-12fca82f.th --data cifar10:DIR --k 5,10,20
    """
    opts = resolve_options(ctx, dict(locals()), "indices")
    result = indices_from_options(opts)
    for k, path in result.files.items():
        print(f"k={k}: {path} (mean top-{k} mass {result.report['k'][str(k)]['mean_mass']:.3f})")


@run_options
def finetune(
    ctx: typer.Context,
    model: ModelArg,
    indices: IndicesOpt = None,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option("--epochs", "--num-epochs", help="Epochs.")] = FINETUNE.epochs,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (default 1e-4 CIFAR-size, 1e-6 ImageNet-size).")] = FINETUNE.lr,
    batch_size: BatchOpt = FINETUNE.batch_size,
    eval_batch_size: Annotated[int, typer.Option(help="Validation batch size.")] = FINETUNE.eval_batch_size,
    eval_split: Annotated[str | None, typer.Option(help="Validation split (default: test, else val).")] = None,
    limit: LimitOpt = None,
    eval_limit: Annotated[int | None, typer.Option(help="Validate on the first N images only.")] = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the registry's).")] = None,
    precision: Annotated[str, typer.Option(help="fp32 | bf16 | auto.")] = FINETUNE.precision,
    resume: Annotated[str | None, typer.Option(help="'auto' (this run folder) or a run/checkpoint folder.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Also checkpoint every N steps.")] = FINETUNE.checkpoint_every,
    initial_eval: Annotated[bool, typer.Option("--initial-eval/--no-initial-eval", help="Validate the decomposed model before training.")] = FINETUNE.initial_eval,
    export: Annotated[bool, typer.Option("--export/--no-export", help="Write the fine-tuned model (jaxnets checkpoint + PyTorch state_dict).")] = FINETUNE.export,
    eval_resize: EvalResizeOpt = FINETUNE.eval_resize,
    out: OutOpt = None,
    seed: SeedOpt = FINETUNE.seed,
    devices: DevicesOpt = "1",
    gpu: GpuOpt = None,
    **run_options: Any,
) -> None:
    """Fine-tune the whole network through the decomposed head (Adam, flip+crop, BN in train mode).

    Example: jaxnets finetune resnet20 --indices resnet20_cifar-10_indices.json --weights resnet20-12fca82f.th --data imagefolder:cifar10-jpeg --epochs 1
    """
    opts = resolve_options(ctx, dict(locals()), "finetune")
    drop_ignored_flags(opts, IGNORED_FLAGS)
    result = finetune_from_options(opts)
    r = result.report
    before = f"{100 * result.start_top1:.2f} % → " if result.start_top1 is not None else ""
    print(f"{r['model']} decomposed (k={r['k']}): {r['eval_split']} top-1 {before}"
          f"{100 * result.final_top1:.2f} % after {r['epochs_completed']} epoch(s); run folder {result.run_dir}")


@run_options
def essential(
    ctx: typer.Context,
    model_arg: Annotated[str | None, typer.Argument(metavar="MODEL", help="Registered model name (main.py's positional MODEL); same as --model.")] = None,
    indices: IndicesOpt = None,
    weights: WeightsOpt = None,
    csg_weights: CsgWeightsOpt = None,
    csg_indices: Annotated[Path | None, typer.Option("--csg-indices", help="CSG index JSON instead of the gates.")] = None,
    csg_order: CsgOrderOpt = ESSENTIAL.csg_order,
    noise_mode: Annotated[str, typer.Option("--noise-mode", help="replace (the original) | add.")] = ESSENTIAL.noise_mode,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name.")] = "resnet20",
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option(help="Split (the paper's experiment uses the test split; another one is honoured with a warning).")] = "test",
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    eval_resize: EvalResizeOpt = ESSENTIAL.eval_resize,
    out: OutOpt = None,
    seed: SeedOpt = ESSENTIAL.seed,
    batch_size: BatchOpt = ESSENTIAL.batch_size,
    gpu: GpuOpt = None,
    lr: Annotated[float | None, typer.Option("--lr", hidden=True, help="Original flag; ignored by essential.")] = None,
    num_epochs: Annotated[int | None, typer.Option("--num-epochs", hidden=True, help="Original flag; ignored by essential.")] = None,
    **run_options: Any,
) -> None:
    """Replace the influential (vs the other) pooled features by N(0,1) noise; per-class counts.

    Example: jaxnets essential --weights resnet20-12fca82f.th --indices resnet20_cifar-10_indices.json --csg-weights best_save_CSG.pth --data cifar10:DIR
    """
    opts = resolve_options(ctx, dict(locals()), "essential")
    _model_argument(ctx, opts)
    drop_ignored_flags(opts, {**IGNORED_FLAGS, **ESSENTIAL_IGNORED_FLAGS})
    result = essential_from_options(opts)
    for run, t in result.totals.items():
        print(f"{run}: clean {t['clean']}/{t['total']}, influential noised {t['noise_at_inf']}/"
              f"{t['total']}, others noised {t['noise_at_noninf']}/{t['total']}")


@run_options
def mutual_info(
    ctx: typer.Context,
    indices: Annotated[list[Path] | None, typer.Option("--indices", "-i", help="Index JSON file(s); repeat for several k.")] = None,
    csg_weights: CsgWeightsOpt = None,
    csg_order: CsgOrderOpt = MUTUAL_INFO.csg_order,
    model: Annotated[str, typer.Option("--model", "-m", help="Model whose penultimate width D is used (if no CSG gates).")] = "resnet20",
    num_features: Annotated[int | None, typer.Option(help="D, the penultimate width (default: from the gates or the model).")] = MUTUAL_INFO.num_features,
    k: Annotated[str | None, typer.Option("--k", help="k values of the CSG rows, comma-separated (needs --csg-weights; default: the --indices files' k, else 5,10,20). Ours rows come from the --indices files, one per k.")] = None,
    out: OutOpt = None,
    **run_options: Any,
) -> None:
    """Pairwise mutual information of class membership vectors (ours vs CSG, both gate orders).

    Example: jaxnets mutual-info -i resnet20_cifar-10_indices.json -i resnet20_cifar-10_10_10_indices.json --csg-weights best_save_CSG.pth
    """
    opts = resolve_options(ctx, dict(locals()), "mutual-info")
    print(mutual_info_from_options(opts).table, end="")


ESSENTIAL_IGNORED_FLAGS = {"lr": "--lr is ignored by essential (nothing is trained)",
                           "num_epochs": "--num-epochs is ignored by essential (nothing is trained)"}


def _model_argument(ctx: typer.Context, opts: dict) -> None:
    """``essential MODEL`` (main.py's positional model) is ``--model MODEL``; both must agree."""
    from jaxnets.errors import JaxnetsError

    name = opts.pop("model_arg", None)
    if name is None:
        return
    typed = ctx.get_parameter_source("model")
    if typed is not None and typed.name != "DEFAULT" and opts["model"] != name:
        raise JaxnetsError(f"essential got the model twice: '{name}' and --model '{opts['model']}'")
    opts["model"] = name


def _model(opts: dict, data: Data, weights: Path | None, name: str) -> Model:
    """The model as the method opens it: the data's channels, the method's normalisation."""
    from jaxnets.api import load
    from jaxnets.methods.decompose.runners import penultimate_width, with_method_normalization
    from jaxnets.ui import warn

    model = load(name, weights, num_classes=opts.get("num_classes"), normalize=opts.get("normalize"), data=data,
                 seed=opts.get("seed", 0))
    if weights is None:
        warn(f"no weights given: using a randomly initialised {model.name} (seed {opts.get('seed', 0)})")
    penultimate_width(model)  # checks the head's class count
    return model if opts.get("normalize") else with_method_normalization(model)


def _open(opts: dict, split: str, limit: int | None) -> Data:
    from jaxnets.api import open_data

    return open_data(opts["data"], split, limit=limit, classes=opts.get("classes"))


def _run_dir(opts: dict, command: str, model: str | None) -> RunDir:
    from jaxnets.rundir import RunDir

    return RunDir.create(opts.get("out"), command, model, resume=opts.get("resume"))


def indices_from_options(opts: dict) -> IndicesResult:
    """The flags → IndicesConfig, model and training data opened by the library, then ``indices``."""
    from jaxnets.methods.decompose.runners import check_ks_fit
    from jaxnets.methods.decompose.runners import indices as run_indices

    config = IndicesConfig(k=opts["k"], k_keep=opts["k_keep"] or None, batch_size=opts["batch_size"],
                           seed=opts["seed"], eval_resize=opts["eval_resize"])
    data = _open(opts, opts["split"], opts["limit"])
    model = _model(opts, data, opts["weights"], opts["model"])
    check_ks_fit(model, config)  # before the run folder is claimed
    return run_indices(model, data, config, _run_dir(opts, "indices", model.name), provenance=opts)


def finetune_from_options(opts: dict) -> FinetuneResult:
    """The flags → FinetuneConfig, model, train and validation data, then ``finetune``."""
    from jaxnets.errors import DataError, JaxnetsError
    from jaxnets.methods.decompose.runners import finetune as run_finetune
    from jaxnets.runtime import parse_devices

    if not opts.get("indices"):
        raise JaxnetsError("finetune needs --indices FILE (the index JSON of the decomposed head)")
    config = FinetuneConfig(**{k: opts[k] for k in FINETUNE_FLAGS})
    devices = parse_devices(opts["devices"])
    train = _open(opts, "train", opts["limit"])
    if opts.get("eval_split"):
        test = _open(opts, opts["eval_split"], opts["eval_limit"])
    else:
        try:
            test = _open(opts, "test", opts["eval_limit"])
        except DataError:  # ImageNet-style folders have val/, not test/
            test = _open(opts, "val", opts["eval_limit"])
    model = _model(opts, train, opts["weights"], opts["model"])
    from jaxnets.methods.decompose.runners import index_table

    table = index_table(model, opts["indices"])
    return run_finetune(model, train, config, _run_dir(opts, "finetune", model.name), test_data=test,
                        indices=table, resume=opts.get("resume"), devices=devices, provenance=opts)


# Flags that are FinetuneConfig fields (the rest say where the model and data come from, or how to run).
FINETUNE_FLAGS = ("epochs", "lr", "batch_size", "eval_batch_size", "precision", "checkpoint_every", "initial_eval",
                  "export", "seed", "eval_resize")


def essential_from_options(opts: dict) -> EssentialResult:
    """The flags → EssentialConfig, our model (and the CSG one), then ``essential``."""
    from jaxnets.errors import JaxnetsError
    from jaxnets.methods.decompose.csg import load_gates
    from jaxnets.methods.decompose.runners import essential as run_essential

    if not opts.get("indices"):
        raise JaxnetsError("essential needs --indices FILE (our index JSON)")
    if opts.get("csg_indices") and not opts.get("csg_weights"):
        raise JaxnetsError("--csg-indices needs --csg-weights (the CSG model's checkpoint)")
    config = EssentialConfig(noise_mode=opts["noise_mode"], csg_order=opts["csg_order"],
                             batch_size=opts["batch_size"], seed=opts["seed"], eval_resize=opts["eval_resize"])
    # The experiment is defined on the test split (spec §3.5); an explicit --split is honoured.
    data = _open(opts, opts.get("split") or "test", opts["limit"])
    gates = load_gates(opts["csg_weights"]) if opts.get("csg_weights") else None
    run_dir = _run_dir(opts, "essential", opts["model"])
    csg_model = _model(opts, data, opts["csg_weights"], opts["model"]) if gates is not None else None
    model = _model(opts, data, opts["weights"], opts["model"])
    return run_essential(model, data, config, run_dir, indices=opts["indices"], csg_model=csg_model,
                         csg_gates=gates, csg_indices_table=opts.get("csg_indices"),
                         provenance={**opts, "split": data.split})


def mutual_info_from_options(opts: dict) -> MutualInfoResult:
    """The flags → MutualInfoConfig, the index files and CSG gates read, then ``mutual_info``."""
    from jaxnets.methods.decompose.csg import load_gates
    from jaxnets.methods.decompose.indices import load_indices
    from jaxnets.methods.decompose.runners import mutual_info as run_mutual_info

    config = MutualInfoConfig(k=opts.get("k"), csg_order=opts["csg_order"], num_features=opts.get("num_features"))
    files = opts.get("indices") or []
    if isinstance(files, str | Path):
        files = [files]
    gates = load_gates(opts["csg_weights"]) if opts.get("csg_weights") else None
    width = config.num_features or (int(gates.shape[1]) if gates is not None else _registry_width(opts))
    tables = [load_indices(f, num_features=width) for f in files]
    result = run_mutual_info(tables, config, num_features=width, gates=gates, files=files, provenance=opts)
    # the run folder is claimed once every check passed
    return result.write(_run_dir(opts, "mutual-info", None), config, provenance=opts)


def _registry_width(opts: dict) -> int:
    """D of the registered ``--model`` (no weights needed: abstract shapes)."""
    from jaxnets.methods.decompose.head import head_shape
    from jaxnets.models.api import abstract_variables, resolve

    spec = resolve(opts["model"])
    module = spec.create(opts.get("num_classes") or spec.num_classes)
    return head_shape(abstract_variables(spec, module)["params"], spec.head)[0]


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.command("indices")(indices)
    app.command("finetune")(finetune)
    app.command("essential")(essential)
    app.command("mutual-info")(mutual_info)
