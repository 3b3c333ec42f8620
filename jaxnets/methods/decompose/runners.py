"""The library behind ``jaxnets indices|finetune|essential|mutual-info`` and the demo.

Each workflow takes a :class:`jaxnets.api.Model` (and :class:`jaxnets.api.Data`), its Config from
:mod:`.config` and an optional ``run_dir``; it returns a typed result whose ``to_json()`` is the
``results.json`` the CLI writes. Nothing is written when ``run_dir`` is None.

Normalisation: the model's own ``mean``/``std``. The CLI opens the option-A CIFAR ResNets (the
"Decomposing the Deep" checkpoints) with the method's CIFAR constants
(0.491, 0.482, 0.447)/(0.247, 0.243, 0.261), as the original code uses them (spec §3.4
caveat; :func:`method_normalization`); ``--normalize imagenet`` gives the checkpoint's own.

ImageNet-size models reading images of another size get the eval transform the Config's
``eval_resize`` names: ``squash`` to 224×224 (the original's, the default) or ``crop``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from jaxnets.api import Data, Model
from jaxnets.data.pipeline import eval_loader, train_loader
from jaxnets.data.transforms import normalization_for
from jaxnets.errors import JaxnetsError
from jaxnets.io import save_variables
from jaxnets.methods.decompose.config import (
    MI_DEFAULT_KS,
    EssentialConfig,
    FinetuneConfig,
    IndicesConfig,
    MutualInfoConfig,
)
from jaxnets.methods.decompose.csg import csg_indices
from jaxnets.methods.decompose.essential import essential_counts, plot_essential, schema_view
from jaxnets.methods.decompose.extract import extract_indices, plot_histograms
from jaxnets.methods.decompose.features import all_features
from jaxnets.methods.decompose.head import apply_head_mask, bake, final_weights, head_shape, mask_tree
from jaxnets.methods.decompose.indices import load_indices, write_indices
from jaxnets.methods.decompose.mutual_info import mi_score
from jaxnets.rundir import RunDir
from jaxnets.runtime import setup_jax
from jaxnets.train.checkpoint import resumed_run_folder
from jaxnets.train.evaluate import evaluate
from jaxnets.train.loop import fit
from jaxnets.train.state import TrainState
from jaxnets.train.steps import make_train_step
from jaxnets.transforms import names
from jaxnets.ui import info, warn

IndexTable = np.ndarray | str | Path  # a (C, k) table or its JSON file


def _uses_method_constants(spec: Any) -> bool:
    return spec.family == "cifar_resnet" and spec.head == "linear" and spec.in_channels == 3


def method_normalization(spec: Any, override: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The method's normalisation: its CIFAR constants for the option-A CIFAR ResNets unless overridden."""
    if not override and _uses_method_constants(spec):
        override = "cifar"
    return normalization_for(spec, override)


def with_method_normalization(model: Model) -> Model:
    """``model`` with the original code's CIFAR constants where it uses them (the option-A CIFAR
    ResNets); every other model keeps its own normalisation."""
    if not _uses_method_constants(model.spec):
        return model
    mean, std = normalization_for(model.spec, "cifar")
    return dataclasses.replace(model, mean=tuple(mean), std=tuple(std))


def penultimate_width(model: Model) -> int:
    """D, the penultimate width; checks that the head has the model's class count."""
    d, c = head_shape(model.variables["params"], model.spec.head)
    if c != model.num_classes:
        raise JaxnetsError(f"{model.name}'s head has {c} classes, expected {model.num_classes}")
    return d


def index_table(model: Model, indices: IndexTable) -> np.ndarray:
    """``indices`` as a checked (C, k) table for ``model``."""
    if isinstance(indices, str | Path):
        return load_indices(indices, num_classes=model.num_classes, num_features=penultimate_width(model))
    return np.asarray(indices)


def _head(model: Model) -> tuple[np.ndarray, np.ndarray]:
    node = names.get_subtree(model.variables["params"], model.spec.head)
    return np.asarray(node["kernel"]), np.asarray(node["bias"])


