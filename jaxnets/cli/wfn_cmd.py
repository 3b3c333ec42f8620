"""`jaxnets wfn run|stats`: Weight Fixing Networks (specs/weight-fixing-networks.md).

The original's flag spellings work as aliases (``--distance_allowed``, ``--optimiser``,
``--regularistion_ratio``, ``--calculation_type``, ``--bn_inc 1``, …), and so do its
space-separated lists (``--percentages 0.3 0.6 1.0``, ``--distance_allowed 0.01 0.0075``).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from jaxnets.cli.common import (
    BatchOpt,
    CheckpointEveryOpt,
    DataOpt,
    DevicesOpt,
    OutOpt,
    PrecisionOpt,
    SeedOpt,
    WeightsOpt,
    data_of_dataset,
    is_number,
    load_config,
    resolve_options,
    run_options,
    take_model,
)
from jaxnets.errors import JaxnetsError
from jaxnets.methods.wfn.config import PROTOCOLS, WFNConfig, parse_deltas, protocol_settings

if TYPE_CHECKING:
    from jaxnets.methods.wfn.runner import WFNResult

DEFAULT = WFNConfig()
# The original's nargs="+" options: their space-separated values are joined into one.
LIST_FLAGS = ("--percentages", "--distance-allowed", "--distance_allowed")


def join_list_values(args: list[str], flags: Collection[str] = LIST_FLAGS) -> list[str]:
    """``--percentages 0.3 0.6 1.0`` → ``--percentages 0.3,0.6,1.0``: an option takes one value,
    so the original's unquoted lists would otherwise leave stray arguments."""
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":  # the rest are arguments
            out.extend(args[i - 1:])
            break
        name, eq, value = token.partition("=")
        if name not in flags or (not eq and i >= len(args)):
            out.append(token)
            continue
        values = [value] if eq else [args[i]]  # the option's own value, whatever it is
        i += 0 if eq else 1
        while i < len(args) and is_number(args[i]):
            values.append(args[i])
            i += 1
        out.extend([name, ",".join(values)])
    return out


