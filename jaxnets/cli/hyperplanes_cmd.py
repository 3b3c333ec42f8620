"""`jaxnets projections` and `jaxnets reinit`: the hyperplane-arrangement tools
(specs/hyperplane-arrangements.md §2, §3). A thin adapter: the flags build a ProjectionsConfig /
ReinitConfig (their defaults are the Configs'), the snapshot's model and test data are opened by
the library (jaxnets.methods.hyperplanes.snapshots.open_snapshot, over jaxnets.api.load), the
library's projections / reinit compute and write, and the command prints the table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ClassesOpt,
    LimitOpt,
    OutOpt,
    SeedOpt,
    resolve_options,
    run_options,
)
from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.methods.hyperplanes.config import ProjectionsConfig, ReinitConfig

if TYPE_CHECKING:  # the runner imports JAX: only for the hints (start-up time)
    from jaxnets.methods.hyperplanes.runner import ProjectionsResult, ReinitResult

PROJECTIONS_DEFAULT = ProjectionsConfig()
REINIT_DEFAULT = ReinitConfig()

ModelArg = Annotated[str, typer.Argument(help="Registered model name (see `jaxnets models`).")]
DataOptional = Annotated[str | None, typer.Option("--data", "-d", help="Data spec (digits | cifar10:DIR | …); default: the snapshot's own data set.")]
NumClassesOpt = Annotated[int | None, typer.Option(help="Classes of the head (default: snapshot metadata, else the data's, else the registry's).")]
RuleOpt = Annotated[str | None, typer.Option(help="Stage grouping: pool (the original: max-pools start stages) | stage (ResNets: layerN = stage N). Default per family.")]
LegacyOpt = Annotated[bool, typer.Option("--legacy-epoch-labels", help="The original's epoch labels (final .pt = E+1; reinit parses the full path).")]
PlotsOpt = Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots.")]


@run_options
def projections(
    ctx: typer.Context,
    model: ModelArg,
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Snapshot / checkpoint (jaxnets folder, .pt/.tar/.th, .npz). Without it: a random init with --seed.")] = None,
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
    **run_options: Any,
) -> None:
    """Projection statistics of each filter on the all-ones vector: per-layer mean and mass P(p ≤ 0),
    network aggregate, distance from init → RUN/<name>.json (the original schema), results.json, PNGs.

    Example: jaxnets projections lenet --weights runs/train/lenet/snapshots/lenet_final_30 --init-from runs/train/lenet/snapshots/lenet_init_0 --normalize
    """
    opts = resolve_options(ctx, dict(locals()), "projections")
    from jaxnets.ui import info

    result = projections_from_options(opts)
    _print_table(result.layers, result.report["net"], f"{result.model} — {result.name} (epoch {result.epoch})")
    info(f"wrote {result.files['json']}")


# Flags that are ProjectionsConfig / ReinitConfig fields (the rest say where the weights and the
# data come from, or how to run).
PROJECTIONS_FLAGS = ("normalize", "with_linear", "rule", "legacy_epoch_labels", "seed", "plots")
REINIT_FLAGS = ("rand", "batch_size", "include_bn", "include_linear", "rule", "legacy_epoch_labels", "vmin",
                "vmax", "seed", "plots")


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
    model: ModelArg,
    weights: Annotated[Path, typer.Option("--weights", "-w", help="The trained model (snapshot or checkpoint).")],
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
    **run_options: Any,
) -> None:
    """Layer re-initialisation robustness: swap each conv layer for an earlier snapshot's (or a
    fresh init's), evaluate top-1 → RUN/reinit_<name>.json (the original schema) and a heatmap PNG.

    Example: jaxnets reinit resnet20 --weights resnet20-12fca82f.th --inits-from inits.txt --rand --data cifar10:DIR
    """
    opts = resolve_options(ctx, dict(locals()), "reinit")
    from jaxnets.ui import info

    result = reinit_from_options(opts)
    if result.rows:
        _print_grid(result.rows, result.top1, result.model)
    info(f"wrote {result.files['json']} ({result.evaluations} evaluations, {result.seconds['grid']:.1f} s)")


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
    app.command("projections")(projections)
    app.command("reinit")(reinit)
