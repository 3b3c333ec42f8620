"""The library entry points of the hyperplane tools, and a small study for the demo.

- ``projections(model, data, ProjectionsConfig(...), run_dir=None, *, init_from, pretrained)``
  → :class:`ProjectionsResult` (``jaxnets projections``; also the package's ``run``);
- ``reinit(model, data, ReinitConfig(...), run_dir=None, *, donors)`` → :class:`ReinitResult`
  (``jaxnets reinit``; ``data`` is the test split the grid is evaluated on);
- :func:`run_study` — projections at init and after training plus a reinit grid (the demo).

Nothing is written when ``run_dir`` is None. With one, the folder gets ``config.json``, the
original-schema JSON (``<name>.json`` / ``reinit_<name>.json``, compact; ``to_json()``),
``results.json`` (``results_json()``: the per-layer table with the extensions, timings, files)
and PNG plots. :func:`jaxnets.methods.hyperplanes.snapshots.open_snapshot` opens a snapshot's
model and test split as its training run had them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.api import Data, Model
from jaxnets.errors import JaxnetsError
from jaxnets.methods.hyperplanes import plots
from jaxnets.methods.hyperplanes.config import ProjectionsConfig, ReinitConfig
from jaxnets.methods.hyperplanes.labels import _stem, epoch_label
from jaxnets.methods.hyperplanes.registry import LayerInfo, registry_for
from jaxnets.methods.hyperplanes.reinit import Evaluator, drop_matrix, load_eval_data, rand_seed, swap
from jaxnets.methods.hyperplanes.snapshots import (
    check_snapshot_model,
    dataset_name,
    find_snapshots,
    list_donors,
    open_snapshot,
    snapshot_metadata,
)
from jaxnets.methods.hyperplanes.stats import layer_table, projections_report
from jaxnets.models.api import Variables, init_variables, load_weights
from jaxnets.rundir import RunDir

PROJECTIONS_SCHEMA = "jaxnets.hyperplanes.projections/1"
REINIT_SCHEMA = "jaxnets.hyperplanes.reinit/1"
NO_PRETRAINED = ("lenet", "vgg19_orig", "mlp", "mlp_bn")  # the original silently ignored it (§7 #28)

# A donor of the reinit grid: a snapshot path, a Model or a variables tree.
DonorSource = str | Path | Model | Mapping


def check_pretrained(arch: str) -> None:
    """Only alexnet and the torchvision VGGs have ImageNet-pretrained weights."""
    if arch in NO_PRETRAINED:
        raise JaxnetsError(f"{arch} has no ImageNet-pretrained weights (--pretrained is for "
                           "alexnet and the torchvision VGGs)")


def _write_run_config(run_dir: str | Path | RunDir, command: str, model: Model,
                      config: ProjectionsConfig | ReinitConfig, provenance: Mapping[str, Any] | None) -> RunDir:
    folder = RunDir.of(run_dir, command, model.name)
    folder.write_config({"model": model.name, **(provenance or {}), **dataclasses.asdict(config)})
    return folder


# --------------------------------------------------------------------------------------------
# projections


@dataclass
class ProjectionsResult:
    """Projection statistics of one weight source (spec §2).

    ``report`` is the original JSON body (stage → block → projections/mass/mean[/distances], and
    ``net``); ``layers`` the per-layer table with the extensions (units, fan-in, bias, p-value,
    null band); ``reference`` the ``init_from`` weights' report (for the plots), if given.
    """

    model: str
    name: str  # the output name: init_<arch>, pretrained_<arch> or the snapshot's basename
    epoch: str
    report: dict[str, Any]
    layers: list[dict[str, Any]]
    recorded: list[LayerInfo]
    config: ProjectionsConfig
    dataset: str = ""
    seed: int | str | None = None  # the snapshot's seed, else the config's
    weights: str = ""
    init_from: str = ""
    reference: dict[str, Any] | None = None
    run_dir: RunDir | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def net_mass(self) -> float:
        return float(self.report["net"]["mass"])

    @property
    def net_mean(self) -> float:
        return float(self.report["net"]["mean"])

    @property
    def layers_outside_null_band(self) -> int:
        return sum(r["outside_null_band"] for r in self.layers)

    def to_json(self) -> dict[str, Any]:
        """``<name>.json``: the original schema (spec §2.7)."""
        doc = {**self.report, "arch": self.model, "dataset": self.dataset}
        if self.seed is not None:
            doc["seed"] = str(self.seed)
        doc["epoch"] = self.epoch
        return doc

    def results_json(self) -> dict[str, Any]:
        """``results.json``: the per-layer table with the extensions, the run folder and files."""
        net = self.report["net"]
        return {
            "schema": PROJECTIONS_SCHEMA, "model": self.model, "name": self.name, "epoch": self.epoch,
            "weights": self.weights, "init_from": self.init_from,
            "normalize": bool(self.config.normalize), "with_linear": bool(self.config.with_linear),
            "rule": self.config.rule or "default",
            "net": {"mass": net["mass"], "mean": net["mean"], "units": len(net["projections"])},
            "layers": self.layers, "layers_outside_null_band": self.layers_outside_null_band,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None, "files": self.files,
        }

    def plot(self, path: str | Path, kind: str = "histograms") -> Path:
        """``histograms`` (projections per layer, the ``init_from`` weights in grey) or ``mass``
        (mass per layer against the random-init band) as a PNG."""
        title = f"{self.model} {self.name} (epoch {self.epoch})" + \
            (" normalised" if self.config.normalize else " raw sums")
        if kind == "histograms":
            return plots.plot_histograms(self.report, self.recorded, Path(path), reference=self.reference,
                                         title=title)
        if kind == "mass":
            series = {"init_from": self.reference, self.name: self.report} if self.reference is not None \
                else {self.name: self.report}
            return plots.plot_mass(series, self.recorded, Path(path), title=title)
        raise JaxnetsError(f"plot kind must be 'histograms' or 'mass', got {kind!r}")


def _variables_of(source: DonorSource, model: Model, what: str) -> Variables:
    """A weight source as a variables tree of ``model``'s architecture."""
    if isinstance(source, Model):
        return source.variables
    if isinstance(source, Mapping):
        return source
    check_snapshot_model(source, model.name, what)
    return load_weights(model.spec, model.module, source)


