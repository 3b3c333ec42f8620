"""`jaxnets seam …`: re-engineer a model with learned weight masks (SeaM), and indirect reuse.

Thin typer commands over :mod:`jaxnets.methods.seam`: each flag that is a Config field defaults
to that field; the ``*_from_options`` functions build the Config, open model and data with the
library and call it.

The original scripts' command lines run when pasted after ``jaxnets seam <command>`` (plus
``--data`` and ``--weights`` where the original hard-codes paths or downloads): their underscore
spellings are aliases (``--target_class``, ``--n_epochs``, ``--lr_head``, ``--lr_s3_output_layer``,
…), ``--model`` names the model as the positional MODEL does, ``--dataset`` names the data set
kind of ``--data DIR``, and flags with no meaning here (``--tuning_param``; eval_robustness's
``--dropout``, ``--lr_mask``, ``--alpha``, ``--prune_threshold``, which only locate its file) are
accepted with one warning line. The scripts' names are hidden command aliases
(``model_reengineering``, ``calculate_flop``, ``calculate_time_cost``, ``reengineering_finetune``,
``standard_finetune``, ``eval_robustness``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jaxnets.cli.common import (
    BatchOpt,
    CheckpointEveryOpt,
    DataOpt,
    DevicesOpt,
    NormOpt,
    OutOpt,
    PrecisionOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    WeightsOpt,
    data_of_dataset,
    drop_ignored_flags,
    resolve_options,
    run_options,
    take_model,
)
from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam.config import (
    FinetuneConfig,
    ReengineerConfig,
    RetrainConfig,
    RobustnessConfig,
    StandardFinetuneConfig,
)

if TYPE_CHECKING:  # the library imports JAX; the CLI loads it only when a command runs
    from jaxnets.api import Data, Model
    from jaxnets.methods.seam.baselines import BaselineResult
    from jaxnets.methods.seam.indirect import FinetuneResult
    from jaxnets.methods.seam.robustness import RobustnessResult
    from jaxnets.methods.seam.runner import ReengineerResult, SavedModule

DEFAULT = ReengineerConfig()
FT_DEFAULT = FinetuneConfig()
STANDARD = StandardFinetuneConfig()
RETRAIN = RetrainConfig()
ROBUSTNESS = RobustnessConfig()

seam_app = typer.Typer(help="SeaM: re-engineer a model for a target problem with learned weight masks.",
                       no_args_is_help=True)

# ------------------------------------------------------------------ options shared by the commands
ModelPos = Annotated[str | None, typer.Argument(metavar="MODEL", help="Registered model name (resnet20, resnet18, vgg16_bn_cifar, mobilenet_v3_small, mixer_b16, digits_cnn, …); same as --model.")]
ModelFlag = Annotated[str | None, typer.Option("--model", "-m", help="The model, as the original scripts name it (with --dataset cifar10/cifar100 their resnet20 and vgg16 are resnet20_b and vgg16_bn_cifar).")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", help="The original's data set name (cifar10, cifar100, imagenet; cub200, dog120, flower102, mit67, action40): with --data DIR it means --data <kind>:DIR.")]
ShotsOpt = Annotated[int | None, typer.Option("--shots", help="Keep N training images per class (few-shot sampling, the data layer's rule for the data set); -1: all, the original's default.")]
TargetIndirectOpt = Annotated[str | None, typer.Option("--target", help="Non-original: cut a SeaM target problem from the data (binary:T, binary:A,B, superclass:I), relabelled 0..K-1; default: the whole data set.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="Training images (with --target: of the target problem, balanced); default: all.")]
TestLimitOpt = Annotated[int | None, typer.Option("--test-limit", help="Test images (default: --limit).")]
ResumeOpt = Annotated[str | None, typer.Option("--resume", help="'auto' (the run folder's latest checkpoint, if any) or a run/checkpoints folder to continue from.")]
EpochsDecl = ("--epochs", "--n-epochs", "--n_epochs")
EarlyStopDecl = ("--early-stop", "--early_stop")
MomentumOpt = Annotated[float, typer.Option("--momentum", help="SGD momentum.")]
WeightDecayOpt = Annotated[float, typer.Option("--weight-decay", "--weight_decay", help="SGD weight decay (added to the gradient, as PyTorch's).")]
DropoutOpt = Annotated[float, typer.Option("--dropout", help="Dropout2d after each ResNet stage while training (the original's defect-inheritance ResNets).")]
AugmentOpt = Annotated[bool, typer.Option(help="Training augmentation as `seam reengineer`: random-resized crop + flip for 224-px models, crop + flip on 32-px data.")]
PgdEpsOpt = Annotated[float, typer.Option("--pgd-eps", help="PGD L∞ radius in normalised input space.")]
PgdStepsOpt = Annotated[int, typer.Option("--pgd-steps", help="PGD iterations.")]
PgdStepSizeOpt = Annotated[float, typer.Option("--pgd-step-size", help="PGD step (times the gradient's sign).")]
TargetClassOpt = Annotated[int | None, typer.Option("--target-class", "--target_class", help="The original's binary target class: --target binary:T.")]
TargetSuperclassOpt = Annotated[int | None, typer.Option("--target-superclass-idx", "--target_superclass_idx", "--target_superclass", help="The original's superclass index: --target superclass:I (-1: not given).")]
SuperclassTypeDecl = ("--superclass-type", "--superclass_type")
NClassesDecl = ("--n-classes", "--n_classes")
NumClassesOpt = Annotated[int | None, typer.Option("--num-classes", help="Classes of the original model's head (default: --dataset's, else the registry's).")]
TuningParamOpt = Annotated[bool | None, typer.Option("--tuning_param", hidden=True, help="Original flag; ignored.")]

# Original spellings and names that mean something else here.
DATASET_KINDS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet": "imagefolder", "cub200": "cub200",
                 "dog120": "dogs120", "dogs120": "dogs120", "flower102": "flowers102", "flowers102": "flowers102",
                 "mit67": "mit67", "action40": "actions40", "actions40": "actions40"}
DATASET_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000}
CIFAR_MODELS = {"resnet20": "resnet20_b", "vgg16": "vgg16_bn_cifar"}  # the original's CIFAR model names
REENGINEER_IGNORED = {"tuning_param": "--tuning_param is ignored (the original parses it and never uses it)"}
RETRAIN_IGNORED = {"n_classes": "--n_classes is ignored (random superclasses; multi_class/retrain.py's default -1)"}
ROBUSTNESS_IGNORED = {
    "dropout": "--dropout is ignored: the fine-tuned model is evaluated in eval mode (the original uses it only "
               "to find its file; give the run folder or file with --finetuned)",
    **{k: f"--{k} is ignored: the original uses it only to find the SeaM step-3 file; give the run folder or "
          "file with --finetuned" for k in ("lr_mask", "alpha", "prune_threshold")},
}


def apply_dataset(opts: dict) -> None:
    """``--dataset NAME`` (the original's): ``--data DIR`` becomes ``<kind>:DIR``; with CIFAR,
    the original's ``--model resnet20|vgg16`` are the chenyaofo models; the classes of the
    model's head follow the data set where ``--num-classes`` is not given."""
    name = opts.pop("dataset", None)
    from_flag = opts.pop("model_from_flag", False)
    if name is None:
        return
    kind = DATASET_KINDS.get(name.lower())
    if kind is None:
        raise JaxnetsError(f"--dataset {name}: use one of {', '.join(sorted(DATASET_KINDS))}")
    if opts.get("data") is not None:  # seam time has no --data: the data set only fixes the head's classes
        opts["data"] = data_of_dataset(name, kind, str(opts["data"]), DATASET_KINDS)
    if "num_classes" in opts and opts["num_classes"] is None and name.lower() in DATASET_CLASSES:
        opts["num_classes"] = DATASET_CLASSES[name.lower()]
    if from_flag and name.lower() in ("cifar10", "cifar100"):
        opts["model"] = CIFAR_MODELS.get(opts["model"], opts["model"])


def take_target(opts: dict) -> None:
    """``--target-class T`` / ``--target-superclass-idx I`` (the original's) as ``--target``."""
    given = []
    target_class = opts.pop("target_class", None)
    superclass = opts.pop("target_superclass_idx", None)
    if target_class is not None:
        given.append(f"binary:{target_class}")
    if superclass is not None and superclass >= 0:
        given.append(f"superclass:{superclass}")
    if len(given) > 1:
        raise JaxnetsError("give one target: --target-class or --target-superclass-idx")
    if given:
        if opts.get("target") not in (None, DEFAULT.target, given[0]):
            raise JaxnetsError(f"got the target twice: --target {opts['target']} and {given[0]}")
        opts["target"] = given[0]


def shots_of(opts: dict) -> int | None:
    """``--shots``: None for -1 (the original's "all") or not given."""
    shots = opts.pop("shots", None)
    return shots if shots is not None and shots > 0 else None


def original_spellings(opts: dict, ignored: dict[str, str] | None = None, *, needs_model: bool = True) -> None:
    """The original scripts' flags into the jaxnets options: model, data set, target, ignored flags
    (``needs_model=False``: a command that may read a run folder instead of a model)."""
    if needs_model or opts.get("model") is not None:
        take_model(opts)
        apply_dataset(opts)
    else:
        opts.pop("dataset", None)
    if "target_class" in opts or "target_superclass_idx" in opts:
        take_target(opts)
    if opts.get("n_classes") is not None and opts["n_classes"] < 0:  # the original's -1 = not given
        opts["n_classes"] = None
    drop_ignored_flags(opts, ignored or {})


def _config(cls: type, opts: dict) -> Any:
    return cls(**{f.name: opts[f.name] for f in dataclasses.fields(cls)})


def _provenance(opts: dict, cls: type) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in opts.items() if k not in names and k not in ("config", "verbose", "quiet")}


