"""`jaxnets projections` and `jaxnets reinit`: the hyperplane-arrangement tools
(specs/hyperplane-arrangements.md §2, §3). A thin adapter: the flags build a ProjectionsConfig /
ReinitConfig (their defaults are the Configs'), the snapshot's model and test data are opened by
the library (jaxnets.methods.hyperplanes.snapshots.open_snapshot, over jaxnets.api.load), the
library's projections / reinit compute and write, and the command prints the table.

The original scripts' command lines run when pasted after ``jaxnets projections`` /
``jaxnets reinit`` / ``jaxnets train`` (compute_projections.py, reinit_layers.py, train.py; plus
the checkpoint file where the original downloads torchvision's): ``--arch`` is the MODEL argument,
``--load-from`` is ``--weights``, ``--dataset NAME [--data-path DIR]`` is ``--data`` (the
original's ``./data`` by default), ``--subsample-classes N`` the head size, the value-less
``--upscale`` / ``--upscale-padding`` / ``--pretrained`` mean what they meant there, and flags
with no meaning here (``--cuda``, ``--workers``, ``--results``, ``--log``, …) are accepted with
one warning line each (:data:`ORIGINAL_IGNORED`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from jaxnets.cli.common import (
    BatchOpt,
    ClassesOpt,
    LimitOpt,
    OutOpt,
    SeedOpt,
    drop_ignored_flags,
    is_number,
    one_model,
    resolve_options,
    run_options,
)
from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.methods.hyperplanes.config import ProjectionsConfig, ReinitConfig

if TYPE_CHECKING:  # the runner imports JAX: only for the hints (start-up time)
    from jaxnets.methods.hyperplanes.runner import ProjectionsResult, ReinitResult

PROJECTIONS_DEFAULT = ProjectionsConfig()
REINIT_DEFAULT = ReinitConfig()

ModelArg = Annotated[str | None, typer.Argument(metavar="MODEL", help="Registered model name (see `jaxnets models`); the original's --arch.")]
DataOptional = Annotated[str | None, typer.Option("--data", "-d", help="Data spec (digits | cifar10:DIR | …); default: the snapshot's own data set.")]
NumClassesOpt = Annotated[int | None, typer.Option(help="Classes of the head (default: snapshot metadata, else the data's, else the registry's).")]
RuleOpt = Annotated[str | None, typer.Option(help="Stage grouping: pool (the original: max-pools start stages) | stage (ResNets: layerN = stage N). Default per family.")]
LegacyOpt = Annotated[bool, typer.Option("--legacy-epoch-labels", help="The original's epoch labels (final .pt = E+1; reinit parses the full path).")]
PlotsOpt = Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")]

# ------------------------------------------------------------------ the original scripts' spellings
# (hidden options; each command's *_spellings function turns them into the jaxnets options)
ArchOpt = Annotated[str | None, typer.Option("--arch", hidden=True, help="Original flag: the MODEL argument.")]
DatasetOpt = Annotated[str | None, typer.Option("--dataset", hidden=True, help="Original flag: cifar10 | cifar100 | imagenet | mnist; with --data-path DIR it is --data.")]
DataPathOpt = Annotated[str | None, typer.Option("--data-path", hidden=True, help="Original flag: the data set's folder (default ./data).")]
SubsampleOpt = Annotated[int | None, typer.Option("--subsample-classes", hidden=True, help="Original flag: classes of the head (--num-classes).")]
ClassSampleSeedOpt = Annotated[int | None, typer.Option("--class-sample-seed", hidden=True, help="Original flag; ignored (the class list is the snapshot's).")]
UpscaleOpt = Annotated[int | None, typer.Option("--upscale", hidden=True, help="Original flag (value-less = 224): must be the size the snapshot was trained at.")]
UpscalePaddingOpt = Annotated[int | None, typer.Option("--upscale-padding", hidden=True, help="Padding after --upscale.")]
# the value-less originals, renamed by OriginalFlagsCommand (jaxnets spells these flags with a value)
BareUpscalePaddingOpt = Annotated[bool | None, typer.Option("--original-upscale-padding", hidden=True, help="The original's value-less --upscale-padding: --upscale 112 --upscale-padding 56.")]
BarePretrainedOpt = Annotated[bool | None, typer.Option("--original-pretrained", hidden=True, help="The original's value-less --pretrained: the --weights file is torchvision's ImageNet checkpoint.")]
CudaOpt = Annotated[bool | None, typer.Option("--cuda", hidden=True, help="Original flag; ignored.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", "-j", hidden=True, help="Original flag; ignored.")]
LogOpt = Annotated[str | None, typer.Option("--log", hidden=True, help="Original flag; ignored.")]
ResultsOpt = Annotated[str | None, typer.Option("--results", hidden=True, help="Original flag; ignored (--out).")]
PlotsDirOpt = Annotated[str | None, typer.Option("--original-plots", hidden=True, help="The original's --plots DIR; ignored (--out).")]

ORIGINAL_DATA_PATH = "./data"  # the original's --data-path default
# The original's --dataset names → jaxnets data specs of its --data-path folder (spec §5.2): CIFAR's
# torchvision root holds cifar-10-batches-py, ImageNet's train/ and val/ (an image folder).
ORIGINAL_DATASETS = {"cifar10": "cifar10:{path}", "cifar100": "cifar100:{path}", "imagenet": "imagefolder:{path}",
                     "mnist": "tfds:mnist"}
ORIGINAL_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet": 1000, "mnist": 10}
# Original flags with no meaning here: option name → why it is ignored (one warning line each).
ORIGINAL_IGNORED = {
    "cuda": "--cuda is ignored: jaxnets runs on the JAX devices it sees (CUDA_VISIBLE_DEVICES chooses them)",
    "workers": "--workers is ignored: the data loader sizes its threads itself",
    "log": "--log is ignored: the run folder (--out) holds the record (config.json, results.json, metrics.jsonl)",
    "results": "--results is ignored: the JSON goes to the run folder (--out RUN)",
    "plots_dir": "--plots DIR is ignored: the heatmap goes to the run folder (--out RUN)",
    "models_path": "--models-path is ignored: the snapshots go to the run folder's snapshots/ (--out RUN)",
    "tb_logdir": "--tb-logdir is ignored: TensorBoard logs go to the run folder's tensorboard/ (--out RUN)",
    "override": "--override is ignored: not implemented (it crashes in the original, spec §7 #15); the "
                "command line's --weight-decay applies",
    "class_sample_seed": "--class-sample-seed is ignored: reinit uses the snapshot's stored class list, else the "
                         "first --subsample-classes classes (never re-sampled, spec §7 #9); --classes chooses others",
}


# The hidden original-only options of each command (dropped when not given: --dry-run and
# config.json show the jaxnets options).
PROJECTIONS_ORIGINAL = ("arch", "dataset", "subsample_classes", "original_pretrained", "cuda", "results", "log")
REINIT_ORIGINAL = ("arch", "dataset", "data_path", "subsample_classes", "class_sample_seed", "upscale",
                   "upscale_padding", "original_upscale_padding", "cuda", "workers", "results", "plots_dir", "log")


def given_only(values: dict, original: Sequence[str]) -> dict:
    """``values`` without the original-only options that were not given."""
    return {k: v for k, v in values.items() if k not in original or v is not None}


def rewrite_original_flags(args: list[str], bare: Mapping[str, Sequence[str]],
                           valued: Mapping[str, str] | None = None) -> list[str]:
    """The original's value-less flags that jaxnets spells with a value (``--upscale`` → ``--upscale
    224``), and original valued flags that are jaxnets switches (``--plots DIR``), as jaxnets tokens.

    A flag is value-less when no argument follows it or the next one is an option (``-…``, but not
    a number such as ``-8``: a bad value is the option's own error).
    """
    out: list[str] = []
    for i, token in enumerate(args):
        if token == "--":  # the rest are arguments
            out.extend(args[i:])
            break
        following = args[i + 1] if i + 1 < len(args) else None
        has_value = following is not None and (not following.startswith("-") or is_number(following))
        if token in bare and not has_value:
            out.extend(bare[token])
        elif valued and token in valued and has_value:
            out.append(valued[token])
        else:
            out.append(token)
    return out


class OriginalFlagsCommand(TyperCommand):
    """A command that parses the original scripts' spellings (:func:`rewrite_original_flags`)."""

    bare: Mapping[str, Sequence[str]] = {}
    valued: Mapping[str, str] = {}

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_original_flags(args, self.bare, self.valued))