def projections(model: Model, data: Data | None = None, config: ProjectionsConfig | None = None,
                run_dir: str | Path | RunDir | None = None, *, init_from: DonorSource | None = None,
                pretrained: bool = False, provenance: Mapping[str, Any] | None = None) -> ProjectionsResult:
    """Projection statistics of ``model``'s filters on the all-ones vector (spec §2).

    ``data`` only names the data set in the JSON (the model is adapted to it by
    :func:`jaxnets.api.load`); without it, the snapshot's metadata names it. ``init_from`` (a
    snapshot path, a Model or variables) adds each layer's distance from those weights.
    ``pretrained`` labels the weights as ImageNet start weights (``pretrained_<arch>``, epoch
    -1). The output name and epoch come from ``model.weights`` (``init_<arch>``, epoch 0, for a
    random init). ``provenance`` (paths, data texts) is recorded in config.json.
    """
    config = config or ProjectionsConfig()
    arch = model.name
    meta = snapshot_metadata(model.weights)
    if pretrained:
        check_pretrained(arch)
        name, epoch = f"pretrained_{arch}", "-1"
    elif model.weights is not None:
        name = _stem(model.weights)
        epoch = epoch_label(model.weights, tool="projections", legacy=config.legacy_epoch_labels)
    else:
        name, epoch = f"init_{arch}", "0"
    init_vars = _variables_of(init_from, model, "init_from") if init_from is not None else None
    layers = registry_for(model.spec, model.module, model.variables, rule=config.rule,
                          with_linear=config.with_linear)
    report = projections_report(model.variables["params"], layers, normalize=config.normalize,
                                with_linear=config.with_linear,
                                params_init=init_vars["params"] if init_vars is not None else None)
    reference = None
    if init_vars is not None:
        reference = projections_report(init_vars["params"], layers, normalize=config.normalize,
                                       with_linear=config.with_linear)
    init_text = ""
    if isinstance(init_from, (str, Path)):
        init_text = str(init_from)
    elif isinstance(init_from, Model):
        init_text = str(init_from.weights or "")
    recorded = [layer for layer in layers if layer.kind == "conv" or config.with_linear]
    result = ProjectionsResult(
        model=arch, name=name, epoch=epoch, report=report, layers=layer_table(report, recorded),
        recorded=recorded, config=config,
        dataset=dataset_name(data.text if data is not None else meta.get("dataset"), meta.get("class_list"), True),
        seed=meta.get("seed", config.seed), weights=str(model.weights or ""), init_from=init_text,
        reference=reference)
    if run_dir is None:
        return result

    folder = _write_run_config(run_dir, "projections", model, config, provenance)
    result.run_dir = folder
    (folder / f"{name}.json").write_text(json.dumps(result.to_json()))  # compact, as the original
    result.files["json"] = str(folder / f"{name}.json")
    if config.plots:
        result.files["histograms"] = str(result.plot(folder / f"{name}_histograms.png", "histograms"))
        result.files["mass"] = str(result.plot(folder / f"{name}_mass.png", "mass"))
    folder.write_json("results.json", result.results_json())
    return result