def _info(message: str) -> None:
    from jaxnets.ui import info

    info(message)


# ------------------------------------------------------------------ reengineer (direct reuse)
def reengineer(
    ctx: typer.Context,
    model_arg: ModelPos = None,
    model: ModelFlag = None,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    dataset: DatasetOpt = None,
    target: Annotated[str, typer.Option(help="Target problem: binary:T (T vs rest, balanced), binary:A,B (class pair), superclass:I.")] = DEFAULT.target,
    target_class: TargetClassOpt = None,
    target_superclass_idx: TargetSuperclassOpt = None,
    superclass_type: Annotated[str, typer.Option(*SuperclassTypeDecl, help="predefined (CIFAR-100 coarse / ImageNet tables) | random (non-original: --n-classes drawn with --seed).")] = DEFAULT.superclass_type,
    n_classes: Annotated[int | None, typer.Option(*NClassesDecl, help="Classes of a random superclass.")] = DEFAULT.n_classes,
    lr_head: Annotated[float, typer.Option("--lr-head", "--lr_head", help="Adam learning rate of the head.")] = DEFAULT.lr_head,
    lr_mask: Annotated[float, typer.Option("--lr-mask", "--lr_mask", help="Adam learning rate of the mask scores.")] = DEFAULT.lr_mask,
    alpha: Annotated[float, typer.Option(help="Weight α of the retention term (≥ 0).")] = DEFAULT.alpha,
    epochs: Annotated[int, typer.Option(*EpochsDecl, help="Epochs (head-only at 0, 5, 10, …).")] = DEFAULT.epochs,
    early_stop: Annotated[int, typer.Option(*EarlyStopDecl, help="Stop after this many below-threshold epochs since the last sparsity gain (-1 never).")] = DEFAULT.early_stop,
    limit: Annotated[int | None, typer.Option(help="Training images of the target problem (default: all).")] = DEFAULT.limit,
    test_limit: Annotated[int | None, typer.Option(help="Test images of the target problem (default: --limit).")] = DEFAULT.test_limit,
    shots: Annotated[int | None, typer.Option("--shots", help="Keep N images per class of both splits before the target is cut (the original's multi-class rule); ignored on CIFAR, as in the original; -1: all.")] = None,
    augment: Annotated[bool, typer.Option(help="Random crop + flip on 32-px data (the original's).")] = DEFAULT.augment,
    normalize: NormOpt = None,
    num_classes: NumClassesOpt = None,
    exclude: Annotated[str | None, typer.Option(help="Regex of parameter names never masked (e.g. '^fc/').")] = DEFAULT.exclude,
    plots: Annotated[bool, typer.Option(help="Write history.png and layer_retention.png.")] = DEFAULT.plots,
    out: OutOpt = None,
    seed: SeedOpt = DEFAULT.seed,
    batch_size: BatchOpt = DEFAULT.batch_size,
    precision: PrecisionOpt = DEFAULT.precision,
    checkpoint_every: CheckpointEveryOpt = DEFAULT.checkpoint_every,
    resume: ResumeOpt = None,
    devices: DevicesOpt = "1",
    tuning_param: TuningParamOpt = None,
    **run_options: Any,
) -> None:
    """Learn masks + a head for a target problem; write OUT/lr_head_mask_<lr_head>_<lr_mask>_alpha_<alpha>/.

    Checkpoints go to the run folder's checkpoints/ at every epoch end (and every --checkpoint-every
    steps); --resume auto continues a killed run exactly. The original's command lines run as they
    are (plus --data DIR and --weights W): model_reengineering.py --model resnet20 --dataset cifar10
    --target_class 0 --lr_mask 0.05 --alpha 1.

    Example: jaxnets seam reengineer resnet20 --weights resnet20-12fca82f.th --data imagefolder:cifar10-jpeg --target binary:3,5 --lr-mask 0.05 --epochs 20
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    result = reengineer_from_options(opts)
    print(result.describe())
    _info(f"wrote {result.run_dir}")


def reengineer_from_options(opts: dict) -> ReengineerResult:
    """The flags → ReengineerConfig, model and data opened by the library, then SeaM's reengineer."""
    from jaxnets.api import load
    from jaxnets.data.spec import parse_data_spec
    from jaxnets.methods.seam.loaders import open_split
    from jaxnets.methods.seam.runner import config_target, reengineer, run_folder
    from jaxnets.runtime import default_run_path, parse_devices
    from jaxnets.ui import warn

    original_spellings(opts, REENGINEER_IGNORED)
    shots = shots_of(opts)
    if shots is not None and parse_data_spec(opts["data"]).kind.removesuffix("-py") in ("cifar10", "cifar100"):
        warn("--shots is ignored on CIFAR, as in the original (specs/seam.md pitfall 12)")
        shots = None
    opts["shots"] = shots
    config = _config(ReengineerConfig, opts)
    devices = parse_devices(opts["devices"])
    partial = config.limit is not None  # a limited target problem reads few images: no decode cache
    train = open_split(opts["data"], "train", partial=partial, shots=shots)
    test = open_split(opts["data"], "test", partial=partial, shots=shots)
    config_target(config, train)  # a bad --target fails before the model loads
    model = load(opts["model"], opts["weights"], num_classes=opts["num_classes"], normalize=opts["normalize"],
                 data=test, seed=config.seed)
    if opts["weights"] is None:
        warn(f"no --weights given: re-engineering a randomly initialised {model.name}")
    run_dir = run_folder(default_run_path(opts["out"], "seam", model.name), config)
    return reengineer(model, train, config, run_dir, test_data=test, devices=devices,
                      provenance=_provenance(opts, ReengineerConfig), resume=opts["resume"])


