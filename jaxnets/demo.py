"""The offline demo: train a small CNN on scikit-learn's digits, then run all five methods on it.

Every stage writes its own sub-folder of the demo folder; ``report.md`` gathers one table of
headline numbers per method with links to every plot, and ``summary.json`` the same numbers as
JSON. Everything is seeded, so the same ``seed`` gives the same report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jaxnets.errors import JaxnetsError
from jaxnets.rundir import RunDir

SUMMARY_SCHEMA = "jaxnets.demo/1"
METHODS = ("decompose", "wfn", "probe", "seam", "hyperplanes")


def _train_options(out: Path, epochs: int, seed: int, quiet: bool) -> dict[str, Any]:
    # The hyperplane paper's train.py settings for a small model, with Adam for a quick fit.
    return {
        "model": "digits_cnn", "data": "digits", "epochs": epochs, "batch_size": 64, "optimizer": "adam",
        "lr": 0.003, "lr_step": 0, "lr_decay": 0.0, "weight_decay": 0.0, "momentum": 0.9,
        "augmentation": False, "noise": 0.0, "noise_seed": None, "subsample_classes": 0,
        "class_sample_seed": None, "split": 0.0, "stratified": False, "split_seed": None, "shuffle": True,
        "snapshot_every": max(1, epochs // 3), "snapshot_all_until": 0, "kill_plateaus": False,
        "train_acc": True, "pretrained": None, "evaluate": False, "evaluate_train": False,
        "unnormalize": False, "normalize": None, "num_classes": None, "limit": None, "classes": None,
        "precision": "fp32", "resume": None, "checkpoint_every": None, "out": out, "seed": seed,
        "devices": "1", "config": None, "verbose": 0, "quiet": quiet,
    }


def _pngs(folder: Path, root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in folder.rglob("*.png"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "—"
    return str(value)


def _table(rows: Mapping[str, Any]) -> list[str]:
    return ["| quantity | value |", "|---|---|", *[f"| {k} | {_fmt(v)} |" for k, v in rows.items()]]


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def run_demo(out: str | Path | None = None, *, seed: int = 0, epochs: int = 15,
             methods: tuple[str, ...] = METHODS, quick: bool = False, quiet: bool = False) -> dict:
    """Train ``digits_cnn`` on digits and run the selected methods on it; returns the summary.

    ``quick`` shortens every stage (fewer epochs and rounds) for tests.
    """
    from jaxnets.train.command import run_train
    from jaxnets.ui import info

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise JaxnetsError(f"unknown demo method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    run_dir = RunDir.create(out, "demo")
    out = run_dir.path

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train = run_train(_train_options(out / "train", epochs, seed, quiet))
    timings["train"] = time.perf_counter() - t0
    weights = Path(train["final_snapshot"])
    summary: dict[str, Any] = {
        "schema": SUMMARY_SCHEMA, "seed": seed, "quick": quick,
        "train": {"model": "digits_cnn", "epochs": train["epochs_completed"], "test_top1": train["test_top1"]},
    }
    stages: dict[str, Callable[[], dict]] = {
        "decompose": lambda: _decompose(out / "decompose", weights, seed, quick),
        "wfn": lambda: _wfn(out / "wfn", weights, seed, quick),
        "probe": lambda: _probe(out / "probe", weights, seed, quick),
        "seam": lambda: _seam(out / "seam", weights, seed, quick),
        "hyperplanes": lambda: _hyperplanes(out / "hyperplanes", Path(train["snapshots"]), seed),
    }
    for name in METHODS:
        if name not in methods:
            continue
        info(f"demo: {name} …")
        t0 = time.perf_counter()
        summary[name] = _jsonable(stages[name]())
        timings[name] = time.perf_counter() - t0
    summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    summary["report"] = str(out / "report.md")
    run_dir.write_json("summary.json", summary)
    (out / "report.md").write_text(_report(summary, out))
    return summary


# --------------------------------------------------------------------------- the five stages


def _decompose(out: Path, weights: Path, seed: int, quick: bool) -> dict:
    from jaxnets.methods.decompose.runners import run_digits

    r = run_digits(out, weights=weights, seed=seed, finetune_epochs=1, k=5)
    return {"k": 5, **r}


def _wfn(out: Path, weights: Path, seed: int, quick: bool) -> dict:
    from jaxnets.api import load, open_data
    from jaxnets.methods.wfn import WFNConfig, run

    config = WFNConfig(seed=seed, percentages=(0.5, 0.9, 1.0) if quick else (0.3, 0.6, 0.8, 0.9, 0.95, 1.0),
                       fixing_epochs=1 if quick else 2, lr=1e-4)
    train, test = open_data("digits", "train"), open_data("digits", "test")
    model = load("digits_cnn", weights, data=train)
    return run(model, train, config, run_dir=out, test_data=test,
               provenance={"weights": str(weights), "data": "digits"}).summary


def _probe(out: Path, weights: Path, seed: int, quick: bool) -> dict:
    from jaxnets.methods.probe.runner import probe

    return probe("digits_cnn", "digits", weights=weights, out=out)


def _seam(out: Path, weights: Path, seed: int, quick: bool) -> dict:
    from jaxnets.methods.seam.runner import run_digits
    from jaxnets.models.api import load_weights, resolve

    spec = resolve("digits_cnn")
    variables = load_weights(spec, spec.create(), weights)
    return run_digits(out, variables=variables, seed=seed, epochs=5 if quick else 10)


def _hyperplanes(out: Path, snapshots: Path, seed: int) -> dict:
    from jaxnets.methods.hyperplanes.runner import run_study

    return run_study(snapshots, out, model="digits_cnn", data="digits", seed=seed)


# --------------------------------------------------------------------------- report

def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * float(x):.2f} %"


def _headlines(name: str, r: Mapping[str, Any]) -> dict[str, Any]:
    """The few numbers a person looks at first, labelled."""
    g = r.get
    if name == "decompose":
        total = g("essential_total")
        return {
            "full model test top-1": _pct(g("full_top1")),
            f"decomposed head (k={g('k')}) test top-1": _pct(g("decomposed_top1")),
            "after 1 finetuning epoch": _pct(g("finetuned_top1")),
            "essential: correct with influential features noised": f"{g('essential_noise_at_inf')}/{total}",
            "essential: correct with the other features noised": f"{g('essential_noise_at_noninf')}/{total}",
            "mutual information of the index sets (mean, diagonal incl.)": _fmt(g("mutual_info")),
        }
    if name == "wfn":
        return {
            "baseline test top-1": _pct(g("baseline_accuracy")),
            "after weight fixing": _pct(g("final_accuracy")),
            "weights fixed": _pct(g("fixed_fraction")),
            "unique values in the network": _fmt(g("unique_all")),
            "entropy (bits)": _fmt(g("entropy_all")),
            "compact file vs float32": f"{g('compact_bytes')} B vs {g('float32_bytes')} B",
        }
    if name == "probe":
        by_layer = g("alpha_by_layer") or {}
        return {f"alpha — {layer}": ("—" if a is None else f"{a:.4f}") for layer, a in by_layer.items()}
    if name == "seam":
        return {
            "original model on the binary problem": _pct(g("acc_pre")),
            "re-engineered module": _pct(g("acc")),
            "weights retained": _pct(g("retention")),
            "FLOPs (sparse / dense)": f"{g('flops_sparse')} / {g('flops_dense')}",
        }
    if name == "hyperplanes":
        return {
            "mass P(projection ≤ 0), random init": _fmt(g("init_net_mass")),
            "mass P(projection ≤ 0), trained": _fmt(g("trained_net_mass")),
            "test top-1 of the trained model": f"{g('top1_test'):.2f} %" if g("top1_test") is not None else "—",
            "own-weights reinit row reproduces the baseline": _fmt(g("own_weights_row_exact")),
            "reinit grid: evaluations / compilations": f"{g('evaluations')} / {g('compilations')}",
        }
    return {k: v for k, v in r.items() if not isinstance(v, (dict, list))}


def _report(summary: Mapping[str, Any], out: Path) -> str:
    titles = {
        "decompose": "Decomposing the Deep — influential filters, decomposed head, finetune, essential, MI",
        "wfn": "Weight Fixing Networks — codebook clustering",
        "probe": "Sparsity Probe — alpha per layer",
        "seam": "SeaM — re-engineered binary module",
        "hyperplanes": "Hyperplane arrangements — projections and layer re-initialisation",
    }
    t = summary["train"]
    lines = [
        "# jaxnets demo report", "",
        "Data: scikit-learn digits (1437 train / 360 test, 8×8 grey). Model: `digits_cnn`, trained with "
        f"`jaxnets train` for {t['epochs']} epochs (seed {summary['seed']}). Every method below ran on that "
        "trained model; its full output is in the sub-folder of the same name and in `summary.json`.", "",
        "## Training", "", *_table({"test top-1": _pct(t["test_top1"])}), "",
        "Files: [train/metrics.jsonl](train/metrics.jsonl), [train/results.json](train/results.json), "
        "snapshots in `train/snapshots/`.", "",
    ]
    for name in METHODS:
        if name not in summary:
            continue
        lines += [f"## {titles[name]}", "", *_table(_headlines(name, summary[name])), ""]
        plots = _pngs(out / name, out)
        if plots:
            lines += ["Plots: " + " · ".join(f"[{Path(p).name}]({p})" for p in plots), ""]
    secs = summary.get("seconds", {})
    lines += ["## Time", "", *_table({k: f"{v:.1f} s" for k, v in secs.items()}), ""]
    return "\n".join(lines)