run = projections


# --------------------------------------------------------------------------------------------
# reinit


@dataclass
class ReinitResult:
    """The re-initialisation grid (spec §3): top-1 (percent) per donor row and layer.

    ``rows`` maps each donor label (list order, ``rand`` last) to its top-1 per layer,
    ``correct`` to the raw correct counts; ``relative_drop`` is ``(top1 − acc)/top1``.
    """

    model: str
    name: str  # the trained snapshot's basename
    epoch: str
    top1: float
    top5: float
    n_test: int
    baseline_correct: int
    layers: list[LayerInfo]
    rows: dict[str, list[float]]
    correct: dict[str, list[int]]
    relative_drop: np.ndarray
    config: ReinitConfig
    num_classes: int
    dataset: str = ""
    seed: int | str | None = None  # the snapshot's seed, else the config's
    weights: str = ""
    donors: list[str] = field(default_factory=list)
    evaluations: int = 0
    compilations: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    run_dir: RunDir | None = None
    files: dict[str, str] = field(default_factory=dict)

    @property
    def row_labels(self) -> list[str]:
        return list(self.rows)

    def to_json(self) -> dict[str, Any]:
        """``reinit_<name>.json``: the original schema (spec §3.3) plus ``num_classes`` (§7 #30)."""
        doc: dict[str, Any] = {"init_from_epoch": self.rows, "arch": self.model, "dataset": self.dataset,
                               "top1_test": self.top1, "top5_test": self.top5}
        if self.seed is not None:
            doc["seed"] = str(self.seed)
        doc["epoch"] = self.epoch
        doc["num_classes"] = self.num_classes
        return doc

    def results_json(self) -> dict[str, Any]:
        """``results.json``: rows, raw counts, drop matrix, layers, timings, compilations, files."""
        return {
            "schema": REINIT_SCHEMA, "model": self.model, "weights": self.weights,
            "epoch": self.epoch, "top1_test": self.top1, "top5_test": self.top5, "n_test": self.n_test,
            "baseline_correct": self.baseline_correct,
            "layers": [{"path": layer.path, "stage": layer.stage, "block": layer.block,
                        "kind": layer.kind, "bn": layer.bn} for layer in self.layers],
            "rows": self.rows, "correct": self.correct, "row_labels": self.row_labels,
            "relative_drop": np.round(self.relative_drop, 6).tolist(),
            "donors": self.donors,
            "include_bn": bool(self.config.include_bn), "include_linear": bool(self.config.include_linear),
            "rand_seed": rand_seed(self.config.seed) if self.config.rand else None,
            "evaluations": self.evaluations, "compilations": self.compilations,
            "seconds": self.seconds,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None, "files": self.files,
        }

    def plot(self, path: str | Path) -> Path:
        """The heatmap of relative drops (rows = donors, columns = layers 1..L) as a PNG."""
        if not self.rows:
            raise JaxnetsError("no rows to plot")
        return plots.plot_heatmap(self.relative_drop, self.row_labels, Path(path),
                                  title=f"{self.model}: relative top-1 drop (baseline {self.top1:.2f} %)",
                                  vmin=self.config.vmin, vmax=self.config.vmax)