# ------------------------------------------------------------------ flops / time / eval of a module
RunPos = Annotated[Path | None, typer.Argument(metavar="[RUN]", help="A finished `jaxnets seam reengineer` run folder (lr_head_mask_…); or give --model/--weights/--masks.")]
MasksOpt = Annotated[Path | None, typer.Option("--masks", help="An original mask dict (.pth: the authors' released masks, a run's masks.pth), or a folder of the original's lr_head_mask_<lr_head>_<lr_mask>_alpha_<alpha>.pth files.")]
ModuleTargetOpt = Annotated[str | None, typer.Option("--target", help="Target problem of the masks (binary:T, binary:A,B, superclass:I) for the accuracies (with --data).")]
LrHeadLocateOpt = Annotated[float, typer.Option("--lr-head", "--lr_head", help="With a --masks folder: the file's lr_head.")]
LrMaskLocateOpt = Annotated[float, typer.Option("--lr-mask", "--lr_mask", help="With a --masks folder: the file's lr_mask.")]
AlphaLocateOpt = Annotated[float, typer.Option("--alpha", help="With a --masks folder: the file's alpha.")]
ModuleDataOpt = Annotated[str | None, typer.Option("--data", "-d", help="Data spec of the target's test set (accuracies; a run folder's own by default).")]


