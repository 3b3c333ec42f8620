"""`jaxnets wfn run|stats`: Weight Fixing Networks (specs/weight-fixing-networks.md).

The original's flag spellings work as aliases (``--distance_allowed``, ``--optimiser``,
``--regularistion_ratio``, ``--calculation_type``, ``--bn_inc 1``, …).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxnets.cli.common import (
    BatchOpt,
    ConfigOpt,
    DataOpt,
    DevicesOpt,
    DryRunOpt,
    OutOpt,
    QuietOpt,
    SeedOpt,
    VerboseOpt,
    resolve_options,
)

wfn_app = typer.Typer(help="Weight Fixing Networks: a whole-network codebook of (sums of) powers of two.",
                      no_args_is_help=True)


@wfn_app.command("run")
def run(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Registered model name (see `jaxnets models`).")],
    weights: Annotated[Path | None, typer.Option("--weights", "-w", help="Pretrained checkpoint (PyTorch, .npz or jaxnets).")] = None,
    data: DataOpt = "digits",
    distance_allowed: Annotated[float, typer.Option("--distance-allowed", "--distance_allowed", help="δ, the relative tolerance (≥ 0).")] = 0.0075,
    percentages: Annotated[str, typer.Option("--percentages", help="Fractions fixed after each round, increasing, ending at 1.0 (e.g. '0.5,0.9,1.0').")] = ",".join(map(str, (0.3, 0.6, 0.8, 0.9, 0.95, 0.975, 0.99, 0.9975, 0.999, 1.0))),
    calculation_type: Annotated[str, typer.Option("--calculation-type", "--calculation_type", help="relative | euclidean.")] = "relative",
    zero_distance: Annotated[float, typer.Option("--zero-distance", "--zero_distance", help="γ0: |w| below it is pruned to 0.")] = 2.0 ** -7,
    regularisation_ratio: Annotated[float, typer.Option("--regularisation-ratio", "--regularistion-ratio", "--regularisation_ratio", "--regularistion_ratio", help="ρ: the regulariser's share of the loss.")] = 0.4,
    bn_inc: Annotated[bool, typer.Option("--bn-inc/--no-bn-inc", help="Also quantise BatchNorm γ/β.")] = False,
    bn_inc_value: Annotated[float | None, typer.Option("--bn_inc", hidden=True, help="Original spelling: non-zero = on.")] = None,
    first_epoch: Annotated[int, typer.Option("--first-epoch", "--first_epoch", help="Epochs before the first clustering.")] = 0,
    fixing_epochs: Annotated[int, typer.Option("--fixing-epochs", "--fixing_epochs", help="Epochs before every later clustering.")] = 3,
    optimizer: Annotated[str, typer.Option("--optimizer", "--optimiser", help="adam | sgd (momentum 0.9, weight decay 5e-4).")] = "adam",
    lr: Annotated[float, typer.Option("--lr", help="Learning rate.")] = 2e-5,
    distance_schedule: Annotated[str, typer.Option("--distance-schedule", help="linear (a_t = max(δ, δ(R−t)), faithful) | constant.")] = "linear",
    scheduler: Annotated[str, typer.Option("--scheduler", hidden=True, help="Ignored, as in the original.")] = "None",
    experiment_name: Annotated[str, typer.Option("--experiment-name", "--experiment_name", help="Name stored in results.json.")] = "wfn",
    pretrain_epochs: Annotated[int, typer.Option(help="Train from scratch this many epochs first (when there are no --weights).")] = 0,
    augment: Annotated[bool, typer.Option("--augment/--no-augment", help="CIFAR flip + pad-4 crop while fine-tuning.")] = False,
    limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    test_limit: Annotated[int | None, typer.Option(help="Use only the first N test images.")] = None,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Normalisation override (default: the model's).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="'auto' (latest round), a round index, or a percentage (original style).")] = None,
    batch_size: BatchOpt = 128,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    devices: DevicesOpt = "1",
    config: ConfigOpt = None,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Fix every weight of a trained model to a small codebook in rounds (fine-tune, cluster, freeze).

    Example: jaxnets wfn run digits_cnn --data digits --pretrain-epochs 5 --percentages 0.5,0.9,1.0 --fixing-epochs 1 --lr 1e-3
    """
    opts = resolve_options(ctx, dict(locals()), "wfn")
    for key in ("config", "verbose", "quiet"):
        opts.pop(key, None)
    value = opts.pop("bn_inc_value")
    if value is not None:
        opts["bn_inc"] = bool(value)
    from jaxnets.methods.wfn.runner import run_wfn

    run_wfn(opts)


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