def _record(config: Any, provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """config.json's options: the Config's fields, then what the caller records (the CLI: its flags)."""
    return {**dataclasses.asdict(config), **(provenance or {})}


def _normalization(model: Model) -> dict[str, tuple[float, ...]]:
    return {"mean": model.mean, "std": model.std}


# ---------------------------------------------------------------------------------- indices


@dataclasses.dataclass(frozen=True)
class IndicesResult:
    """Per k: the (C, k_keep) table, the per-class channel counts and top-k ℓ1 masses."""

    report: dict[str, Any]  # results.json
    tables: dict[int, np.ndarray]
    counts: dict[int, Any]
    mass: dict[int, Any]
    class_names: Sequence[str] | None = None
    run_dir: RunDir | None = None
    files: dict[int, str] = dataclasses.field(default_factory=dict)  # index JSON per k (with run_dir)

    def to_json(self) -> dict[str, Any]:
        return self.report

    def plot(self, path: str | Path, k: int | None = None) -> Path:
        """The histograms of top-``k`` (default: the first k), kept channels in red."""
        k = min(self.tables) if k is None else k
        plot_histograms(Path(path), self.counts[k], self.tables[k], k, class_names=self.class_names)
        return Path(path)


def check_ks_fit(model: Model, config: IndicesConfig) -> int:
    """D, after checking that every k fits the penultimate width."""
    d = penultimate_width(model)
    if max(config.k) > d:
        raise JaxnetsError(f"--k {max(config.k)} exceeds the {d} penultimate channels of {model.name}")
    return d


def indices(model: Model, data: Data, config: IndicesConfig = IndicesConfig(),
            run_dir: str | Path | RunDir | None = None,
            *, provenance: Mapping[str, Any] | None = None) -> IndicesResult:
    """Extract the influential channels per class on ``data`` (the method uses the training split)."""
    d = check_ks_fit(model, config)
    setup_jax(None)
    run_dir = RunDir.of(run_dir, "indices", model.name)
    if run_dir is not None:
        run_dir.write_config(_record(config, provenance))
    order = sorted(set(config.k))
    loader = eval_loader(model.spec, data.source, config.batch_size, eval_resize=config.eval_resize)
    ex = extract_indices(model.module, model.variables, loader,
                         model.mean, model.std, order, model.num_classes, d,
                         k_keep=[config.keep_for(k) for k in order])
    class_names = getattr(data.source, "class_names", None)
    diagnostics, files = {}, {}
    for k in ex.ks:
        if run_dir is not None:
            files[k] = str(write_indices(run_dir / f"{model.name}_k{k}_indices.json", ex.tables[k]))
        diagnostics[str(k)] = {"indices_file": files.get(k, ""), "k_keep": int(ex.tables[k].shape[1]),
                               "counts": ex.counts[k], "mass": ex.mass[k], "mean_mass": float(np.mean(ex.mass[k]))}
    weights = (provenance or {}).get("weights", model.weights)
    report = {"schema": "jaxnets.decompose.indices/1", "model": model.name, "weights": str(weights or ""),
              "data": data.text, "split": data.split, "normalization": _normalization(model),
              "num_features": d, "images_per_class": ex.images_per_class, "k": diagnostics}
    result = IndicesResult(report=report, tables=ex.tables, counts=ex.counts, mass=ex.mass,
                           class_names=class_names, run_dir=run_dir, files=files)
    if run_dir is not None:
        for k in ex.ks:
            result.plot(run_dir / f"histograms_k{k}.png", k)
        run_dir.write_json("results.json", report)
        info(f"wrote {run_dir / 'results.json'} and histograms_k*.png")
    return result


# -------------------------------------------------------------------------------- finetune


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """The fine-tuned variables (head not baked), the table and the top-1 before/after."""

    report: dict[str, Any]  # results.json
    variables: Any
    table: np.ndarray
    run_dir: RunDir | None = None

    @property
    def start_top1(self) -> float | None:
        return self.report["start_top1"]

    @property
    def final_top1(self) -> float:
        return self.report["final_top1"]

    @property
    def eval_split(self) -> str:
        return self.report["eval_split"]

    def to_json(self) -> dict[str, Any]:
        return self.report


def finetune(model: Model, data: Data, config: FinetuneConfig = FinetuneConfig(),
             run_dir: str | Path | RunDir | None = None,
             *, test_data: Data, indices: IndexTable, resume: str | Path | None = None, devices: int | None = None,
             provenance: Mapping[str, Any] | None = None) -> FinetuneResult:
    """Fine-tune the whole network through the decomposed head (spec §3.4); with ``run_dir``,
    export it with the head baked in."""
    mesh = None
    if devices:
        from jaxnets.train.parallel import check_divisible, make_mesh

        mesh = make_mesh(devices)
        check_divisible(config.batch_size, mesh)
        check_divisible(config.eval_batch_size, mesh)
    table = index_table(model, indices)
    lr = config.lr_for(model.spec.input_size)
    eval_split = test_data.split
    recorded = {**_record(config, provenance), "lr": lr}
    setup_jax(devices)
    run_dir = RunDir.of(run_dir, "finetune", model.name, resume=resume)
    if run_dir is not None:
        run_dir.write_config(recorded, resume_from=resumed_run_folder(resume, run_dir))
    mask = mask_tree(model.variables["params"], model.spec.head, table)
    if mesh is not None:
        from jaxnets.train.parallel import replicate

        mask = replicate(mesh, mask)
    loader = train_loader(model.spec, data.source, config.batch_size, seed=config.seed, augment=True)
    ev_loader = eval_loader(model.spec, test_data.source, config.eval_batch_size, eval_resize=config.eval_resize)

    def eval_decomposed(variables: Mapping, description: str = "validate") -> Any:
        return evaluate(model.module, variables, ev_loader, model.mean, model.std, model.num_classes,
                        param_transform=apply_head_mask, transform_args=mask, mesh=mesh, description=description)

    start = None
    if config.initial_eval and not resume:
        start = eval_decomposed(model.variables, "before").top1
        info(f"decomposed {eval_split} top-1 before fine-tuning: {100 * start:.2f} %")
    # Adam (β = 0.9/0.999, ε = 1e-8 outside the root, no decay, no schedule) over every param.
    # (TrainState.create copies the Model's buffers, which fit's donating steps would delete.)
    state = TrainState.create(model.module, model.variables, optax.adam(lr), seed=config.seed)
    step = make_train_step(model.module, normalize=(model.mean, model.std), param_transform=apply_head_mask,
                           precision=config.precision, mesh=mesh)

    def eval_fn(state: Any) -> dict:
        r = eval_decomposed(state.variables)
        return {f"{eval_split}_top1": r.top1, f"{eval_split}_correct": r.correct}

    result = fit(state, step, loader, epochs=config.epochs, run_dir=run_dir, eval_fn=eval_fn, resume=resume,
                 model_name=model.name, config=json.loads(json.dumps(recorded, default=str)), transform_args=mask,
                 mesh=mesh, checkpoint_every=config.checkpoint_every, progress=None)
    final = jax.device_get(result.state.variables)
    history = result.history
    last = next((r for r in reversed(history) if f"{eval_split}_top1" in r), None)
    final_top1 = last[f"{eval_split}_top1"] if last else eval_decomposed(final).top1
    exports: dict[str, str] = {}
    if run_dir is not None:
        exports = _write_finetuned(run_dir, model, final, table, config.export)
    steps = int(jax.device_get(result.state.step))
    provenance = provenance or {}
    report = {"schema": "jaxnets.decompose.finetune/1", "model": model.name,
              "weights": str(provenance.get("weights", model.weights) or ""),
              "indices": str(provenance.get("indices", indices if isinstance(indices, str | Path) else "")),
              "k": int(table.shape[1]), "data": data.text, "eval_split": eval_split,
              "lr": lr, "batch_size": config.batch_size, "epochs_completed": steps // loader.steps_per_epoch,
              "steps": steps, "normalization": _normalization(model),
              "start_top1": start, "final_top1": final_top1, "history": history, "exports": exports}
    if run_dir is not None:
        run_dir.write_json("results.json", report)
    return FinetuneResult(report=report, variables=final, table=table, run_dir=run_dir)


def _write_finetuned(run_dir: Path, model: Model, final: Mapping, table: np.ndarray, export: bool) -> dict[str, str]:
    """indices.json, final_weights.npz and (``export``) the model with the decomposed head baked in:
    kernel zero outside the kept entries, so a plain dense forward *is* the decomposed model."""
    write_indices(run_dir / "indices.json", table)
    v, beta = final_weights(final["params"], model.spec.head, table)
    np.savez(run_dir / "final_weights.npz", final_weights=v, final_bias=beta, indices=table)
    if not export:
        return {}
    from jaxnets.converters.torch_writer import export_variables

    baked = {**final, "params": bake(final["params"], model.spec.head, table)}
    ck = run_dir / "finetuned"
    if ck.exists():
        shutil.rmtree(ck)  # a resumed run re-exports its final state
    save_variables(ck, baked, {"model": model.name, "num_classes": model.num_classes, "decomposed_head": True,
                               "indices_k": int(table.shape[1]), "source": "jaxnets finetune"})
    return {"jaxnets": str(ck), "torch": str(export_variables(run_dir / "finetuned.pth", baked, model.spec.keymap))}


run = finetune  # the method's main workflow


# ------------------------------------------------------------------------------- essential


@dataclasses.dataclass(frozen=True)
class EssentialResult:
    """Per run ("ours", "csg") and class: clean / noised-influential / noised-other counts."""

    report: dict[str, Any]  # results.json
    run_dir: RunDir | None = None

    @property
    def runs(self) -> dict[str, dict]:
        return self.report["runs"]

    @property
    def totals(self) -> dict[str, dict[str, int]]:
        return self.report["totals"]

    def to_json(self) -> dict[str, Any]:
        return self.report

    def schema_view(self) -> dict:
        """``results_essential_features.json`` in the original's schema."""
        return schema_view({k: self.runs[k] for k in ("ours", "csg") if k in self.runs})

    def plot(self, path: str | Path) -> Path:
        plot_essential(Path(path), self.runs)
        return Path(path)


def essential(model: Model, data: Data, config: EssentialConfig = EssentialConfig(),
              run_dir: str | Path | RunDir | None = None,
              *, indices: IndexTable, csg_model: Model | None = None, csg_gates: np.ndarray | None = None,
              csg_indices_table: IndexTable | None = None,
              provenance: Mapping[str, Any] | None = None) -> EssentialResult:
    """Noise the influential vs the other pooled features of ``data`` ("ours"; with ``csg_model``
    also "csg", whose table is ``csg_indices_table`` or derived from ``csg_gates``)."""
    if data.split != "test":
        warn(f"essential on the {data.split} split: the paper's experiment uses the test split")
    setup_jax(None)
    run_dir = RunDir.of(run_dir, "essential", model.name)
    if run_dir is not None:
        run_dir.write_config(_record(config, provenance))
    ours_table = index_table(model, indices)
    pairs: list[tuple[str, Model, np.ndarray]] = []
    if csg_model is not None:
        if csg_indices_table is not None:
            table = index_table(csg_model, csg_indices_table)
        else:
            d = penultimate_width(csg_model)
            if csg_gates is None or csg_gates.shape != (csg_model.num_classes, d):
                shape = None if csg_gates is None else csg_gates.shape
                raise JaxnetsError(f"CSG gates have shape {shape}, the model needs ({csg_model.num_classes}, {d})")
            if config.csg_order == "ascending":
                warn("CSG indices: ascending gate order (the published files; the *least* used "
                     "channels) — pass --csg-order descending for the semantically right ones")
            table = csg_indices(csg_gates, ours_table.shape[1], config.csg_order)
        pairs.append(("csg", csg_model, table))
    pairs.append(("ours", model, ours_table))
    runs: dict[str, dict] = {}
    tables: dict[str, list] = {}
    for name, m, table in pairs:
        loader = eval_loader(m.spec, data.source, config.batch_size, eval_resize=config.eval_resize)
        feats, labels, _ = all_features(m.module, m.variables, loader, m.mean, m.std, name)
        kernel, bias = _head(m)
        runs[name] = essential_counts(feats, labels, kernel, bias, table, seed=config.seed, run=name,
                                      mode=config.noise_mode)
        tables[name] = table.tolist()
    totals = {run: {key: int(sum(r[key] for r in rows.values()))
                    for key in ("noise_at_inf", "noise_at_noninf", "clean", "total")}
              for run, rows in runs.items()}
    report = {"schema": "jaxnets.decompose.essential/1", "seed": config.seed, "noise_mode": config.noise_mode,
              "csg_order": config.csg_order if csg_model is not None else None,
              "data": data.text, "split": data.split, "runs": runs, "totals": totals, "indices": tables}
    result = EssentialResult(report=report, run_dir=run_dir)
    if run_dir is not None:
        run_dir.write_json("results_essential_features.json", result.schema_view())
        result.plot(run_dir / "essential.png")
        run_dir.write_json("results.json", report)
        info(f"wrote {run_dir / 'results_essential_features.json'} and essential.png")
    return result


# ----------------------------------------------------------------------------- mutual info


@dataclasses.dataclass(frozen=True)
class MutualInfoResult:
    """MI scores of our tables (by k) and of CSG in both gate orders, and the markdown table."""

    report: dict[str, Any]  # results.json
    table: str  # mutual_info.md
    run_dir: RunDir | None = None

    def to_json(self) -> dict[str, Any]:
        return self.report

    def write(self, run_dir: str | Path | RunDir, config: MutualInfoConfig,
              provenance: Mapping[str, Any] | None = None) -> MutualInfoResult:
        """config.json, mutual_info.md and results.json in ``run_dir``."""
        run_dir = RunDir.of(run_dir, "mutual-info")
        setup_jax(None)
        run_dir.write_config(_record(config, provenance))
        (run_dir / "mutual_info.md").write_text(self.table)
        run_dir.write_json("results.json", self.report)
        return dataclasses.replace(self, run_dir=run_dir)


def mutual_info(tables: Sequence[np.ndarray], config: MutualInfoConfig = MutualInfoConfig(),
                run_dir: str | Path | RunDir | None = None, *, num_features: int, gates: np.ndarray | None = None,
                files: Sequence[str | Path] | None = None,
                provenance: Mapping[str, Any] | None = None) -> MutualInfoResult:
    """MI scores for our (C, k) ``tables`` (one per k) and, given the CSG ``gates``, CSG in both orders."""
    d = num_features
    if not tables and gates is None:
        raise JaxnetsError("mutual-info needs --indices FILE (repeatable) and/or --csg-weights")
    if config.k is not None and gates is None:
        raise JaxnetsError("--k chooses the k values of the CSG rows and needs --csg-weights; the Ours "
                           "rows come from the --indices files (one file per k)")
    files = list(files) if files is not None else [""] * len(tables)
    ours: dict[int, dict] = {}
    for f, t in zip(files, tables, strict=True):
        if gates is not None and t.shape[0] != gates.shape[0]:
            raise JaxnetsError(f"{f} has {t.shape[0]} classes, the CSG gates {gates.shape[0]}")
        k = int(t.shape[1])
        if k in ours:
            raise JaxnetsError(f"two --indices files have k = {k}: {ours[k]['file']} and {f}")
        ours[k] = {"file": str(f), **mi_score(t, d)}
    ours = dict(sorted(ours.items()))
    # CSG rows: every --k value; by default the k of the index files, else the paper's 5, 10, 20.
    csg_ks = list(config.k or sorted(ours) or MI_DEFAULT_KS)
    too_big = [k for k in csg_ks if k > d]
    if too_big:
        raise JaxnetsError(f"--k {too_big[0]} exceeds the {d} penultimate channels")
    csg: dict[str, dict[int, dict]] = {}
    if gates is not None:
        for order in ("ascending", "descending"):
            csg[order] = {k: mi_score(csg_indices(gates, k, order), d) for k in csg_ks}
        if config.csg_order == "ascending":
            warn("the CSG column uses the ascending gate order of the published files (the least "
                 "used channels); the descending column is the semantically right selection")
    ks = sorted(set(ours) | set(csg_ks if gates is not None else ()))
    table_md = _mi_table(ks, ours, csg, config.csg_order)
    report = {"schema": "jaxnets.decompose.mutual_info/1", "num_features": d,
              "ours": {str(k): v for k, v in ours.items()},
              "csg": {o: {str(k): v for k, v in by_k.items()} for o, by_k in csg.items()},
              "csg_order": config.csg_order, "csg_weights": str((provenance or {}).get("csg_weights") or "")}
    result = MutualInfoResult(report=report, table=table_md)
    return result.write(run_dir, config, provenance) if run_dir is not None else result


def _mi_table(ks: Sequence[int], ours: Mapping[int, dict], csg: Mapping[str, Mapping[int, dict]], primary: str) -> str:
    other = "descending" if primary == "ascending" else "ascending"
    head = ["k", "Ours", f"CSG ({primary})", f"CSG ({other})", "Ours off-diag",
            f"CSG ({primary}) off-diag", f"CSG ({other}) off-diag"]

    def cell(scores: Mapping | None, key: str) -> str:
        return f"{scores[key]:.7f}" if scores else "—"

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in ks:
        o, cp, co = ours.get(k), csg.get(primary, {}).get(k), csg.get(other, {}).get(k)
        row = [str(k), cell(o, "score"), cell(cp, "score"), cell(co, "score"),
               cell(o, "off_diagonal"), cell(cp, "off_diagonal"), cell(co, "off_diagonal")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ demo


def run_digits(out: str | Path, *, weights: str | Path | None = None, seed: int = 0,
               train_epochs: int = 8, finetune_epochs: int = 1, k: int = 5) -> dict:
    """The whole method on ``digits_cnn`` + scikit-learn digits, in well under a minute.

    Trains the CNN (unless ``weights`` is given), extracts the influential channels, validates
    full vs decomposed, fine-tunes briefly, runs the essential experiment and the MI score.
    Returns the headline numbers; every step writes its own sub-folder of ``out``.
    """
    from jaxnets.api import load, open_data
    from jaxnets.validate import run_validate

    out = RunDir.create(out, "decompose").path  # new or empty: nothing of an earlier run is replaced
    train, test = open_data("digits", "train"), open_data("digits", "test")
    if weights is None:
        model = load("digits_cnn", None, data=train, seed=seed)
        state = TrainState.create(model.module, model.variables, optax.adam(3e-3), seed=seed)
        step = make_train_step(model.module, normalize=(model.mean, model.std))
        res = fit(state, step, train_loader(model.spec, train.source, 64, seed=seed, augment=False),
                  epochs=train_epochs, progress=False)
        weights = out / "digits_cnn_trained"
        save_variables(weights, jax.device_get(res.state.variables), {"model": model.name})
    model = load("digits_cnn", weights, data=train, seed=seed)
    # batch 128: the size these numbers were first produced with
    ind = indices(model, train, IndicesConfig(k=(k,), batch_size=128, seed=seed), out / "indices",
                  provenance={"weights": weights, "data": "digits", "split": "train", "model": "digits_cnn"})
    index_file = ind.files[k]
    val = run_validate({"model": "digits_cnn", "weights": weights, "data": "digits", "split": "test",
                        "limit": None, "classes": None, "normalize": None, "num_classes": None,
                        "save_logits": False, "indices": index_file, "out": out / "validate",
                        "seed": seed, "batch_size": 128, "devices": "1"})
    ft = finetune(model, train, FinetuneConfig(epochs=finetune_epochs, lr=1e-3, batch_size=64, initial_eval=False,
                                               seed=seed),
                  out / "finetune", test_data=test, indices=index_file)
    ess = essential(model, test, EssentialConfig(batch_size=128, seed=seed), out / "essential", indices=index_file)
    mi = mi_score(ind.tables[k], 64)
    ours = ess.totals["ours"]
    summary = {
        "k": k, "index_file": index_file, "full_top1": val["full_top1"],
        "decomposed_top1": val["decomposed_top1"], "finetuned_top1": ft.final_top1,
        "essential_noise_at_inf": ours["noise_at_inf"], "essential_noise_at_noninf": ours["noise_at_noninf"],
        "essential_total": ours["total"], "mutual_info": mi["score"], "mutual_info_off_diagonal": mi["off_diagonal"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