class TrainCommand(OriginalFlagsCommand):
    bare = {"--upscale": ("--upscale", "224"), "--upscale-padding": ("--original-upscale-padding",),
            "--pretrained": ("--original-pretrained",)}


class ProjectionsCommand(OriginalFlagsCommand):
    bare = {"--pretrained": ("--original-pretrained",)}


class ReinitCommand(OriginalFlagsCommand):
    bare = {"--upscale": ("--upscale", "224"), "--upscale-padding": ("--original-upscale-padding",)}
    valued = {"--plots": "--original-plots"}


def take_arch(opts: dict) -> None:
    """MODEL and the original's ``--arch`` are one setting; both given must agree."""
    opts["model"] = one_model(opts.get("model"), opts.pop("arch", None), "--arch")


def original_data(opts: dict, data_given: bool) -> str | None:
    """``--dataset NAME [--data-path DIR]`` (popped from ``opts``) as ``opts["data"]``, and the
    original name (None when not given). ``data_given``: ``--data`` was given too, so it must name
    the same kind of data set (it then says where)."""
    from jaxnets.ui import warn

    name, path = opts.pop("dataset", None), opts.pop("data_path", None)
    if name is None:
        if path is not None:
            raise JaxnetsError("--data-path needs --dataset NAME (or give --data KIND:DIR)")
        return None
    key = name.lower()
    if key not in ORIGINAL_DATASETS:
        raise JaxnetsError(f"--dataset {name}: use one of {', '.join(ORIGINAL_DATASETS)} (or --data SPEC)")
    if key == "mnist" and path is not None:
        warn("--data-path is ignored for mnist: jaxnets reads MNIST through tfds (tfds:mnist)")
    spec = ORIGINAL_DATASETS[key].format(path=path or ORIGINAL_DATA_PATH)
    if data_given:
        if _data_kind(str(opts["data"])) != _data_kind(spec):
            raise JaxnetsError(f"--dataset {name} and --data {opts['data']} name different data sets")
    else:
        opts["data"] = spec
    return key


