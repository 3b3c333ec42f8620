"""Plain runners behind ``jaxnets projections`` / ``jaxnets reinit``, and a small study for the
demo (:func:`run_study`). Each takes an options dict and returns a summary dict."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxnets.errors import CheckpointError, JaxnetsError

PROJECTIONS_SCHEMA = "jaxnets.hyperplanes.projections/1"
REINIT_SCHEMA = "jaxnets.hyperplanes.reinit/1"
NO_PRETRAINED = ("lenet", "vgg19_orig", "mlp", "mlp_bn")  # the original silently ignored it (§7 #28)

PROJECTIONS_DEFAULTS: dict[str, Any] = {
    "weights": None, "pretrained": None, "init_from": None, "normalize": False,
    "with_linear": False, "seed": 0, "data": None, "num_classes": None, "rule": None,
    "legacy_epoch_labels": False, "plots": True, "out": None, "quiet": False, "verbose": 0,
}
REINIT_DEFAULTS: dict[str, Any] = {
    "inits_from": None, "rand": False, "data": None, "batch_size": 128, "seed": 0, "limit": None,
    "classes": None, "normalize": None, "num_classes": None, "include_bn": False,
    "include_linear": False, "legacy_epoch_labels": False, "vmin": None, "vmax": None,
    "rule": None, "plots": True, "out": None, "quiet": False, "verbose": 0,
}


@dataclass
class Loaded:
    spec: Any
    module: Any
    variables: dict
    meta: dict
    source: Any  # the test source (or None)
    dataset: str | None
    num_classes: int
    class_list: list[int] | None


def _metadata(path: str | Path | None) -> dict:
    from jaxnets.io import is_jaxnets_checkpoint, read_metadata

    return read_metadata(path) if path and is_jaxnets_checkpoint(path) else {}


def _check_path(path: str | Path | None, flag: str) -> None:
    if path is not None and not Path(path).exists():
        raise CheckpointError(f"{flag} {path}: file or folder not found")


def _dataset_name(data: str | None, class_list: list[int] | None, with_suffix: bool) -> str:
    if not data:
        return ""
    from jaxnets.data.spec import parse_data_spec

    spec = parse_data_spec(data)
    name = spec.name if spec.kind == "tfds" else spec.kind.replace("-py", "")
    return f"{name}_{len(class_list)}" if with_suffix and class_list else name


def load_model(model: str, weights: str | Path | None, *, data: str | None = None,
               num_classes: int | None = None, seed: int = 0, limit: int | None = None,
               classes: str | None = None, need_source: bool = False) -> Loaded:
    """Spec adapted to the data (channels), module, variables (weights or a random init),
    snapshot metadata and the test source. The data and class list default to the snapshot's
    metadata (the classes a run trained on are reused, never re-sampled: spec §7 #9)."""
    from jaxnets.data import splits
    from jaxnets.data.classes import parse_classes
    from jaxnets.data.pipeline import adapt_to_data
    from jaxnets.data.spec import open_source
    from jaxnets.models.api import init_variables, load_weights, resolve

    spec = resolve(model)
    _check_path(weights, "--weights")
    meta = _metadata(weights)
    if meta.get("model") not in (None, spec.name):
        raise CheckpointError(f"{weights} holds a '{meta['model']}' snapshot, not '{spec.name}'")
    data = data or meta.get("dataset")
    class_list = meta.get("class_list")
    source = None
    if data:  # also for projections: the data decides the input channels
        source = open_source(data, "test", limit=limit, classes=parse_classes(classes))
        if class_list:
            source = splits.relabel(source, class_list)
    n = num_classes or meta.get("num_classes") or (len(class_list) if class_list else None) \
        or (source.num_classes if source is not None else None) or spec.num_classes
    if source is not None:
        spec = adapt_to_data(spec, source, n)
    elif need_source:
        raise JaxnetsError("no test data: pass --data (or use a jaxnets snapshot, whose metadata "
                           "names its data set)")
    module = spec.create(n)
    variables = load_weights(spec, module, weights) if weights else init_variables(spec, module, seed)
    return Loaded(spec, module, dict(variables), meta, source, data, int(n), class_list)


def _snapshot_name(path: str | Path) -> str:
    from jaxnets.methods.hyperplanes.labels import _stem

    return _stem(Path(path))


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


# --------------------------------------------------------------------------------------------
# projections


def run_projections(opts: Mapping[str, Any]) -> dict:
    """Projection statistics of one weight source → ``RUN/<name>.json`` (the original schema),
    ``RUN/results.json`` (per-layer summary with extensions) and PNG plots."""
    from jaxnets.methods.hyperplanes import plots
    from jaxnets.methods.hyperplanes.labels import epoch_label
    from jaxnets.methods.hyperplanes.registry import registry_for
    from jaxnets.methods.hyperplanes.stats import layer_table, projections_report
    from jaxnets.models.api import load_weights, resolve
    from jaxnets.runtime import create_run_dir, setup_jax, write_json
    from jaxnets.train.logging import write_config
    from jaxnets.ui import info

    opts = {**PROJECTIONS_DEFAULTS, **opts}
    setup_jax()
    if opts["weights"] and opts["pretrained"]:
        raise JaxnetsError("give either --weights or --pretrained, not both")
    arch = resolve(opts["model"]).name
    if opts["pretrained"] and arch in NO_PRETRAINED:
        raise JaxnetsError(f"{arch} has no ImageNet-pretrained weights (--pretrained is for "
                           "alexnet and the torchvision VGGs)")
    _check_path(opts["init_from"], "--init-from")
    source_path = opts["pretrained"] or opts["weights"]
    ctx = load_model(opts["model"], source_path, data=opts["data"], num_classes=opts["num_classes"],
                     seed=opts["seed"])
    if opts["pretrained"]:
        name, epoch = f"pretrained_{arch}", "-1"
    elif opts["weights"]:
        name = _snapshot_name(opts["weights"])
        epoch = epoch_label(opts["weights"], tool="projections", legacy=opts["legacy_epoch_labels"])
    else:
        name, epoch = f"init_{arch}", "0"
    init_vars = None
    if opts["init_from"]:
        init_meta = _metadata(opts["init_from"])
        if init_meta.get("model") not in (None, ctx.spec.name):
            raise CheckpointError(f"--init-from {opts['init_from']} holds a "
                                  f"'{init_meta['model']}' snapshot, not '{ctx.spec.name}'")
        init_vars = load_weights(ctx.spec, ctx.module, opts["init_from"])
    layers = registry_for(ctx.spec, ctx.module, ctx.variables, rule=opts["rule"],
                          with_linear=opts["with_linear"])
    report = projections_report(ctx.variables["params"], layers, normalize=opts["normalize"],
                                with_linear=opts["with_linear"],
                                params_init=init_vars["params"] if init_vars else None)
    seed = ctx.meta.get("seed", opts["seed"])
    doc = {**report, "arch": arch, "dataset": _dataset_name(ctx.dataset, ctx.class_list, True)}
    if seed is not None:
        doc["seed"] = str(seed)
    doc["epoch"] = epoch
    run_dir = create_run_dir(opts["out"], "projections", arch)
    write_config(run_dir, opts, "projections")
    (run_dir / f"{name}.json").write_text(json.dumps(doc))  # compact, as the original
    recorded = [layer for layer in layers if layer.kind == "conv" or opts["with_linear"]]
    rows = layer_table(report, recorded)
    files = {"json": str(run_dir / f"{name}.json")}
    if opts["plots"]:
        title = f"{arch} {name} (epoch {epoch}){' normalised' if opts['normalize'] else ' raw sums'}"
        ref = None
        if init_vars is not None:
            ref = projections_report(init_vars["params"], layers, normalize=opts["normalize"],
                                     with_linear=opts["with_linear"])
        files["histograms"] = str(plots.plot_histograms(
            report, recorded, run_dir / f"{name}_histograms.png", reference=ref, title=title))
        series = {"init_from": ref, name: report} if ref is not None else {name: report}
        files["mass"] = str(plots.plot_mass(series, recorded, run_dir / f"{name}_mass.png",
                                            title=title))
    summary = {
        "schema": PROJECTIONS_SCHEMA, "model": arch, "name": name, "epoch": epoch,
        "weights": str(source_path or ""), "init_from": str(opts["init_from"] or ""),
        "normalize": bool(opts["normalize"]), "with_linear": bool(opts["with_linear"]),
        "rule": opts["rule"] or "default",
        "net": {"mass": report["net"]["mass"], "mean": report["net"]["mean"],
                "units": len(report["net"]["projections"])},
        "layers": rows, "layers_outside_null_band": sum(r["outside_null_band"] for r in rows),
        "run_dir": str(run_dir), "files": files,
    }
    write_json(run_dir / "results.json", summary)
    _print_table(rows, report["net"], f"{arch} — {name} (epoch {epoch})")
    info(f"wrote {run_dir / (name + '.json')}")
    return summary


# --------------------------------------------------------------------------------------------
# reinit


def _list_donors(inits_from: str | Path, legacy: bool) -> list[tuple[str, Path]]:
    """(label, path) per donor in list order; missing entries skipped with a warning. A folder
    stands for every jaxnets snapshot in it, ordered by epoch."""
    from jaxnets.io import is_jaxnets_checkpoint
    from jaxnets.methods.hyperplanes.labels import epoch_label
    from jaxnets.ui import warn

    root = Path(inits_from)
    if not root.exists():
        raise JaxnetsError(f"--inits-from {root}: file not found (a text file with one snapshot "
                           "path per line, or a snapshots folder)")
    if root.is_dir():
        found = sorted(p for p in root.iterdir() if is_jaxnets_checkpoint(p))
        if not found:
            raise JaxnetsError(f"--inits-from {root}: the folder holds no jaxnets snapshot")
        labelled = sorted(((epoch_label(p, tool="reinit", legacy=legacy), p) for p in found),
                          key=lambda t: (int(t[0]), str(t[1])))
        # jaxnets' final snapshot repeats the last epoch's weights: keep one per label
        out, seen = [], set()
        for label, p in labelled:
            if label not in seen:
                seen.add(label)
                out.append((label, p))
        return out
    out = []
    lines = root.read_text().splitlines()
    if not any(line.strip() for line in lines):
        raise JaxnetsError(f"--inits-from {root} is empty: list one snapshot path per line")
    for line in lines:
        text = line.strip()
        path = Path(text)
        if text and not path.is_absolute() and not path.exists() and (root.parent / path).exists():
            path = root.parent / path  # relative to the list file
        if not text or not path.exists():
            warn(f"--inits-from: skipping missing snapshot '{text}'")
            continue
        out.append((epoch_label(path, tool="reinit", legacy=legacy), path))
    return out


def _normalization(spec: Any, override: str | None, weights: str | Path) -> tuple:
    """``--normalize``, else the training run's own choice (its config.json), else the model's."""
    from jaxnets.data.transforms import normalization_for

    if override:
        return normalization_for(spec, override)
    config = Path(weights).absolute().parent.parent / "config.json"
    if config.is_file():
        try:
            train_opts = json.loads(config.read_text()).get("options", {})
        except (OSError, json.JSONDecodeError):
            train_opts = {}
        if train_opts.get("unnormalize"):
            return (0.0,) * spec.in_channels, (1.0,) * spec.in_channels
        if train_opts.get("normalize"):
            return normalization_for(spec, train_opts["normalize"])
    return normalization_for(spec)


def run_reinit(opts: Mapping[str, Any]) -> dict:
    """The re-initialisation grid → ``RUN/reinit_<name>.json`` (the original schema),
    ``RUN/reinit_<name>.png`` (heatmap of relative drops) and ``RUN/results.json``."""
    import jax
    import numpy as np

    from jaxnets.methods.hyperplanes import plots
    from jaxnets.methods.hyperplanes.labels import epoch_label
    from jaxnets.methods.hyperplanes.registry import registry_for
    from jaxnets.methods.hyperplanes.reinit import (
        Evaluator,
        drop_matrix,
        load_eval_data,
        rand_seed,
        swap,
    )
    from jaxnets.models.api import init_variables, load_weights
    from jaxnets.runtime import create_run_dir, setup_jax, write_json
    from jaxnets.train.logging import write_config
    from jaxnets.ui import info, progress, warn

    opts = {**REINIT_DEFAULTS, **opts}
    setup_jax()
    if not opts.get("weights"):
        raise JaxnetsError("reinit needs the trained model: --weights PATH")
    if not opts["inits_from"] and not opts["rand"]:
        raise JaxnetsError("nothing to re-initialise from: give --inits-from LIST and/or --rand")
    donors = _list_donors(opts["inits_from"], opts["legacy_epoch_labels"]) if opts["inits_from"] else []
    if not donors and not opts["rand"]:
        raise JaxnetsError(f"no snapshot listed in --inits-from {opts['inits_from']} exists, and "
                           "--rand is off: nothing to re-initialise from")
    ctx = load_model(opts["model"], opts["weights"], data=opts["data"],
                     num_classes=opts["num_classes"], seed=opts["seed"], limit=opts["limit"],
                     classes=opts["classes"], need_source=True)
    arch = ctx.spec.name
    mean, std = _normalization(ctx.spec, opts["normalize"], opts["weights"])
    layers = registry_for(ctx.spec, ctx.module, ctx.variables, rule=opts["rule"],
                          with_linear=opts["include_linear"])
    if not opts["include_linear"]:
        layers = [layer for layer in layers if layer.kind == "conv"]
    if not layers:
        raise JaxnetsError(f"{arch} has no conv layer to re-initialise (use --include-linear)")
    run_dir = create_run_dir(opts["out"], "reinit", arch)
    write_config(run_dir, opts, "reinit")
    t0 = time.perf_counter()
    data = load_eval_data(ctx.spec, ctx.source, mean, std, opts["batch_size"])
    evaluator = Evaluator(ctx.module, data, ctx.num_classes)
    variables = jax.device_put(ctx.variables)
    base_counts = evaluator.counts(variables)
    top1, top5 = (100.0 * c / data.n for c in base_counts)
    t_setup = time.perf_counter() - t0
    rows: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    donor_list: list[tuple[str, Any]] = list(donors)
    if opts["rand"]:
        donor_list.append(("rand", None))
    t1 = time.perf_counter()
    with progress("reinit", len(donor_list) * len(layers)) as advance:
        for label, path in donor_list:
            if path is None:
                donor = init_variables(ctx.spec, ctx.module, rand_seed(opts["seed"]))
            else:
                meta = _metadata(path)
                if meta.get("model") not in (None, arch):
                    raise CheckpointError(f"--inits-from: {path} holds a '{meta['model']}' "
                                          f"snapshot, not '{arch}'")
                donor = load_weights(ctx.spec, ctx.module, path)
            donor = jax.device_put(dict(donor))
            row, crow = [], []
            for layer in layers:
                c1, _ = evaluator.counts(swap(variables, layer, donor, include_bn=opts["include_bn"]))
                row.append(100.0 * c1 / data.n)
                crow.append(c1)
                advance()
            if label in rows:
                warn(f"--inits-from: label '{label}' appears twice; the later snapshot ({path}) wins")
            rows[label], counts[label] = row, crow
    if "rand" in rows:  # always last, as the original
        rows["rand"] = rows.pop("rand")
        counts["rand"] = counts.pop("rand")
    t_grid = time.perf_counter() - t1
    name = _snapshot_name(opts["weights"])
    doc: dict[str, Any] = {"init_from_epoch": rows, "arch": arch,
                           "dataset": _dataset_name(ctx.dataset, ctx.class_list, False),
                           "top1_test": top1, "top5_test": top5}
    seed = ctx.meta.get("seed", opts["seed"])
    if seed is not None:
        doc["seed"] = str(seed)
    doc["epoch"] = epoch_label(opts["weights"], tool="reinit", legacy=opts["legacy_epoch_labels"])
    doc["num_classes"] = ctx.num_classes  # extra key (spec §7 #30)
    json_path = run_dir / f"reinit_{name}.json"
    json_path.write_text(json.dumps(doc))
    matrix = drop_matrix(top1, rows)
    files = {"json": str(json_path)}
    if opts["plots"]:
        if rows:
            files["heatmap"] = str(plots.plot_heatmap(
                matrix, list(rows), run_dir / f"reinit_{name}.png",
                title=f"{arch}: relative top-1 drop (baseline {top1:.2f} %)",
                vmin=opts["vmin"], vmax=opts["vmax"]))
        else:
            warn("no rows: heatmap skipped")
    evals = evaluator.calls
    summary = {
        "schema": REINIT_SCHEMA, "model": arch, "weights": str(opts["weights"]),
        "epoch": doc["epoch"], "top1_test": top1, "top5_test": top5, "n_test": data.n,
        "baseline_correct": base_counts[0],
        "layers": [{"path": layer.path, "stage": layer.stage, "block": layer.block,
                    "kind": layer.kind, "bn": layer.bn} for layer in layers],
        "rows": rows, "correct": counts, "row_labels": list(rows),
        "relative_drop": np.round(matrix, 6).tolist(),
        "donors": [str(p) if p is not None else "rand" for _, p in donor_list],
        "include_bn": bool(opts["include_bn"]), "include_linear": bool(opts["include_linear"]),
        "rand_seed": rand_seed(opts["seed"]) if opts["rand"] else None,
        "evaluations": evals, "compilations": evaluator.compiled_versions(),
        "seconds": {"setup_and_baseline": t_setup, "grid": t_grid,
                    "per_evaluation": t_grid / max(1, evals - 1)},
        "run_dir": str(run_dir), "files": files,
    }
    write_json(run_dir / "results.json", summary)
    if rows:
        _print_grid(rows, top1, arch)
    info(f"wrote {json_path} ({evals} evaluations, {t_grid:.1f} s)")
    return summary


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


# --------------------------------------------------------------------------------------------
# the small study (used by the demo)


def find_snapshots(folder: str | Path) -> list[tuple[str, Path]]:
    """(label, path) of every jaxnets snapshot in ``folder``, ordered by epoch."""
    return _list_donors(folder, legacy=False)


def run_study(snapshots: str | Path, out: str | Path, *, model: str | None = None,
              data: str | None = None, rand: bool = True, normalize: bool = True,
              batch_size: int = 512, seed: int = 0, quiet: bool = True) -> dict:
    """Projections at init and after training plus a reinit grid over every snapshot (+ rand)
    of one ``jaxnets train`` run; returns the headline numbers.

    ``snapshots`` is the run's ``snapshots/`` folder (or the run folder). The trained model is the
    snapshot with the most completed epochs; the init is the ``_init_0`` one.
    """
    from jaxnets.ui import set_verbosity

    folder = Path(snapshots)
    if (folder / "snapshots").is_dir():
        folder = folder / "snapshots"
    found = find_snapshots(folder)
    init = [p for label, p in found if label == "0"]
    if not init:
        raise JaxnetsError(f"{folder} has no _init_0 snapshot (train with `jaxnets train`)")
    trained_label, trained = found[-1]
    meta = _metadata(trained)
    model = model or meta.get("model")
    if not model:
        raise JaxnetsError(f"{trained}: no model name in the snapshot metadata; pass model=")
    if quiet:
        set_verbosity(0, True)
    out = Path(out)
    common = {"model": model, "data": data, "normalize": normalize, "seed": seed, "quiet": quiet}
    p_init = run_projections({**common, "weights": init[0], "out": out / "projections_init"})
    p_trained = run_projections({**common, "weights": trained, "init_from": init[0],
                                 "out": out / "projections_trained"})
    grid = run_reinit({"model": model, "weights": trained, "inits_from": folder, "rand": rand,
                       "data": data, "batch_size": batch_size, "seed": seed, "quiet": quiet,
                       "out": out / "reinit"})
    drops = grid["relative_drop"]
    labels = grid["row_labels"]
    headline = {
        "model": model, "trained_epoch": trained_label,
        "init_net_mass": p_init["net"]["mass"], "trained_net_mass": p_trained["net"]["mass"],
        "init_layer_mass": [r["mass"] for r in p_init["layers"]],
        "trained_layer_mass": [r["mass"] for r in p_trained["layers"]],
        "trained_layers_outside_null_band": p_trained["layers_outside_null_band"],
        "l2_dist": [r.get("l2_dist") for r in p_trained["layers"]],
        "top1_test": grid["top1_test"],
        "own_weights_row_exact": grid["rows"].get(trained_label) == [grid["top1_test"]] * len(grid["layers"])
        if trained_label in grid["rows"] else None,
        "epoch0_drop": drops[labels.index("0")] if "0" in labels else None,
        "rand_drop": drops[labels.index("rand")] if "rand" in labels else None,
        "heatmap": grid["files"].get("heatmap"),
        "evaluations": grid["evaluations"], "compilations": grid["compilations"],
        "grid_seconds": grid["seconds"]["grid"],
    }
    (out / "study.json").write_text(json.dumps(headline, indent=2))
    return headline