def _donor_text(source: DonorSource | None) -> str:
    if source is None:
        return "rand"
    if isinstance(source, Model):
        return str(source.weights or source.name)
    return str(source) if isinstance(source, (str, Path)) else "(variables)"


def reinit(model: Model, data: Data, config: ReinitConfig | None = None, run_dir: str | Path | RunDir | None = None, *,
           donors: str | Path | Sequence[tuple[str, DonorSource]] = (),
           provenance: Mapping[str, Any] | None = None) -> ReinitResult:
    """Layer re-initialisation robustness of the trained ``model`` on the test split ``data``.

    Each recorded layer (conv layers; linears with ``include_linear``) is replaced in turn by each
    donor's and top-1 is measured; ``config.rand`` adds a ``rand`` row (a fresh init of the
    architecture, seed derived from ``config.seed``), always last. ``donors`` are (label,
    source) pairs in row order — a snapshot path, a Model or a variables tree — or a snapshots
    folder / list file (:func:`~jaxnets.methods.hyperplanes.snapshots.list_donors`). A repeated
    label overwrites its row and keeps its first position (as the original's dict).
    """
    import jax

    from jaxnets.ui import progress, warn

    config = config or ReinitConfig()
    arch = model.name
    if model.weights is None:
        raise JaxnetsError("reinit needs a trained model loaded from its weights (model.weights is None)")
    donor_list: list[tuple[str, DonorSource | None]] = list(
        list_donors(donors, config.legacy_epoch_labels) if isinstance(donors, (str, Path)) else donors)
    if not donor_list and not config.rand:
        raise JaxnetsError("nothing to re-initialise from: give donors and/or rand")
    for _, source in donor_list:  # fail before any work, not at the third row
        if isinstance(source, (str, Path)):
            check_snapshot_model(source, arch, "donor")
    if config.rand:
        donor_list.append(("rand", None))
    layers = registry_for(model.spec, model.module, model.variables, rule=config.rule,
                          with_linear=config.include_linear)
    if not config.include_linear:
        layers = [layer for layer in layers if layer.kind == "conv"]
    if not layers:
        raise JaxnetsError(f"{arch} has no conv layer to re-initialise (use --include-linear)")
    folder = _write_run_config(run_dir, "reinit", model, config, provenance) if run_dir is not None else None
    t0 = time.perf_counter()
    eval_data = load_eval_data(model.spec, data.source, model.mean, model.std, config.batch_size)
    evaluator = Evaluator(model.module, eval_data, model.num_classes)
    variables = jax.device_put(dict(model.variables))
    base_counts = evaluator.counts(variables)
    top1, top5 = (100.0 * c / eval_data.n for c in base_counts)
    t_setup = time.perf_counter() - t0
    rows: dict[str, list[float]] = {}
    counts: dict[str, list[int]] = {}
    t1 = time.perf_counter()
    with progress("reinit", len(donor_list) * len(layers)) as advance:
        for label, source in donor_list:
            donor = init_variables(model.spec, model.module, rand_seed(config.seed)) if source is None \
                else _variables_of(source, model, "donor")
            donor = jax.device_put(dict(donor))
            row, crow = [], []
            for layer in layers:
                c1, _ = evaluator.counts(swap(variables, layer, donor, include_bn=config.include_bn))
                row.append(100.0 * c1 / eval_data.n)
                crow.append(c1)
                advance()
            if label in rows:
                warn(f"--inits-from: label '{label}' appears twice; the later snapshot ({_donor_text(source)}) wins")
            rows[label], counts[label] = row, crow
    if "rand" in rows:  # always last, as the original
        rows["rand"] = rows.pop("rand")
        counts["rand"] = counts.pop("rand")
    t_grid = time.perf_counter() - t1
    meta = snapshot_metadata(model.weights)
    evals = evaluator.calls
    result = ReinitResult(
        model=arch, name=_stem(model.weights),
        epoch=epoch_label(model.weights, tool="reinit", legacy=config.legacy_epoch_labels),
        top1=top1, top5=top5, n_test=eval_data.n, baseline_correct=base_counts[0], layers=layers,
        rows=rows, correct=counts, relative_drop=drop_matrix(top1, rows), config=config,
        num_classes=model.num_classes, dataset=dataset_name(data.text, meta.get("class_list"), False),
        seed=meta.get("seed", config.seed), weights=str(model.weights),
        donors=[_donor_text(source) for _, source in donor_list], evaluations=evals,
        compilations=evaluator.compiled_versions(),
        seconds={"setup_and_baseline": t_setup, "grid": t_grid, "per_evaluation": t_grid / max(1, evals - 1)})
    if folder is None:
        return result

    result.run_dir = folder
    json_path = folder / f"reinit_{result.name}.json"
    json_path.write_text(json.dumps(result.to_json()))
    result.files["json"] = str(json_path)
    if config.plots:
        if rows:
            result.files["heatmap"] = str(result.plot(folder / f"reinit_{result.name}.png"))
        else:
            warn("no rows: heatmap skipped")
    folder.write_json("results.json", result.results_json())
    return result