def _data_kind(spec: str) -> str:
    """A data spec's kind as text (``cifar10`` of ``cifar10-py:DIR``, ``tfds:mnist`` whole), read
    without touching the folder."""
    kind, sep, rest = spec.partition(":")
    return f"tfds:{rest}" if kind == "tfds" else kind.removesuffix("-py")


def original_upscale(opts: dict) -> None:
    """The original's value-less ``--upscale-padding``: ``--upscale 112 --upscale-padding 56``
    (its ``--upscale`` wins when both are given, as there)."""
    from jaxnets.ui import warn

    if not opts.pop("original_upscale_padding", None):
        return
    if opts.get("upscale") is None:
        opts["upscale"], opts["upscale_padding"] = 112, 56
    else:
        warn("--upscale-padding is ignored with --upscale (the original's --upscale wins)")


def original_pretrained(opts: dict, key: str) -> bool:
    """Whether the original's value-less ``--pretrained`` was given: it downloads torchvision's
    ImageNet weights, so here ``opts[key]`` (the ``--weights`` file) must be that checkpoint."""
    if not opts.pop("original_pretrained", None):
        return False
    if not opts.get(key):
        raise JaxnetsError("--pretrained: nothing is downloaded here; give torchvision's ImageNet checkpoint "
                           "with --weights FILE (or --pretrained FILE)")
    return True


