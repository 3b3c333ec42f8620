"""`jaxnets demo`: the main job on embedded data — train a small CNN on scikit-learn's digits and run
all five methods on it, writing a report with one table per method and every plot. No download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxnets.cli.common import QuietOpt, SeedOpt, VerboseOpt


def demo(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Run folder of the demo (new or empty; default runs/demo/<time>).")] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs of the digits CNN.")] = 15,
    methods: Annotated[str, typer.Option(help="Comma-separated subset of: decompose, wfn, probe, seam, hyperplanes.")] = "decompose,wfn,probe,seam,hyperplanes",
    quick: Annotated[bool, typer.Option("--quick", help="Shorter schedules everywhere (for tests).")] = False,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Train digits_cnn on scikit-learn's digits, run the five methods on it, write OUT/report.md.

    Example: jaxnets demo --out runs/demo
    """
    from jaxnets.demo import run_demo
    from jaxnets.ui import set_verbosity

    set_verbosity(verbose, quiet)
    if epochs < 1:
        from jaxnets.errors import JaxnetsError

        raise JaxnetsError(f"--epochs must be at least 1 (got {epochs})")
    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    summary = run_demo(out, seed=seed, epochs=epochs, methods=chosen, quick=quick, quiet=quiet)
    print(f"demo: digits_cnn test top-1 {100 * summary['train']['test_top1']:.2f} %; "
          f"report: {summary['report']}")
