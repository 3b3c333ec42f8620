"""`jaxnets probe run MODEL` / `jaxnets probe plot RESULT.json…`: the Sparsity Probe
(specs/sparsity-probe.md). Alpha-scores per layer from random-forest wavelets, KMeans metrics,
UMAP pictures. Defaults are the example notebook's settings; ``--preset original-cli`` gives the
original CLI's (trees 1, depth 15, seed 2, feature dimension 2500); flags given win over both.

The original spellings work as aliases, so a ``DL_smoothness.py`` command line runs after
``jaxnets probe run MODEL --data …``: ``--epsilon_1``, ``--feature_dimension``, ``--batch_size``,
``--use_clustering``, ``--only_umap``, ``--calc_test``, ``--output_folder``; ``--env_name`` and
``--checkpoints_folder`` are accepted and ignored with a warning (MODEL and ``--data`` say what
the env module did). ``probe plot`` takes ``plot_DL_json_results.py``'s ``--main_dir`` and
``--checkpoints``/``--list``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jaxnets.cli.common import (
    ClassesOpt,
    DataOpt,
    LimitOpt,
    ModelArg,
    NormOpt,
    WeightsOpt,
    drop_ignored_flags,
    resolve_options,
    run_options,
)
from jaxnets.errors import JaxnetsError
from jaxnets.methods.probe.config import PlotConfig, ProbeConfig

DEFAULT = ProbeConfig()
PLOT = PlotConfig()

OutOpt = Annotated[Path | None, typer.Option("--out", "-o", "--output-folder", "--output_folder", help="Run folder (default runs/<command>/<model>-<time>).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", "--batch_size", "-b", help="Batch size of the forward passes.")]
# Original flags with no meaning here: option name → why it is ignored (one warning line each).
IGNORED_FLAGS = {
    "env_name": "--env_name is ignored: MODEL and --data say what the original's environment module did "
                "(cifar10_env: a CIFAR ResNet-18 on CIFAR-10, e.g. `resnet18_cifar --data cifar10:DIR`)",
    "checkpoints_folder": "--checkpoints_folder is ignored (the original's driver does not use it either); "
                          "pass the weights with --weights",
}

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
    epsilon_1: Annotated[float | None, typer.Option("--epsilon-1", "--epsilon_1", help="ε₁ in degrees; ε₂ = 4·ε₁ (preset: 0.1).")] = None,
    feature_dimension: Annotated[int | None, typer.Option("--feature-dimension", "--feature_dimension", help="Reduce wider layers to this many SVD components (preset: 1000).")] = None,
    variant: Annotated[str, typer.Option(help="original (replicates the depth-1 and root-index bugs) | fixed.")] = DEFAULT.variant,
    svd: Annotated[str, typer.Option(help="sklearn (TruncatedSVD, parity) | jax (randomized, jitted) | exact (Gram eigh).")] = DEFAULT.svd,
    use_clustering: Annotated[bool, typer.Option("--use-clustering", "--use_clustering", help="KMeans metrics per layer and UMAP pictures.")] = DEFAULT.use_clustering,
    only_umap: Annotated[bool, typer.Option("--only-umap", "--only_umap", help="Only the UMAP pictures, <layer>.png per layer and umap.png (no alphas, no result.json).")] = DEFAULT.only_umap,
    calc_test: Annotated[bool, typer.Option("--calc-test", "--calc_test", help="Also the model's top-1 accuracy on the test split.")] = False,
    umap_points: Annotated[int, typer.Option(help="UMAP subsample size.")] = DEFAULT.umap_points,
    umap_faithful: Annotated[bool, typer.Option("--umap-faithful", help="Subsample with replacement from RandomState(2), as the original.")] = DEFAULT.umap_faithful,
    out: OutOpt = None,
    batch_size: BatchOpt = DEFAULT.batch_size,
    env_name: Annotated[str | None, typer.Option("--env-name", "--env_name", hidden=True, help="Original flag; ignored.")] = None,
    checkpoints_folder: Annotated[str | None, typer.Option("--checkpoints-folder", "--checkpoints_folder", hidden=True, help="Original flag; ignored.")] = None,
    **run_options: Any,
) -> None:
    """Alpha-score of each layer → RUN/result.json, result.png (and clustering.png, UMAP pictures).

    Example: jaxnets probe run resnet20 --weights ../shared/data/weights/resnet20-12fca82f.th --data cifar10:../shared/data/cifar10-exact-subset/cifar-10-batches-bin --feature-dimension 500
    """
    opts = resolve_options(ctx, dict(locals()), "probe")
    drop_ignored_flags(opts, IGNORED_FLAGS)
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
    results: Annotated[list[Path] | None, typer.Argument(help="result.json files (or run folders) to overlay.")] = None,
    main_dir: Annotated[Path | None, typer.Option("--main-dir", "--main_dir", help="Also every probe result .json below this folder (recursively, sorted by path; other JSON files are skipped).")] = None,
    checkpoints: Annotated[list[Path] | None, typer.Option("--checkpoints", "--list", help="Result files, as the original's --checkpoints/--list (its further files land in RESULTS, in order).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("probe_overlay.png"),
    labels: Annotated[str | None, typer.Option(help="Comma-separated legend labels (default: the run folder names).")] = None,
    fill: Annotated[bool, typer.Option("--fill", "--add-fill", "--add_fill", help="Shade each run's ε band.")] = PLOT.fill,
    plot_test: Annotated[bool, typer.Option("--plot-test/--no-plot-test", help="A test-accuracy bar per run (runs with test_stats).")] = PLOT.plot_test,
    remove_layers: Annotated[int, typer.Option("--remove-layers", "--remove_layers", help="Drop this many layers at the end of every result.")] = PLOT.remove_layers,
    remove_begin: Annotated[int, typer.Option("--remove-begin", "--remove_begin", help="Drop this many layers at the start of every result.")] = PLOT.remove_begin,
) -> None:
    """Overlay the mean alpha per layer, the test accuracy and the clustering metrics of several probe runs.

    Example: jaxnets probe plot runs/probe/a/result.json runs/probe/b/result.json -o compare.png
    """
    from jaxnets.methods.probe.plots import plot_overlay
    from jaxnets.runtime import claim_output_file

    config = PlotConfig(fill=fill, plot_test=plot_test, remove_layers=remove_layers, remove_begin=remove_begin)
    # `--checkpoints a b c` (argparse nargs='+') reaches click as --checkpoints a plus RESULTS b c.
    files = [path / "result.json" if path.is_dir() else path for path in [*(checkpoints or []), *(results or [])]]
    docs = [_read_result(file) for file in files]
    if main_dir is not None:
        # Every probe result below it; other JSON files (a run folder's config.json) are skipped.
        if not main_dir.is_dir():
            raise JaxnetsError(f"--main-dir {main_dir} is not a folder")
        found = [(file, _read_result(file, strict=False)) for file in sorted(main_dir.glob("**/*.json"))]
        found = [(file, doc) for file, doc in found if doc is not None]
        if not found:
            raise JaxnetsError(f"--main-dir {main_dir} holds no probe result.json")
        files += [file for file, _ in found]
        docs += [doc for _, doc in found]
    if not files:
        raise JaxnetsError("probe plot needs result.json files, run folders or --main-dir DIR")
    names = [file.parent.name or str(file) for file in files]
    if labels:
        names = [s.strip() for s in labels.split(",")]
        if len(names) != len(docs):
            raise JaxnetsError(f"--labels gives {len(names)} labels for {len(docs)} results")
    out = claim_output_file(out, "--out")
    for s in plot_overlay(docs, names, out, config):
        test = "" if s.test_top1 is None else f", test top-1 {s.test_top1:.4f}"
        print(f"{s.label}: layers {s.layers[0]}..{s.layers[-1]}, mean alpha "
              f"{' '.join(f'{a:.4f}' for a in s.alpha_mean)}{test}")
    print(f"wrote {out}")


def _read_result(file: Path, strict: bool = True) -> dict | None:
    """A probe result.json (the original's or jaxnets'); otherwise a one-line error, or None when
    not ``strict``."""
    import json

    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise JaxnetsError(f"result file not found: {file}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and {"alphas", "sizes"} <= set(doc):
        return doc
    if not strict:
        return None
    if doc is None:
        raise JaxnetsError(f"{file} is not a JSON file")
    raise JaxnetsError(f"{file} is not a probe result (needs 'alphas' and 'sizes')")


def register(app: typer.Typer) -> None:
    """Add this method's commands to the top-level app."""
    app.add_typer(probe_app, name="probe")