@run_options
def projections(
    ctx: typer.Context,
    model: ModelArg = None,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", "--load-from", help="Snapshot / checkpoint (jaxnets folder, .pt/.tar/.th, .npz). Without it: a random init with --seed.")] = None,
    pretrained: Annotated[Path | None, typer.Option("--pretrained", help="ImageNet-pretrained checkpoint (torchvision file): output pretrained_<arch>, epoch -1.")] = None,
    init_from: Annotated[Path | None, typer.Option("--init-from", help="Initial weights (e.g. RUN/snapshots/<arch>_init_0): adds l2_dist and l_inf_dist per layer.")] = None,
    normalize: Annotated[bool, typer.Option("--normalize", help="Normalise by ||w||·√n (cosine with the all-ones vector); default raw sums.")] = PROJECTIONS_DEFAULT.normalize,
    with_linear: Annotated[bool, typer.Option("--with-linear", help="Also record linear layers.")] = PROJECTIONS_DEFAULT.with_linear,
    data: DataOptional = None,
    num_classes: NumClassesOpt = None,
    rule: RuleOpt = PROJECTIONS_DEFAULT.rule,
    legacy_epoch_labels: LegacyOpt = PROJECTIONS_DEFAULT.legacy_epoch_labels,
    plots: PlotsOpt = PROJECTIONS_DEFAULT.plots,
    out: OutOpt = None,
    seed: SeedOpt = PROJECTIONS_DEFAULT.seed,
    arch: ArchOpt = None,
    dataset: DatasetOpt = None,
    subsample_classes: SubsampleOpt = None,
    original_pretrained: BarePretrainedOpt = None,
    cuda: CudaOpt = None,
    results: ResultsOpt = None,
    log: LogOpt = None,
    **run_options: Any,
) -> None:
    """Projection statistics of each filter on the all-ones vector: per-layer mean and mass P(p ≤ 0),
    network aggregate, distance from init → RUN/<name>.json (the original schema), results.json, PNGs.

    Example: jaxnets projections lenet --weights runs/train/lenet/snapshots/lenet_final_30 --init-from runs/train/lenet/snapshots/lenet_init_0 --normalize
    """
    opts = resolve_options(ctx, given_only(dict(locals()), PROJECTIONS_ORIGINAL), "projections")
    from jaxnets.ui import info

    dataset_label = projections_spellings(opts)
    result = projections_from_options(opts)
    if dataset_label and not result.dataset:
        _name_dataset(result, dataset_label)
    _print_table(result.layers, result.report["net"], f"{result.model} — {result.name} (epoch {result.epoch})")
    info(f"wrote {result.files['json']}")


# Flags that are ProjectionsConfig / ReinitConfig fields (the rest say where the weights and the
# data come from, or how to run).
PROJECTIONS_FLAGS = ("normalize", "with_linear", "rule", "legacy_epoch_labels", "seed", "plots")
REINIT_FLAGS = ("rand", "batch_size", "include_bn", "include_linear", "rule", "legacy_epoch_labels", "vmin",
                "vmax", "seed", "plots")


def _head_size(opts: dict, classes: int | None, flag: str) -> None:
    """The head size an original flag implies, unless ``--num-classes`` or the snapshot's
    metadata says it (they win; ``--num-classes`` must agree)."""
    from jaxnets.methods.hyperplanes.snapshots import snapshot_metadata

    if classes is None:
        return
    if opts["num_classes"] not in (None, classes):
        raise JaxnetsError(f"{flag} gives {classes} classes, --num-classes {opts['num_classes']}")
    if opts["num_classes"] is None and not snapshot_metadata(opts["weights"]).get("num_classes"):
        opts["num_classes"] = classes