# --------------------------------------------------------------------------------------------
# the small study (used by the demo)


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
    model = model or snapshot_metadata(trained).get("model")
    if not model:
        raise JaxnetsError(f"{trained}: no model name in the snapshot metadata; pass model=")
    if quiet:
        set_verbosity(0, True)
    out = Path(out)
    proj = ProjectionsConfig(normalize=normalize, seed=seed)
    trained_net, test = open_snapshot(model, trained, data, seed=seed)
    if test is None:
        raise JaxnetsError(f"{trained}: no data set in the snapshot metadata; pass data=")
    init_net, init_data = open_snapshot(model, init[0], data, seed=seed)
    p_init = projections(init_net, init_data, proj, out / "projections_init")
    p_trained = projections(trained_net, test, proj, out / "projections_trained", init_from=init[0])
    grid = reinit(trained_net, test, ReinitConfig(rand=rand, batch_size=batch_size, seed=seed), out / "reinit",
                  donors=folder)
    drops = grid.results_json()["relative_drop"]  # rounded as in results.json
    labels = grid.row_labels
    headline = {
        "model": model, "trained_epoch": trained_label,
        "init_net_mass": p_init.net_mass, "trained_net_mass": p_trained.net_mass,
        "init_layer_mass": [r["mass"] for r in p_init.layers],
        "trained_layer_mass": [r["mass"] for r in p_trained.layers],
        "trained_layers_outside_null_band": p_trained.layers_outside_null_band,
        "l2_dist": [r.get("l2_dist") for r in p_trained.layers],
        "top1_test": grid.top1,
        "own_weights_row_exact": grid.rows.get(trained_label) == [grid.top1] * len(grid.layers)
        if trained_label in grid.rows else None,
        "epoch0_drop": drops[labels.index("0")] if "0" in labels else None,
        "rand_drop": drops[labels.index("rand")] if "rand" in labels else None,
        "heatmap": grid.files.get("heatmap"),
        "evaluations": grid.evaluations, "compilations": grid.compilations,
        "grid_seconds": grid.seconds["grid"],
    }
    (out / "study.json").write_text(json.dumps(headline, indent=2))
    return headline