def _module_options_template(
    run: RunPos = None,
    model: ModelFlag = None,
    weights: WeightsOpt = None,
    masks: MasksOpt = None,
    dataset: DatasetOpt = None,
    data: ModuleDataOpt = None,
    target: ModuleTargetOpt = None,
    target_class: TargetClassOpt = None,
    target_superclass_idx: TargetSuperclassOpt = None,
    superclass_type: Annotated[str | None, typer.Option(*SuperclassTypeDecl, help="predefined | random (for --target superclass:…).")] = None,
    n_classes: Annotated[int | None, typer.Option(*NClassesDecl, help="Classes of a random superclass.")] = None,
    lr_head: LrHeadLocateOpt = DEFAULT.lr_head,
    lr_mask: LrMaskLocateOpt = DEFAULT.lr_mask,
    alpha: AlphaLocateOpt = DEFAULT.alpha,
    num_classes: NumClassesOpt = None,
    normalize: NormOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """The options of a module measured on its target (``seam flops``, ``seam eval``): declared once."""


def module_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the options of :func:`_module_options_template` (before its own); it
    declares ``**module_opts`` and receives them there (as :func:`run_options` does)."""
    shared = list(inspect.signature(_module_options_template, eval_str=True).parameters.values())
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = inspect.Signature(shared + own)
    return command


def _module_opts(values: dict, command: str) -> dict:
    """The options of flops/time/eval: verbosity set, the original's spellings applied."""
    from jaxnets.ui import set_verbosity, warn

    opts = {**values, "command": command}
    set_verbosity(opts.pop("verbose", 0) or 0, bool(opts.pop("quiet", False)))
    if shots_of(opts) is not None:
        warn("--shots is ignored here (the module is measured on the whole test split)")
    original_spellings(opts, needs_model=False)  # RUN takes MODEL's place: --model only
    if opts["run"] is not None and (opts.get("masks") is not None or opts.get("model") is not None):
        raise JaxnetsError("give a run folder, or --model/--weights/--masks, not both")
    return opts


def open_mask_module(opts: dict) -> tuple[SavedModule, Path]:
    """``--model``/``--weights`` with the mask file of ``--masks``, and a new run folder (``--out``)
    for the result, its config.json written."""
    from jaxnets.api import load
    from jaxnets.methods.seam.runner import find_mask_file, open_module
    from jaxnets.rundir import RunDir

    if opts.get("masks") is None or opts.get("model") is None:
        raise JaxnetsError("give a run folder, or --model, --weights and --masks FILE.pth")
    masks = find_mask_file(opts["masks"], opts["lr_head"], opts["lr_mask"], opts["alpha"])
    data = _test_data(opts["data"]) if opts.get("data") else None
    model = load(opts["model"], opts["weights"], num_classes=opts["num_classes"], normalize=opts["normalize"],
                 data=data)
    saved = open_module(model=model, masks=masks)
    run_dir = RunDir.create(opts["out"], opts["command"], model.name)
    run_dir.write_config({k: v for k, v in opts.items() if k not in ("run", "model_arg")})
    return saved, run_dir.path


def _test_data(text: str) -> Data:
    from jaxnets.methods.seam.loaders import open_split

    return open_split(text, "test")


def _target_settings(saved: SavedModule, opts: dict) -> dict:
    """The superclass settings of ``--target`` (a run folder's own unless given)."""
    recorded = saved.options if saved.metrics is not None else {}
    return {"superclass_type": opts.get("superclass_type") or recorded.get("superclass_type", "predefined"),
            "n_classes": opts.get("n_classes") or recorded.get("n_classes"),
            "seed": int(recorded.get("seed", opts.get("seed") or 0))}


@module_options
def flops(**module_opts: Any) -> None:
    """Dense and sparse FLOPs (fvcore's rules) of the original and the re-engineered model.

    RUN → RUN/flops.json (with the run's accuracies). Released masks: --model M --weights W --masks
    FILE.pth [--data D --target T: the accuracies too] → OUT/flops.json. The original's
    calculate_flop.py line runs as it is (plus --weights, --masks and --data).

    Example: jaxnets seam flops runs/seam/resnet20-cat-dog/lr_head_mask_0.1_0.05_alpha_1.0
    """
    opts = _module_opts(module_opts, "seam flops")
    from jaxnets.methods.seam.runner import module_flops, run_flops

    if opts["run"] is not None:
        run_flops(opts["run"])
        return
    saved, where = open_mask_module(opts)
    accuracy = None
    if opts.get("data") and opts.get("target"):
        from jaxnets.methods.seam.runner import module_accuracy

        accuracy = module_accuracy(saved, _test_data(opts["data"]), opts["target"], **_target_settings(saved, opts))
    module_flops(saved, accuracy=accuracy, out_file=where / "flops.json")


def time_cmd(
    run: RunPos = None,
    model: ModelFlag = None,
    weights: WeightsOpt = None,
    masks: MasksOpt = None,
    dataset: DatasetOpt = None,
    lr_head: LrHeadLocateOpt = DEFAULT.lr_head,
    lr_mask: LrMaskLocateOpt = DEFAULT.lr_mask,
    alpha: AlphaLocateOpt = DEFAULT.alpha,
    num_classes: NumClassesOpt = None,
    normalize: NormOpt = None,
    batch: Annotated[int, typer.Option(help="Batch size of the timing (the original's 16).")] = 16,
    warmup: Annotated[int, typer.Option(help="Warm-up calls.")] = 3,
    repeats: Annotated[int, typer.Option(help="Timed calls (median reported).")] = 10,
    target_class: Annotated[int | None, typer.Option("--target-class", "--target_class", hidden=True, help="Original flag; not needed for a timing.")] = None,
    target_superclass_idx: Annotated[int | None, typer.Option("--target-superclass-idx", "--target_superclass_idx", "--target_superclass", hidden=True, help="Original flag; not needed for a timing.")] = None,
    superclass_type: Annotated[str | None, typer.Option(*SuperclassTypeDecl, hidden=True, help="Original flag; not needed for a timing.")] = None,
    n_classes: Annotated[int | None, typer.Option(*NClassesDecl, hidden=True, help="Original flag; not needed for a timing.")] = None,
    shots: Annotated[int | None, typer.Option("--shots", hidden=True, help="Original flag; ignored.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", hidden=True, help="Original flag; not needed for a timing.")] = None,
    out: OutOpt = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Dense XLA latency of the original vs the pruned backbone (head excluded).

    RUN → RUN/time.json; or --model M --weights W --masks FILE.pth → OUT/time.json. The original's
    calculate_time_cost.py line runs as it is (plus --weights and --masks).

    Example: jaxnets seam time runs/seam/resnet20-cat-dog/lr_head_mask_0.1_0.05_alpha_1.0 --batch 16
    """
    opts = _module_opts(dict(locals()), "seam time")  # first: locals() are the flags
    from jaxnets.methods.seam.runner import module_time, run_time

    if opts["run"] is not None:
        run_time(opts["run"], batch=batch, warmup=warmup, repeats=repeats)
        return
    saved, where = open_mask_module(opts)
    module_time(saved, batch=batch, warmup=warmup, repeats=repeats, out_file=where / "time.json")


@module_options
def eval_cmd(**module_opts: Any) -> None:
    """Accuracy of a re-engineered module and of the original model on the target's test set (§3.1).

    RUN (its own data and target unless given) → RUN/eval.json; or --model M --weights W --masks
    FILE.pth --data D --target T → OUT/eval.json.

    Example: jaxnets seam eval --model resnet20_b --weights cifar10_resnet20-4118986f.pt --masks lr_head_mask_0.1_0.05_alpha_1.0.pth --data cifar10:DIR --target binary:0
    """
    opts = _module_opts(module_opts, "seam eval")
    from jaxnets.methods.seam.runner import module_eval, open_module
    from jaxnets.rundir import RunDir

    if opts["run"] is not None:
        saved = open_module(opts["run"])
        out_file = RunDir(opts["run"], "seam reengineer").new_file("eval.json", "seam eval: result file")
    else:
        saved, where = open_mask_module(opts)
        out_file = where / "eval.json"
    recorded = saved.options if saved.metrics is not None else {}
    data_text, target_text = opts.get("data") or recorded.get("data"), opts.get("target") or recorded.get("target")
    if data_text is None or target_text is None:
        raise JaxnetsError("seam eval needs --data and --target (or --target-class / --target-superclass-idx)")
    module_eval(saved, _test_data(data_text), target_text, **_target_settings(saved, opts), out_file=out_file)


# ------------------------------------------------------------------ indirect reuse
def finetune(
    ctx: typer.Context,
    model_arg: ModelPos = None,
    model: ModelFlag = None,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    dataset: DatasetOpt = None,
    target: TargetIndirectOpt = None,
    masks: Annotated[Path | None, typer.Option(help="Masks to start from (skips steps 1-2): a `seam reengineer` run folder, an original mask dict .pth or the original's step_2_seam.pth. Default: step 1 (fit a new output layer) and step 2 (re-engineer) first.")] = None,
    lr_s1_output: Annotated[float, typer.Option("--lr-s1-output", "--lr_s1_output_layer", help="Step-1 SGD learning rate of the new output layer.")] = FT_DEFAULT.lr_s1_output,
    lr_mask: Annotated[float, typer.Option("--lr-mask", "--lr_mask", help="Step-2 Adam learning rate of the scores.")] = FT_DEFAULT.lr_mask,
    lr_s2_output: Annotated[float, typer.Option("--lr-s2-output", "--lr_s2_output_layer", help="Step-2 Adam learning rate of the output layer.")] = FT_DEFAULT.lr_s2_output,
    alpha: Annotated[float, typer.Option(help="Step-2 retention weight α (≥ 0).")] = FT_DEFAULT.alpha,
    prune_threshold: Annotated[float, typer.Option("--prune-threshold", "--prune_threshold", help="Step 2 stops once the pruned fraction 1 - retention reaches this (1.0: never before all are pruned).")] = FT_DEFAULT.prune_threshold,
    lr_s3_hidden: Annotated[float, typer.Option("--lr-s3-hidden", "--lr_s3_hidden_layer", "--lr", help="Step-3 SGD learning rate of every layer but the output layer.")] = FT_DEFAULT.lr_s3_hidden,
    lr_s3_output: Annotated[float, typer.Option("--lr-s3-output", "--lr_s3_output_layer", help="Step-3 SGD learning rate of the new output layer.")] = FT_DEFAULT.lr_s3_output,
    momentum: MomentumOpt = FT_DEFAULT.momentum,
    weight_decay: WeightDecayOpt = FT_DEFAULT.weight_decay,
    dropout: DropoutOpt = FT_DEFAULT.dropout,
    epochs: Annotated[int, typer.Option(*EpochsDecl, help="Epochs of each step (at most).")] = FT_DEFAULT.epochs,
    early_stop: Annotated[int, typer.Option(*EarlyStopDecl, help="Each step stops after this many epochs without improvement (-1 never).")] = FT_DEFAULT.early_stop,
    enforce_masks: Annotated[bool, typer.Option(help="Non-original: keep pruned weights at 0 during fine-tuning.")] = FT_DEFAULT.enforce_masks,
    pgd_eps: PgdEpsOpt = FT_DEFAULT.pgd_eps,
    pgd_steps: PgdStepsOpt = FT_DEFAULT.pgd_steps,
    pgd_step_size: PgdStepSizeOpt = FT_DEFAULT.pgd_step_size,
    limit: LimitOpt = None,
    test_limit: TestLimitOpt = None,
    shots: ShotsOpt = None,
    augment: AugmentOpt = FT_DEFAULT.augment,
    normalize: NormOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = FT_DEFAULT.seed,
    batch_size: BatchOpt = FT_DEFAULT.batch_size,
    resume: Annotated[str | None, typer.Option("--resume", help="'auto': reuse the run folder's finished steps (as the original reuses its step-1/2 files) and continue the unfinished one from its checkpoint.")] = None,
    **run_options: Any,
) -> None:
    """Indirect reuse: fit a new output layer (1), re-engineer with a prune threshold (2), fine-tune (3), measure the defect inheritance rate (PGD).

    The original reengineering_finetune.py line runs as it is (plus --weights W and --data DIR):
    --model resnet18 --dataset mit67 --lr_mask 0.05 --alpha 0.5 --prune_threshold 0.6.

    Example: jaxnets seam finetune resnet18 --weights resnet18-5c106cde.pth --data mit67:MIT_67 --lr-mask 0.05 --alpha 0.5 --prune-threshold 0.6
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    result = finetune_from_options(opts)
    print(result.describe())
    _info(f"wrote {result.run_dir}")


def open_indirect_data(opts: dict) -> tuple[Data, Data]:
    """The training and test splits of the indirect-reuse commands (``--target``, ``--limit``,
    ``--test-limit``; ``--shots`` on the training split, as the original's loaders)."""
    from jaxnets.methods.seam.loaders import open_target_split

    shots = shots_of(opts)
    opts["shots"] = shots
    test_limit = opts["test_limit"] if opts["test_limit"] is not None else opts["limit"]
    train = open_target_split(opts["data"], "train", opts["target"], limit=opts["limit"], shots=shots)
    test = open_target_split(opts["data"], "test", opts["target"], limit=test_limit)
    return train, test


def _public_model(opts: dict, test: Data, seed: int) -> Model:
    from jaxnets.api import load
    from jaxnets.ui import warn

    model = load(opts["model"], opts.get("weights"), normalize=opts["normalize"], data=test, seed=seed)
    if opts.get("weights") is None:
        warn(f"no --weights given: {model.name} is randomly initialised, not a public pretrained model")
    return model


def finetune_from_options(opts: dict) -> FinetuneResult:
    """The flags → FinetuneConfig, the public model and the data opened by the library, then SeaM's finetune."""
    from jaxnets.methods.seam.indirect import finetune as run_finetune
    from jaxnets.runtime import default_run_path

    original_spellings(opts)
    config = _config(FinetuneConfig, opts)
    train, test = open_indirect_data(opts)
    model = _public_model(opts, test, config.seed)
    run_dir = default_run_path(opts["out"], "seam-finetune", model.name)
    return run_finetune(model, train, config, run_dir, test_data=test, masks=opts["masks"],
                        provenance=_provenance(opts, FinetuneConfig), resume=opts["resume"])


def _baseline_options_template(
    model_arg: ModelPos = None,
    model: ModelFlag = None,
    data: DataOpt = "digits",
    dataset: DatasetOpt = None,
    target: TargetIndirectOpt = None,
    momentum: MomentumOpt = 0.0,
    weight_decay: WeightDecayOpt = 0.0,
    dropout: DropoutOpt = 0.0,
    epochs: Annotated[int, typer.Option(*EpochsDecl, help="Epochs.")] = 0,
    early_stop: Annotated[int, typer.Option(*EarlyStopDecl, help="Non-original: stop after this many epochs without a better test accuracy (-1 never).")] = -1,
    limit: LimitOpt = None,
    test_limit: TestLimitOpt = None,
    shots: ShotsOpt = None,
    augment: AugmentOpt = False,
    normalize: NormOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = 64,
    resume: ResumeOpt = None,
) -> None:
    """The options both indirect-reuse baselines take (defaults: each baseline's Config)."""


def baseline_options(defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a baseline command the options of :func:`_baseline_options_template` after its own,
    with ``defaults``' (a Config's) values; it declares ``**baseline_opts`` and gets them there."""
    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        shared = [p.replace(default=getattr(defaults, p.name)) if hasattr(defaults, p.name) else p
                  for p in inspect.signature(_baseline_options_template, eval_str=True).parameters.values()]
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        command.__signature__ = inspect.Signature(own + shared)
        return command
    return decorate


@baseline_options(STANDARD)
def standard_finetune(
    ctx: typer.Context,
    weights: WeightsOpt = None,
    lr: Annotated[float, typer.Option("--lr", help="SGD learning rate of every layer but the new output layer (which gets 10×).")] = STANDARD.lr,
    **baseline_opts: Any,
) -> None:
    """The standard fine-tuning baseline: the pretrained model with a new output layer, every layer trained (SGD), the best test accuracy kept → OUT/model_ft.msgpack, results.json.

    Its DIR: `jaxnets seam eval-robustness MODEL --weights W --finetuned OUT`. The original
    standard_finetune.py line runs as it is (plus --weights W and --data DIR).

    Example: jaxnets seam standard-finetune resnet18 --weights resnet18-5c106cde.pth --data mit67:MIT_67
    """
    values = {k: v for k, v in locals().items() if k != "baseline_opts"}
    opts = resolve_options(ctx, {**values, **baseline_opts}, "seam")
    result = baseline_from_options("standard", opts)
    print(result.describe())
    _info(f"wrote {result.run_dir}")


@baseline_options(RETRAIN)
def retrain(
    ctx: typer.Context,
    target_superclass_idx: Annotated[int | None, typer.Option("--target-superclass-idx", "--target_superclass_idx", help="multi_class/retrain.py's superclass index: --target superclass:I (-1: not given).")] = None,
    superclass_type: Annotated[str | None, typer.Option(*SuperclassTypeDecl, hidden=True, help="multi_class/retrain.py's flag; predefined only.")] = None,
    n_classes: Annotated[int | None, typer.Option(*NClassesDecl, hidden=True, help="multi_class/retrain.py's flag (random superclasses); ignored.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="SGD learning rate.")] = RETRAIN.lr,
    **baseline_opts: Any,
) -> None:
    """The retrain baseline: MODEL's architecture from a random initialisation, every layer trained (SGD), the best test accuracy kept → OUT/model_rt.msgpack, results.json.

    The original defect_inherit/retrain.py line runs as it is (plus --data DIR).

    Example: jaxnets seam retrain resnet18 --data mit67:MIT_67
    """
    values = {k: v for k, v in locals().items() if k != "baseline_opts"}
    opts = resolve_options(ctx, {**values, **baseline_opts}, "seam")
    result = baseline_from_options("retrain", opts)
    print(result.describe())
    _info(f"wrote {result.run_dir}")


def baseline_from_options(method: str, opts: dict) -> BaselineResult:
    """The flags → StandardFinetuneConfig / RetrainConfig, the model and data, then the baseline."""
    from jaxnets.methods.seam.baselines import retrain as run_retrain
    from jaxnets.methods.seam.baselines import standard_finetune as run_standard
    from jaxnets.runtime import default_run_path

    if opts.pop("superclass_type", None) not in (None, "predefined"):
        raise JaxnetsError("--superclass-type: only predefined superclasses here (the original's retrain.py "
                           "cannot run random ones either)")
    original_spellings(opts, RETRAIN_IGNORED)
    cls, run = (StandardFinetuneConfig, run_standard) if method == "standard" else (RetrainConfig, run_retrain)
    config = _config(cls, opts)
    train, test = open_indirect_data(opts)
    if method == "standard":
        model = _public_model(opts, test, config.seed)
    else:
        from jaxnets.api import load

        model = load(opts["model"], None, normalize=opts["normalize"], data=test, seed=config.seed)
    run_dir = default_run_path(opts["out"], f"seam-{'standard-finetune' if method == 'standard' else 'retrain'}",
                               model.name)
    return run(model, train, config, run_dir, test_data=test, provenance=_provenance(opts, cls), resume=opts["resume"])


def eval_robustness(
    ctx: typer.Context,
    model_arg: ModelPos = None,
    model: ModelFlag = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="The public pretrained model (the attacked feature extractor) the fine-tuned one started from.")] = None,
    finetuned: Annotated[Path | None, typer.Option("--finetuned", help="The fine-tuned model: a seam finetune / standard-finetune / retrain run folder, its .msgpack, a jaxnets checkpoint or a PyTorch state_dict (the original's model_ft.pth).")] = None,
    eval_method: Annotated[str | None, typer.Option("--eval-method", "--eval_method", "--eval", help="seam | standard | retrain: which model of a run folder (default: the one it holds).")] = None,
    data: DataOpt = "digits",
    dataset: DatasetOpt = None,
    target: TargetIndirectOpt = None,
    test_limit: Annotated[int | None, typer.Option("--test-limit", "--limit", help="Test images (with --target: of the target problem, balanced); default: all.")] = None,
    pgd_eps: PgdEpsOpt = ROBUSTNESS.pgd_eps,
    pgd_steps: PgdStepsOpt = ROBUSTNESS.pgd_steps,
    pgd_step_size: PgdStepSizeOpt = ROBUSTNESS.pgd_step_size,
    normalize: NormOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = ROBUSTNESS.seed,
    batch_size: BatchOpt = ROBUSTNESS.batch_size,
    dropout: Annotated[float | None, typer.Option("--dropout", hidden=True, help="Original flag; ignored.")] = None,
    lr_mask: Annotated[float | None, typer.Option("--lr-mask", "--lr_mask", hidden=True, help="Original flag; ignored.")] = None,
    alpha: Annotated[float | None, typer.Option("--alpha", hidden=True, help="Original flag; ignored.")] = None,
    prune_threshold: Annotated[float | None, typer.Option("--prune-threshold", "--prune_threshold", hidden=True, help="Original flag; ignored.")] = None,
    **run_options: Any,
) -> None:
    """Defect inheritance rate of a fine-tuned model: PGD on the public pretrained feature extractor, the adversarial test images fed to the fine-tuned model → OUT/results.json.

    Prints the original's line "Clean Top-1: xx.xx | Attack Success Rate: xx.xx". The original
    eval_robustness.py line runs as it is plus --weights W, --data DIR and --finetuned RUN.

    Example: jaxnets seam eval-robustness resnet18 --weights resnet18-5c106cde.pth --finetuned runs/seam-standard-finetune/resnet18-… --data mit67:MIT_67
    """
    opts = resolve_options(ctx, dict(locals()), "seam")
    result = eval_robustness_from_options(opts)
    print(result.describe())
    _info(f"wrote {result.run_dir}")


def eval_robustness_from_options(opts: dict) -> RobustnessResult:
    """The flags → RobustnessConfig, the public model, the fine-tuned one and the test data, then the DIR."""
    from jaxnets.methods.seam.loaders import open_target_split
    from jaxnets.methods.seam.robustness import eval_robustness as run_eval
    from jaxnets.runtime import default_run_path

    original_spellings(opts, ROBUSTNESS_IGNORED)
    config = _config(RobustnessConfig, opts)
    if opts["finetuned"] is None:
        raise JaxnetsError("give the fine-tuned model with --finetuned RUN_OR_FILE")
    test = open_target_split(opts["data"], "test", opts["target"], limit=opts["test_limit"])
    public = _public_model(opts, test, config.seed)
    run_dir = default_run_path(opts["out"], "seam-eval-robustness", public.name)
    return run_eval(public, opts["finetuned"], test, config, run_dir, method=opts["eval_method"],
                    provenance=_provenance(opts, RobustnessConfig))


# ------------------------------------------------------------------ registration
# (name, function, the original script's name as a hidden alias, gets --config/--dry-run/-v/-q)
for _name, _fn, _alias, _runs in (
        ("reengineer", reengineer, "model_reengineering", True), ("flops", flops, "calculate_flop", False),
        ("time", time_cmd, "calculate_time_cost", False), ("eval", eval_cmd, None, False),
        ("finetune", finetune, "reengineering_finetune", True),
        ("standard-finetune", standard_finetune, "standard_finetune", True), ("retrain", retrain, None, True),
        ("eval-robustness", eval_robustness, "eval_robustness", True)):
    _command = run_options(_fn) if _runs else _fn
    seam_app.command(_name)(_command)
    if _alias:
        seam_app.command(_alias, hidden=True)(_command)


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.add_typer(seam_app, name="seam")