def projections_spellings(opts: dict) -> str | None:
    """compute_projections.py's flags as the jaxnets options; returns the data set's name for the
    JSON when ``--dataset`` names it without data (the original opens none)."""
    take_arch(opts)
    name, subsample = opts.pop("dataset", None), opts.pop("subsample_classes", None) or None
    label = None
    if name is not None:
        if name.lower() not in ORIGINAL_DATASETS:
            raise JaxnetsError(f"--dataset {name}: use one of {', '.join(ORIGINAL_DATASETS)} (or --data SPEC)")
        if opts["data"] is not None:  # --data says where: it must be that data set
            original_data({**opts, "dataset": name}, data_given=True)
        label = name.lower() + (f"_{subsample}" if subsample else "")
    _head_size(opts, subsample or (ORIGINAL_CLASSES[name.lower()] if name else None),
               "--subsample-classes" if subsample else f"--dataset {name}")
    if original_pretrained(opts, "weights"):
        opts["pretrained"], opts["weights"] = opts["weights"], None
    drop_ignored_flags(opts, {k: ORIGINAL_IGNORED[k] for k in ("cuda", "results", "log")})
    return label


def _name_dataset(result: ProjectionsResult, label: str) -> None:
    """Record the original's ``--dataset`` name in ``<name>.json`` when no data named it."""
    import json

    result.dataset = label
    if "json" in result.files:
        Path(result.files["json"]).write_text(json.dumps(result.to_json()))  # compact, as the runner's


def _check_path(path: str | Path | None, flag: str) -> None:
    if path is not None and not Path(path).exists():
        raise CheckpointError(f"{flag} {path}: file or folder not found")


def projections_from_options(opts: Mapping[str, Any]) -> ProjectionsResult:
    """The flags → ProjectionsConfig, the snapshot's model and data opened by the library, then
    the library's projections (files in ``--out``)."""
    from jaxnets.methods.hyperplanes.runner import check_pretrained
    from jaxnets.methods.hyperplanes.runner import projections as run_projections
    from jaxnets.methods.hyperplanes.snapshots import open_snapshot
    from jaxnets.models.api import resolve
    from jaxnets.runtime import default_run_path, setup_jax

    config = ProjectionsConfig(**{k: opts[k] for k in PROJECTIONS_FLAGS})
    setup_jax()
    if opts["weights"] and opts["pretrained"]:
        raise JaxnetsError("give either --weights or --pretrained, not both")
    if opts["pretrained"]:
        check_pretrained(resolve(opts["model"]).name)
    _check_path(opts["init_from"], "--init-from")
    source = opts["pretrained"] or opts["weights"]
    _check_path(source, "--weights")
    model, data = open_snapshot(opts["model"], source, opts["data"], num_classes=opts["num_classes"],
                                seed=config.seed)
    return run_projections(model, data, config, run_dir=default_run_path(opts["out"], "projections", model.name),
                           init_from=opts["init_from"], pretrained=bool(opts["pretrained"]),
                           provenance=_provenance(opts, ("weights", "pretrained", "init_from", "data", "num_classes", "out")))


