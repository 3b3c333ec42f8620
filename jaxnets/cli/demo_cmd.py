"""`jaxnets demo`: the main job on embedded data — train a small CNN on scikit-learn's digits,
evaluate it, and write a run folder with a report. Needs no download."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxnets.cli.common import QuietOpt, SeedOpt, VerboseOpt


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder of the demo.")] = Path("runs/demo"),
    epochs: Annotated[int, typer.Option(help="Training epochs of the digits CNN.")] = 15,
    seed: SeedOpt = 0,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Train digits_cnn on scikit-learn's digits, evaluate it, write OUT/report.md.

    Example: jaxnets demo --out runs/demo
    """
    import json
    import shutil

    from jaxnets.cli.train_cmd import run_train
    from jaxnets.ui import set_verbosity

    set_verbosity(verbose, quiet)
    out = out.absolute()
    train_dir = out / "train"
    if train_dir.exists():
        # The demo owns its folder: a rerun replaces its own previous outputs only.
        if not (out / "report.md").exists():
            from jaxnets.errors import JaxnetsError

            raise JaxnetsError(f"{out} holds something other than a demo; choose another --out")
        shutil.rmtree(train_dir)
    options = {
        "model": "digits_cnn", "data": "digits", "epochs": epochs, "batch_size": 64, "optimizer": "adam",
        "lr": 0.003, "lr_step": 0, "lr_decay": 0.0, "weight_decay": 0.0, "momentum": 0.9, "augmentation": False,
        "noise": 0.0, "noise_seed": None, "subsample_classes": 0, "class_sample_seed": None, "split": 0.0,
        "stratified": False, "split_seed": None, "shuffle": True, "snapshot_every": 5, "snapshot_all_until": 0,
        "kill_plateaus": False, "train_acc": True, "pretrained": None, "evaluate": False, "evaluate_train": False,
        "unnormalize": False, "normalize": None, "num_classes": None, "limit": None, "classes": None,
        "precision": "fp32", "resume": None, "checkpoint_every": None, "out": train_dir, "seed": seed,
        "devices": "1", "config": None, "verbose": verbose, "quiet": quiet,
    }
    report = run_train(options)
    rows = [r for r in report["history"] if "test_top1" in r]
    lines = [
        "# jaxnets demo report", "",
        "Data: scikit-learn digits (1437 train / 360 test, 8×8 grayscale). Model: `digits_cnn`.", "",
        "## Training (`jaxnets train`)", "",
        "| epoch | train loss | train acc | test top-1 |", "|---|---|---|---|",
        *[f"| {r['epoch'] + 1} | {r.get('train_loss', float('nan')):.4f} | {r.get('train_acc', float('nan')):.4f} | "
          f"{100 * r['test_top1']:.2f} % |" for r in rows],
        "", f"**Final test top-1: {100 * report['test_top1']:.2f} %** after {report['epochs_completed']} epochs.", "",
        "Files: [train/metrics.jsonl](train/metrics.jsonl), [train/results.json](train/results.json), "
        "snapshots in `train/snapshots/`.", "",
    ]
    (out / "report.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps({"digits_cnn_test_top1": report["test_top1"]}, indent=2))
    print(f"demo report: {out / 'report.md'}")
