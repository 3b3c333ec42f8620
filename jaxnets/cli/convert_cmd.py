"""`jaxnets convert`: a checkpoint → jaxnets format (or back to PyTorch / npz), with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from jaxnets.cli.common import ModelArg, OutOpt, resolve_options, run_options
from jaxnets.convert import run_convert


@run_options
def convert(
    ctx: typer.Context,
    model: ModelArg,
    checkpoint: Annotated[Path, typer.Argument(help="PyTorch .th/.pth/.pt/.tar, .safetensors (or its .safetensors.index.json), .npz, or a jaxnets checkpoint folder.")],
    to: Annotated[str, typer.Option("--to", help="Output format: jaxnets | torch | safetensors | npz.")] = "jaxnets",
    keys: Annotated[str | None, typer.Option("--keys", help="Names to write with --to torch/safetensors: torchvision | timm (VGG, ResNet, DenseNet), official | timm (Mixer); default: the model's native. The input's naming is detected.")] = None,
    normalize: Annotated[str | None, typer.Option("--normalize", help="Record this normalisation in the output (a name or 'm1,m2,m3/s1,s2,s3'); default: the checkpoint's own record or known weights, else the model's.")] = None,
    num_classes: Annotated[int | None, typer.Option(help="Classes of the head (default: the registry's).")] = None,
    out: OutOpt = None,
    **run_options: Any,
) -> None:
    """Convert a checkpoint strictly (every tensor used, every leaf filled) and report parity.

    The report (conversion.json) lists tensor and parameter counts, the exact round trip back to
    the source layout, and the logits on a fixed probe input.

    Example: jaxnets convert resnet20 resnet20-12fca82f.th --out runs/resnet20-converted
    """
    opts = resolve_options(ctx, dict(locals()), "convert")
    run_convert(opts)