def _provenance(opts: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The source flags recorded in config.json next to the Config (as the command received them)."""
    return {k: opts[k] for k in keys}


def _print_table(rows: list[dict], net: Mapping, title: str) -> None:
    from jaxnets.ui import verbosity

    if verbosity() < 0:
        return
    dist = any("l2_dist" in r for r in rows)
    head = f"{'stage/block':>11}  {'layer':<28} {'O':>5} {'n':>6}  {'mass':>6} {'mean':>9}  band"
    print(title)
    print(head + ("   l2_dist  linf_dist" if dist else ""))
    for r in rows:
        mark = "*" if r["outside_null_band"] else " "
        line = (f"{r['stage'] + '/' + r['block']:>11}  {r['path'][:28]:<28} {r['units']:>5} "
                f"{r['fan_in']:>6}  {r['mass']:6.3f} {r['mean']:9.4f}  {mark}")
        if dist:
            line += f"  {r.get('l2_dist', float('nan')):8.4f}  {r.get('l_inf_dist', float('nan')):9.4f}"
        print(line)
    print(f"{'net':>11}  {'(all layers pooled)':<28} {len(net['projections']):>5} {'':>6}  "
          f"{net['mass']:6.3f} {net['mean']:9.4f}   (* = outside 0.5 ± 4·0.5/√O)")


@run_options
def reinit(
    ctx: typer.Context,
    weights: Annotated[Path, typer.Option("--weights", "-w", "--load-from", help="The trained model (snapshot or checkpoint).")],
    model: ModelArg = None,
    inits_from: Annotated[Path | None, typer.Option("--inits-from", help="Text file with one snapshot path per line (missing ones skipped with a warning), or a snapshots folder.")] = None,
    rand: Annotated[bool, typer.Option("--rand", help="Add a 'rand' row: each layer from a fresh init (the arch's initialiser).")] = REINIT_DEFAULT.rand,
    data: DataOptional = None,
    batch_size: BatchOpt = REINIT_DEFAULT.batch_size,
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Normalisation override (default: the training run's, else the model's).")] = None,
    num_classes: NumClassesOpt = None,
    include_bn: Annotated[bool, typer.Option("--include-bn", help="Extension: also swap the BatchNorm after each conv (params and running statistics).")] = REINIT_DEFAULT.include_bn,
    include_linear: Annotated[bool, typer.Option("--include-linear", help="Extension: also re-initialise the linear layers (Zhang et al. reset whole layers).")] = REINIT_DEFAULT.include_linear,
    rule: RuleOpt = REINIT_DEFAULT.rule,
    legacy_epoch_labels: LegacyOpt = REINIT_DEFAULT.legacy_epoch_labels,
    vmin: Annotated[float | None, typer.Option(help="Heatmap colour minimum (default automatic).")] = REINIT_DEFAULT.vmin,
    vmax: Annotated[float | None, typer.Option(help="Heatmap colour maximum (default automatic).")] = REINIT_DEFAULT.vmax,
    plots: PlotsOpt = REINIT_DEFAULT.plots,
    out: OutOpt = None,
    seed: SeedOpt = REINIT_DEFAULT.seed,
    arch: ArchOpt = None,
    dataset: DatasetOpt = None,
    data_path: DataPathOpt = None,
    subsample_classes: SubsampleOpt = None,
    class_sample_seed: ClassSampleSeedOpt = None,
    upscale: UpscaleOpt = None,
    upscale_padding: UpscalePaddingOpt = None,
    original_upscale_padding: BareUpscalePaddingOpt = None,
    cuda: CudaOpt = None,
    workers: WorkersOpt = None,
    results: ResultsOpt = None,
    plots_dir: PlotsDirOpt = None,
    log: LogOpt = None,
    **run_options: Any,
) -> None:
    """Layer re-initialisation robustness: swap each conv layer for an earlier snapshot's (or a
    fresh init's), evaluate top-1 → RUN/reinit_<name>.json (the original schema) and a heatmap PNG.

    Example: jaxnets reinit resnet20 --weights resnet20-12fca82f.th --inits-from inits.txt --rand --data cifar10:DIR
    """
    opts = resolve_options(ctx, given_only(dict(locals()), REINIT_ORIGINAL), "reinit")
    from jaxnets.ui import info

    reinit_spellings(opts)
    result = reinit_from_options(opts)
    if result.rows:
        _print_grid(result.rows, result.top1, result.model)
    info(f"wrote {result.files['json']} ({result.evaluations} evaluations, {result.seconds['grid']:.1f} s)")


def reinit_spellings(opts: dict) -> None:
    """reinit_layers.py's flags as the jaxnets options."""
    from jaxnets.data.resize import parse_upscale
    from jaxnets.methods.hyperplanes.snapshots import snapshot_metadata

    take_arch(opts)
    original_data(opts, opts["data"] is not None)
    meta = snapshot_metadata(opts["weights"])
    subsample = opts.pop("subsample_classes", None) or None
    if subsample is not None:
        stored = meta.get("class_list")
        if stored and len(stored) != subsample:
            raise JaxnetsError(f"--subsample-classes {subsample}: the snapshot was trained on {len(stored)} classes")
        _head_size(opts, subsample, "--subsample-classes")
        if not stored and opts["classes"] is None:  # train.py's default choice: the first N classes
            opts["classes"] = ",".join(map(str, range(subsample)))
    original_upscale(opts)
    size = parse_upscale(opts.pop("upscale", None), opts.pop("upscale_padding", None))
    if size is not None:  # the snapshot records the size it was trained at; it is evaluated at that size
        if "upscale" not in meta:
            raise JaxnetsError(f"--upscale: {opts['weights']} does not record its training size; reinit evaluates "
                               "upscaled data only for snapshots of `jaxnets train --upscale`")
        if parse_upscale(meta["upscale"], meta.get("upscale_padding")) != size:
            raise JaxnetsError(f"--upscale {size.size} (padding {size.padding}): the snapshot was trained with "
                               f"--upscale {meta['upscale']} --upscale-padding {meta.get('upscale_padding')}")
    drop_ignored_flags(opts, {k: ORIGINAL_IGNORED[k] for k in ("cuda", "workers", "results", "plots_dir", "log",
                                                                "class_sample_seed")})


def reinit_from_options(opts: Mapping[str, Any]) -> ReinitResult:
    """The flags → ReinitConfig, the donor list, the snapshot's model and test data opened by the
    library, then the library's reinit grid (files in ``--out``)."""
    from jaxnets.methods.hyperplanes.runner import reinit as run_reinit
    from jaxnets.methods.hyperplanes.snapshots import list_donors, open_snapshot
    from jaxnets.runtime import default_run_path, setup_jax

    config = ReinitConfig(**{k: opts[k] for k in REINIT_FLAGS})
    setup_jax()
    if not opts.get("weights"):
        raise JaxnetsError("reinit needs the trained model: --weights PATH")
    if not opts["inits_from"] and not config.rand:
        raise JaxnetsError("nothing to re-initialise from: give --inits-from LIST and/or --rand")
    donors = list_donors(opts["inits_from"], config.legacy_epoch_labels) if opts["inits_from"] else []
    if not donors and not config.rand:
        raise JaxnetsError(f"no snapshot listed in --inits-from {opts['inits_from']} exists, and "
                           "--rand is off: nothing to re-initialise from")
    _check_path(opts["weights"], "--weights")
    model, data = open_snapshot(opts["model"], opts["weights"], opts["data"], limit=opts["limit"],
                                classes=opts["classes"], num_classes=opts["num_classes"],
                                normalize=opts["normalize"], seed=config.seed)
    if data is None:
        raise JaxnetsError("no test data: pass --data (or use a jaxnets snapshot, whose metadata "
                           "names its data set)")
    keys = ("weights", "inits_from", "data", "limit", "classes", "normalize", "num_classes", "out")
    return run_reinit(model, data, config, run_dir=default_run_path(opts["out"], "reinit", model.name),
                      donors=donors, provenance=_provenance(opts, keys))


def _print_grid(rows: Mapping[str, list[float]], top1: float, arch: str) -> None:
    from jaxnets.ui import verbosity

    if verbosity() < 0:
        return
    width = len(next(iter(rows.values())))
    print(f"{arch}: baseline top-1 {top1:.2f} %; top-1 % after re-initialising layer 1..{width}")
    w = max(7, *(len(label) for label in rows))
    print(f"{'epoch':<{w}} " + " ".join(f"{i:>6}" for i in range(1, width + 1)))
    for label, row in rows.items():
        print(f"{label:<{w}} " + " ".join(f"{v:6.2f}" for v in row))


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    from jaxnets.cli.train_cmd import train

    # The paper's three commands; train's class parses train.py's value-less --upscale /
    # --upscale-padding / --pretrained.
    app.command("train", cls=TrainCommand)(train)
    app.command("projections", cls=ProjectionsCommand)(projections)
    app.command("reinit", cls=ReinitCommand)(reinit)