class OriginalListsCommand(TyperCommand):
    """A command that accepts the original's space-separated lists (:func:`join_list_values`)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_list_values(args))


def _deltas_flag(value: Any) -> float | tuple[float, ...]:
    """``--distance-allowed``: one δ (a number, as the Config's field) or a list (one run each)."""
    deltas = parse_deltas(value)
    return deltas[0] if len(deltas) == 1 else deltas


def _untyped(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source is None or source.name == "DEFAULT"


def with_protocol(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The protocol's settings in place of the defaults left untouched (a typed flag, then a
    --config value, still win: resolve_options applies the file next)."""
    name = values["protocol"]
    if _untyped(ctx, "protocol"):
        name = load_config(values["run_options"].get("config"), "wfn").get("protocol", name)
    settings = protocol_settings(str(name))
    return {**values, **{k: v for k, v in settings.items() if _untyped(ctx, k)}}

wfn_app = typer.Typer(help="Weight Fixing Networks: a whole-network codebook of (sums of) powers of two.",
                      no_args_is_help=True)


@wfn_app.command("run", cls=OriginalListsCommand)
@run_options
def run(
    ctx: typer.Context,
    model_arg: Annotated[str | None, typer.Argument(metavar="MODEL", help="Registered model name (see `jaxnets models`); same as --model.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="The model (the original's spelling of MODEL).")] = None,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    dataset: Annotated[str | None, typer.Option("--dataset", help="The original's data set: cifar10 (with --data DIR: the CIFAR-10 python batches, cifar10-py:DIR) | imnet (imagefolder:DIR).")] = None,
    distance_allowed: Annotated[float, typer.Option("--distance-allowed", "--distance_allowed", parser=_deltas_flag, help="δ, the relative tolerance (≥ 0); several (0.01,0.0075 or 0.01 0.0075): one run each, in sub-folders delta_<δ>/.")] = DEFAULT.distance_allowed,
    percentages: Annotated[str, typer.Option("--percentages", help="Fractions fixed after each round, increasing, ending at 1.0 (e.g. 0.5,0.9,1.0 or 0.5 0.9 1.0).")] = ",".join(map(str, DEFAULT.percentages)),
    protocol: Annotated[str, typer.Option("--protocol", help=f"Training protocol: {' | '.join(PROTOCOLS)} (original-cifar: --augment, --val-split 5000, --bn-inc; flags given win).")] = "jaxnets",
    calculation_type: Annotated[str, typer.Option("--calculation-type", "--calculation_type", help="relative | euclidean.")] = DEFAULT.calculation_type,
    zero_distance: Annotated[float, typer.Option("--zero-distance", "--zero_distance", help="γ0: |w| below it is pruned to 0.")] = DEFAULT.zero_distance,
    regularisation_ratio: Annotated[float, typer.Option("--regularisation-ratio", "--regularistion-ratio", "--regularisation_ratio", "--regularistion_ratio", help="ρ: the regulariser's share of the loss.")] = DEFAULT.regularisation_ratio,
    bn_inc: Annotated[bool, typer.Option("--bn-inc/--no-bn-inc", help="Also quantise BatchNorm γ/β.")] = DEFAULT.bn_inc,
    bn_inc_value: Annotated[float | None, typer.Option("--bn_inc", hidden=True, help="Original spelling: non-zero = on.")] = None,
    first_epoch: Annotated[int, typer.Option("--first-epoch", "--first_epoch", help="Epochs before the first clustering.")] = DEFAULT.first_epoch,
    fixing_epochs: Annotated[int, typer.Option("--fixing-epochs", "--fixing_epochs", help="Epochs before every later clustering.")] = DEFAULT.fixing_epochs,
    optimizer: Annotated[str, typer.Option("--optimizer", "--optimiser", help="adam | sgd (momentum 0.9, weight decay 5e-4).")] = DEFAULT.optimizer,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = DEFAULT.lr,
    distance_schedule: Annotated[str, typer.Option("--distance-schedule", help="linear (a_t = max(δ, δ(R−t)), faithful) | constant.")] = DEFAULT.distance_schedule,
    scheduler: Annotated[str, typer.Option("--scheduler", hidden=True, help="Ignored, as in the original.")] = "None",
    experiment_name: Annotated[str, typer.Option("--experiment-name", "--experiment_name", help="Name stored in results.json.")] = DEFAULT.experiment_name,
    pretrain_epochs: Annotated[int, typer.Option(help="Train from scratch this many epochs first (when there are no --weights).")] = DEFAULT.pretrain_epochs,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="CIFAR flip + pad-4 crop while fine-tuning.")] = DEFAULT.augment,
    val_split: Annotated[int, typer.Option("--val-split", help="Hold out this many training images (seeded by --seed) and validate on them after every epoch (original CIFAR: 5000).")] = DEFAULT.val_split,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Use only the first N test images.")] = None,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Normalisation override (default: the model's).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="'auto' (latest round), a round index, or a percentage (original style).")] = None,
    batch_size: BatchOpt = DEFAULT.batch_size,
    precision: PrecisionOpt = DEFAULT.precision,
    checkpoint_every: CheckpointEveryOpt = DEFAULT.checkpoint_every,
    out: OutOpt = None,
    seed: SeedOpt = DEFAULT.seed,
    devices: DevicesOpt = "1",
    **run_options: Any,
) -> None:
    """Fix every weight of a trained model to a small codebook in rounds (fine-tune, cluster, freeze).

    Example: jaxnets wfn run digits_cnn --data digits --pretrain-epochs 5 --percentages 0.5,0.9,1.0 --fixing-epochs 1 --lr 1e-3
    """
    values = with_protocol(ctx, dict(locals()))
    take_model(values)  # MODEL or --model, before --dry-run shows the options
    values.pop("model_from_flag")
    opts = resolve_options(ctx, values, "wfn")
    for key in ("config", "verbose", "quiet"):
        opts.pop(key, None)
    value = opts.pop("bn_inc_value")
    if value is not None:
        opts["bn_inc"] = bool(value)
    dataset = opts.pop("dataset")
    if dataset is not None:
        if dataset.lower() not in DATASET_KINDS:
            raise JaxnetsError(f"--dataset {dataset}: use one of {', '.join(DATASET_KINDS)}")
        opts["data"] = data_of_dataset(dataset, DATASET_KINDS[dataset.lower()], opts["data"])
    for result in wfn_from_options(opts):  # one line per δ
        top5 = result.results["compressed_acc5"]
        print(f"{result.model.name}: WFN δ={result.results['distance_allowed']} → test top-1 "
              f"{100 * result.accuracy:.2f} %{f', top-5 {100 * top5:.2f} %' if top5 is not None else ''} "
              f"(baseline {100 * result.baseline_accuracy:.2f} %), {result.unique_values} unique values, "
              f"{result.results['compressed_entropy']:.3f} bits; run folder {result.run_dir}")


# The original's --dataset names → jaxnets data kinds (its loaders: torchvision's CIFAR10, an ImageNet folder).
DATASET_KINDS = {"cifar10": "cifar10-py", "imnet": "imagefolder", "imagenet": "imagefolder"}


# Flags that are WFNConfig fields (the rest say where the model and data come from, or how to run).
CONFIG_FLAGS = ("distance_allowed", "percentages", "calculation_type", "zero_distance", "regularisation_ratio",
                "bn_inc", "first_epoch", "fixing_epochs", "optimizer", "lr", "distance_schedule", "augment",
                "val_split", "pretrain_epochs", "batch_size", "seed", "experiment_name", "precision",
                "checkpoint_every")


def wfn_from_options(opts: dict) -> list[WFNResult]:
    """The flags → WFNConfig, model and data opened by the library, then WFN's run (one per δ)."""
    from jaxnets.api import load, open_data
    from jaxnets.methods.wfn.runner import run as run_wfn
    from jaxnets.methods.wfn.runner import run_deltas
    from jaxnets.runtime import default_run_path, parse_devices
    from jaxnets.ui import warn

    deltas = parse_deltas(opts["distance_allowed"])  # a TOML file gives one δ, a flag one or several
    config = WFNConfig(**{**{k: opts[k] for k in CONFIG_FLAGS}, "distance_allowed": deltas[0]})
    if str(opts["scheduler"]).lower() not in ("none", ""):
        warn("--scheduler is ignored (the original forces no LR schedule)")
    devices = parse_devices(opts["devices"])
    train = open_data(opts["data"], "train", limit=opts["limit"])
    test = open_data(opts["data"], "test", limit=opts["test_limit"])
    model = load(opts["model"], opts["weights"], num_classes=train.num_classes, normalize=opts["normalize"],
                 data=train, seed=config.seed)
    if opts["weights"] is None and config.pretrain_epochs == 0:
        warn("no --weights and --pretrain-epochs 0: WFN runs on an untrained model")
    provenance = {"weights": opts["weights"], "data": opts["data"], "limit": opts["limit"],
                  "test_limit": opts["test_limit"], "normalize": opts["normalize"], "protocol": opts["protocol"]}
    run_dir = default_run_path(opts["out"], "wfn", model.name)
    if len(deltas) > 1:
        return run_deltas(model, train, config, deltas, run_dir, test_data=test, resume=opts["resume"],
                          devices=devices, provenance=provenance)
    return [run_wfn(model, train, config, run_dir=run_dir, test_data=test, resume=opts["resume"], devices=devices,
                    provenance=provenance)]


@wfn_app.command("stats")
def stats(
    checkpoint: Annotated[Path, typer.Argument(help="PyTorch file, .npz, WFN compact file, or jaxnets checkpoint folder.")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name (for .npz / jaxnets checkpoints without one).")] = None,
    bn_inc: Annotated[bool, typer.Option("--bn-inc/--no-bn-inc", help="Count BatchNorm γ/β as quantisable.")] = True,
    per_tensor: Annotated[bool, typer.Option("--per-tensor", help="Also print unique counts per tensor.")] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the numbers to this JSON file.")] = None,
) -> None:
    """Unique-value counts and entropies (code and paper variants) of any model.

    Example: jaxnets wfn stats runs/demo/wfn/final_model.pth --model digits_cnn --per-tensor
    """
    from jaxnets.methods.wfn.runner_stats import checkpoint_stats
    from jaxnets.runtime import claim_output_file

    if json_out is not None:
        json_out = claim_output_file(json_out, "--json")
    result = checkpoint_stats(checkpoint, model=model, bn_inc=bn_inc)
    print(f"{checkpoint}: {result['count']} quantisable values in {result['tensors']} tensors")
    print(f"  all values : unique {result['unique_all']}, entropy {result['entropy_all']:.6f} bits "
          f"(zeros {result['zeros']})")
    print(f"  non-zero   : unique {result['unique_nonzero']}, entropy {result['entropy_nonzero']:.6f} bits")
    print(f"  paper §3.2 : unique {result['unique_nonzero_paper']}, entropy "
          f"{result['entropy_nonzero_paper']:.6f} bits over {result['paper_values']} values")
    if per_tensor:
        for name, n in result["per_tensor_unique"].items():
            print(f"    {name}: {n}")
    if json_out is not None:
        from jaxnets.runtime import write_json

        write_json(json_out, result)


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.add_typer(wfn_app, name="wfn")
