"""`jaxnets probe run MODEL` / `jaxnets probe plot RESULT.json…`: the Sparsity Probe
(specs/sparsity-probe.md). Alpha-scores per layer from random-forest wavelets, KMeans metrics,
UMAP pictures. Defaults are the example notebook's settings; ``--preset original-cli`` gives the
original CLI's (trees 1, depth 15, seed 2, feature dimension 2500); flags given win over both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ClassesOpt,
    DataOpt,
    LimitOpt,
    ModelArg,
    NormOpt,
    OutOpt,
    WeightsOpt,
    resolve_options,
    run_options,
)
from jaxnets.methods.probe.config import ProbeConfig

DEFAULT = ProbeConfig()

probe_app = typer.Typer(help="Sparsity Probe: alpha-score per layer (random-forest wavelets), clustering, UMAP.",
                        no_args_is_help=True)


@probe_app.command("run")
@run_options
def run(
    ctx: typer.Context,
    model: ModelArg,
    weights: WeightsOpt = None,
    data: DataOpt = "digits",
    split: Annotated[str, typer.Option(help="Split to probe (the method uses the training set).")] = "train",
    limit: LimitOpt = None,
    classes: ClassesOpt = None,
    normalize: NormOpt = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the model's head (default: the registry's).")] = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated intermediate names ('input', 'features', submodule paths like layer1_0/conv1); default: the model's probe layers.")] = None,
    preset: Annotated[str, typer.Option(help="notebook (trees 5, depth 20, seed 1079, feature dim 1000) | original-cli (1, 15, 2, 2500).")] = "notebook",
    trees: Annotated[int | None, typer.Option(help="Trees in the forest (preset: 5).")] = None,
    depth: Annotated[int | None, typer.Option(help="Max tree depth; 0 or -1 = unlimited (preset: 20).")] = None,
    seed: Annotated[int | None, typer.Option(help="Forest and SVD seed (preset: 1079).")] = None,
    epsilon_1: Annotated[float | None, typer.Option("--epsilon-1", help="ε₁ in degrees; ε₂ = 4·ε₁ (preset: 0.1).")] = None,
    feature_dimension: Annotated[int | None, typer.Option(help="Reduce wider layers to this many SVD components (preset: 1000).")] = None,
    variant: Annotated[str, typer.Option(help="original (replicates the depth-1 and root-index bugs) | fixed.")] = DEFAULT.variant,
    svd: Annotated[str, typer.Option(help="sklearn (TruncatedSVD, parity) | jax (randomized, jitted) | exact (Gram eigh).")] = DEFAULT.svd,
    use_clustering: Annotated[bool, typer.Option("--use-clustering", help="KMeans metrics per layer and a UMAP grid.")] = False,
    only_umap: Annotated[bool, typer.Option("--only-umap", help="Only the UMAP grid (no alphas, no result.json).")] = False,
    calc_test: Annotated[bool, typer.Option("--calc-test", help="Also the model's top-1 accuracy on the test split.")] = False,
    umap_points: Annotated[int, typer.Option(help="UMAP subsample size.")] = DEFAULT.umap_points,
    umap_faithful: Annotated[bool, typer.Option("--umap-faithful", help="Subsample with replacement from RandomState(2), as the original.")] = False,
    out: OutOpt = None,
    batch_size: BatchOpt = DEFAULT.batch_size,
    **run_options: Any,
) -> None:
    """Alpha-score of each layer → RUN/result.json, result.png (and clustering.png, umap.png).

    Example: jaxnets probe run resnet20 --weights ../shared/data/weights/resnet20-12fca82f.th --data cifar10:../shared/data/cifar10-exact-subset/cifar-10-batches-bin --feature-dimension 500
    """
    opts = resolve_options(ctx, dict(locals()), "probe")
    result = probe_from_options(opts)
    if not opts["only_umap"]:
        for lay in result.layers:
            alpha = "null" if lay.alpha_mean is None else f"{lay.alpha_mean:.4f}"
            print(f"{lay.index:>3} {lay.name:<24} alpha {alpha}")


def probe_from_options(opts: dict):
    """The flags → ProbeConfig, the model and data opened by the library, then the method's run."""
    from jaxnets.api import load, open_data
    from jaxnets.methods.probe.runner import run as run_probe
    from jaxnets.runtime import default_run_path
    from jaxnets.ui import warn

    settings = ("layers", "trees", "depth", "seed", "epsilon_1", "feature_dimension", "variant", "svd",
                "batch_size", "use_clustering", "only_umap", "umap_points", "umap_faithful")
    config = ProbeConfig.preset(opts["preset"], **{k: opts[k] for k in settings})
    data = open_data(opts["data"], opts["split"], limit=opts["limit"], classes=opts["classes"])
    model = load(opts["model"], opts["weights"], num_classes=opts["num_classes"], normalize=opts["normalize"],
                 data=data)
    if opts["weights"] is None:
        warn(f"no --weights given: probing a randomly initialised {model.name} (seed 0)")
    test = open_data(opts["data"], "test") if opts["calc_test"] else None
    return run_probe(model, data, config, run_dir=default_run_path(opts["out"], "probe", model.name),
                     test_data=test, preset=opts["preset"])


@probe_app.command("plot")
def plot(
    results: Annotated[list[Path], typer.Argument(help="result.json files (or run folders) to overlay.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("probe_overlay.png"),
    labels: Annotated[str | None, typer.Option(help="Comma-separated legend labels (default: the run folder names).")] = None,
    fill: Annotated[bool, typer.Option("--fill", help="Shade each run's ε band.")] = False,
) -> None:
    """Overlay the mean alpha per layer (and clustering metrics) of several probe runs.

    Example: jaxnets probe plot runs/probe/a/result.json runs/probe/b/result.json -o compare.png
    """
    import json

    from jaxnets.errors import JaxnetsError
    from jaxnets.methods.probe.plots import plot_overlay
    from jaxnets.runtime import claim_output_file

    out = claim_output_file(out, "--out")
    docs, names = [], []
    for path in results:
        file = path / "result.json" if path.is_dir() else path
        try:
            doc = json.loads(file.read_text())
        except FileNotFoundError:
            raise JaxnetsError(f"result file not found: {file}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise JaxnetsError(f"{file} is not a JSON file") from None
        if not isinstance(doc, dict) or not {"alphas", "sizes"} <= set(doc):
            raise JaxnetsError(f"{file} is not a probe result (needs 'alphas' and 'sizes')")
        docs.append(doc)
        names.append(file.parent.name or str(file))
    if labels:
        names = [s.strip() for s in labels.split(",")]
        if len(names) != len(docs):
            raise JaxnetsError(f"--labels gives {len(names)} labels for {len(docs)} results")
    plot_overlay(docs, names, out, fill=fill)
    print(f"wrote {out}")


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.add_typer(probe_app, name="probe")
