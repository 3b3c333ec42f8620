"""Plain ``run_*`` functions behind ``jaxnets indices|finetune|essential|mutual-info`` and the demo.

Each takes an ``opts`` dict (the resolved CLI options; missing keys take the defaults of
:data:`DEFAULTS`), writes a run folder and returns a summary dict.

Normalisation: the option-A CIFAR ResNets (the "Decomposing the Deep" checkpoints) default to
the method's CIFAR constants (0.491, 0.482, 0.447)/(0.247, 0.243, 0.261) as the original code
uses them (spec §3.4 caveat); ``--normalize imagenet`` gives the checkpoint's own constants.
Every other model uses its registry normalisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError

DEFAULTS: dict[str, Any] = {
    "weights": None, "data": "digits", "split": "train", "limit": None, "classes": None,
    "normalize": None, "num_classes": None, "out": None, "seed": 0, "batch_size": 128,
    "devices": "1", "config": None, "verbose": 0, "quiet": False,
    # indices
    "k": "5", "k_keep": None,
    # finetune
    "indices": None, "epochs": 10, "lr": None, "eval_batch_size": 128, "eval_split": None,
    "eval_limit": None, "resume": None, "checkpoint_every": None, "precision": "fp32",
    "initial_eval": True, "export": True,
    # essential / mutual-info
    "csg_weights": None, "csg_indices": None, "csg_order": "ascending", "noise_mode": "replace",
    "model": "resnet20", "num_features": None,
}


def _opts(opts: Mapping[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **{k: v for k, v in opts.items() if v is not None or k not in DEFAULTS}}


def method_normalization(spec: Any, override: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from jaxnets.data.transforms import normalization_for

    if not override and spec.family == "cifar_resnet" and spec.head == "linear" \
            and spec.in_channels == 3:
        override = "cifar"
    return normalization_for(spec, override)


def _parse_ks(text: Any) -> list[int]:
    """Comma-separated positive integers, each once (e.g. ``5,10,20``); a one-line error otherwise."""
    if isinstance(text, int):
        items = [str(text)]
    elif isinstance(text, list | tuple):
        items = [str(k) for k in text]
    else:
        items = str(text).split(",")
    stripped = [item.strip() for item in items]
    try:
        ks = [int(item) for item in stripped if item]
    except ValueError:
        raise JaxnetsError(f"--k must be comma-separated integers, e.g. 5,10,20 (got {text!r})") from None
    if not ks:
        raise JaxnetsError("--k needs at least one value")
    if "" in stripped:
        raise JaxnetsError(f"--k has an empty value (got {text!r}); write e.g. 5,10,20")
    bad = [k for k in ks if k < 1]
    if bad:
        raise JaxnetsError(f"--k values must be at least 1 (got {bad[0]})")
    twice = sorted({k for k in ks if ks.count(k) > 1})
    if twice:
        raise JaxnetsError(f"--k lists {twice[0]} twice")
    return ks


def _parse_keep(text: Any) -> list[int]:
    """``--k-keep``: one positive integer per ``--k`` value (repeats allowed)."""
    if isinstance(text, int):
        items = [str(text)]
    elif isinstance(text, list | tuple):
        items = [str(k) for k in text]
    else:
        items = str(text).split(",")
    try:
        keep = [int(item.strip()) for item in items]
    except ValueError:
        raise JaxnetsError(f"--k-keep must be comma-separated integers, one per --k value (got {text!r})") from None
    if any(k < 1 for k in keep):
        raise JaxnetsError(f"--k-keep values must be at least 1 (got {text!r})")
    return keep


class _Model:
    """A registered model with its data-adapted spec, module, variables and normalisation."""

    def __init__(self, opts: Mapping[str, Any], source: Any, weights: Any, *, model: str | None = None):
        from jaxnets.data.pipeline import adapt_to_data
        from jaxnets.models.api import init_variables, load_weights, resolve
        from jaxnets.ui import warn

        spec = resolve(model or opts["model"])
        self.num_classes = opts.get("num_classes") or spec.num_classes
        self.spec = spec = adapt_to_data(spec, source, self.num_classes)
        self.module = spec.create(self.num_classes)
        if weights is None:
            warn(f"no weights given: using a randomly initialised {spec.name} (seed {opts['seed']})")
            self.variables = init_variables(spec, self.module, opts["seed"])
        else:
            self.variables = load_weights(spec, self.module, weights)
        self.mean, self.std = method_normalization(spec, opts.get("normalize"))
        from jaxnets.methods.decompose.head import head_shape

        self.num_features, c = head_shape(self.variables["params"], spec.head)
        if c != self.num_classes:
            raise JaxnetsError(f"{spec.name}'s head has {c} classes, expected {self.num_classes}")

    def load_table(self, path: Any) -> np.ndarray:
        from jaxnets.methods.decompose.indices import load_indices

        return load_indices(path, num_classes=self.num_classes, num_features=self.num_features)

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        from jaxnets.transforms import names

        node = names.get_subtree(self.variables["params"], self.spec.head)
        return np.asarray(node["kernel"]), np.asarray(node["bias"])


def _source(opts: Mapping[str, Any], split: str, limit: Any = None) -> Any:
    from jaxnets.data.classes import parse_classes
    from jaxnets.data.spec import open_source

    return open_source(opts["data"], split, limit=limit, classes=parse_classes(opts.get("classes")))


def _run_dir(opts: Mapping[str, Any], command: str, model: str | None) -> Path:
    from jaxnets.runtime import create_run_dir

    return create_run_dir(opts.get("out"), command, model, resume=opts.get("resume"))


# ---------------------------------------------------------------------------------- indices


def run_indices(opts: Mapping[str, Any]) -> dict:
    """Extract influential channels on the training split; one index JSON per k + counts + PNGs."""
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.methods.decompose.extract import extract_indices, plot_histograms
    from jaxnets.methods.decompose.indices import write_indices
    from jaxnets.runtime import setup_jax, write_json
    from jaxnets.train.logging import write_config
    from jaxnets.ui import info

    opts = _opts(opts)
    ks = _parse_ks(opts["k"])
    keep = _parse_keep(opts["k_keep"]) if opts.get("k_keep") else None
    if keep is not None and len(keep) != len(ks):
        raise JaxnetsError("--k-keep needs one value per --k value")
    source = _source(opts, opts["split"], opts["limit"])
    m = _Model(opts, source, opts["weights"])
    if max(ks) > m.num_features:
        raise JaxnetsError(f"--k {max(ks)} exceeds the {m.num_features} penultimate channels of {m.spec.name}")
    run_dir = _run_dir(opts, "indices", m.spec.name)
    setup_jax(None)
    write_config(run_dir, opts, "indices")
    loader = eval_loader(m.spec, source, opts["batch_size"])
    order = sorted(set(ks))
    ex = extract_indices(m.module, m.variables, loader, m.mean, m.std, order, m.num_classes,
                         m.num_features, k_keep=[dict(zip(ks, keep or ks, strict=True))[k] for k in order])
    files, diagnostics = {}, {}
    for k in ex.ks:
        path = write_indices(run_dir / f"{m.spec.name}_k{k}_indices.json", ex.tables[k])
        files[k] = str(path)
        plot_histograms(run_dir / f"histograms_k{k}.png", ex.counts[k], ex.tables[k], k,
                        class_names=getattr(source, "class_names", None))
        diagnostics[str(k)] = {"indices_file": str(path), "k_keep": int(ex.tables[k].shape[1]),
                               "counts": ex.counts[k], "mass": ex.mass[k],
                               "mean_mass": float(np.mean(ex.mass[k]))}
    report = {"schema": "jaxnets.decompose.indices/1", "model": m.spec.name,
              "weights": str(opts["weights"] or ""), "data": opts["data"], "split": opts["split"],
              "normalization": {"mean": m.mean, "std": m.std}, "num_features": m.num_features,
              "images_per_class": ex.images_per_class, "k": diagnostics}
    write_json(run_dir / "results.json", report)
    for k in ex.ks:
        print(f"k={k}: {files[k]} (mean top-{k} mass {np.mean(ex.mass[k]):.3f})")
    info(f"wrote {run_dir / 'results.json'} and histograms_k*.png")
    return {"run_dir": str(run_dir), "files": files, "tables": ex.tables, "counts": ex.counts,
            "mass": {k: float(np.mean(v)) for k, v in ex.mass.items()}}


# -------------------------------------------------------------------------------- finetune


def default_lr(spec: Any) -> float:
    """1e-4 for CIFAR-size models, 1e-6 for ImageNet-size ones (the README's settings)."""
    return 1e-6 if spec.input_size >= 128 else 1e-4


def _eval_source(opts: Mapping[str, Any]) -> tuple[Any, str]:
    from jaxnets.errors import DataError

    if opts.get("eval_split"):
        return _source(opts, opts["eval_split"], opts["eval_limit"]), opts["eval_split"]
    try:
        return _source(opts, "test", opts["eval_limit"]), "test"
    except DataError:  # ImageNet-style folders have val/, not test/
        return _source(opts, "val", opts["eval_limit"]), "val"


def run_finetune(opts: Mapping[str, Any]) -> dict:
    """Fine-tune the whole network through the decomposed head (spec §3.4) and export it."""
    import jax
    import optax

    from jaxnets.data.pipeline import eval_loader, train_loader
    from jaxnets.io import save_variables
    from jaxnets.methods.decompose.head import apply_head_mask, bake, final_weights, mask_tree
    from jaxnets.methods.decompose.indices import write_indices
    from jaxnets.runtime import parse_devices, setup_jax, write_json
    from jaxnets.train.checkpoint import resumed_run_folder
    from jaxnets.train.evaluate import evaluate
    from jaxnets.train.logging import write_config
    from jaxnets.train.loop import fit
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step
    from jaxnets.ui import info

    opts = _opts(opts)
    if not opts.get("indices"):
        raise JaxnetsError("finetune needs --indices FILE (the index JSON of the decomposed head)")
    if opts["epochs"] < 1:
        raise JaxnetsError("--epochs must be ≥ 1")
    n_devices = parse_devices(opts["devices"])
    mesh = None
    if n_devices:
        from jaxnets.train.parallel import check_divisible, make_mesh

        mesh = make_mesh(n_devices)
        check_divisible(opts["batch_size"], mesh)
        check_divisible(opts["eval_batch_size"], mesh)
    train_src = _source(opts, "train", opts["limit"])
    eval_src, eval_split = _eval_source(opts)
    m = _Model(opts, train_src, opts["weights"])
    table = m.load_table(opts["indices"])
    lr = opts["lr"] if opts["lr"] is not None else default_lr(m.spec)
    run_dir = _run_dir(opts, "finetune", m.spec.name)
    setup_jax(n_devices)
    write_config(run_dir, {**opts, "lr": lr}, "finetune",
                 resume_from=resumed_run_folder(opts["resume"], run_dir))
    mask = mask_tree(m.variables["params"], m.spec.head, table)
    if mesh is not None:
        from jaxnets.train.parallel import replicate

        mask = replicate(mesh, mask)
    loader = train_loader(m.spec, train_src, opts["batch_size"], seed=opts["seed"], augment=True)
    ev_loader = eval_loader(m.spec, eval_src, opts["eval_batch_size"])

    def eval_decomposed(variables: Mapping, description: str = "validate") -> Any:
        return evaluate(m.module, variables, ev_loader, m.mean, m.std, m.num_classes,
                        param_transform=apply_head_mask, transform_args=mask, mesh=mesh,
                        description=description)

    start = None
    if opts["initial_eval"] and not opts["resume"]:
        start = eval_decomposed(m.variables, "before").top1
        info(f"decomposed {eval_split} top-1 before fine-tuning: {100 * start:.2f} %")
    # Adam (β = 0.9/0.999, ε = 1e-8 outside the root, no decay, no schedule) over every param.
    state = TrainState.create(m.module, m.variables, optax.adam(lr), seed=opts["seed"])
    step = make_train_step(m.module, normalize=(m.mean, m.std), param_transform=apply_head_mask,
                           precision=opts["precision"], mesh=mesh)

    def eval_fn(state: Any) -> dict:
        r = eval_decomposed(state.variables)
        return {f"{eval_split}_top1": r.top1, f"{eval_split}_correct": r.correct}

    result = fit(state, step, loader, epochs=opts["epochs"], run_dir=run_dir, eval_fn=eval_fn,
                 resume=opts["resume"], model_name=m.spec.name,
                 config=json.loads(json.dumps(opts, default=str)), transform_args=mask, mesh=mesh,
                 checkpoint_every=opts["checkpoint_every"], progress=None)
    final = jax.device_get(result.state.variables)
    history = result.history
    last = next((r for r in reversed(history) if f"{eval_split}_top1" in r), None)
    final_top1 = last[f"{eval_split}_top1"] if last else eval_decomposed(final).top1
    # Export with the decomposed head baked in: kernel zero outside the kept entries, so a
    # plain dense forward of the exported model *is* the decomposed model.
    baked = {**final, "params": bake(final["params"], m.spec.head, table)}
    exports: dict[str, str] = {}
    write_indices(run_dir / "indices.json", table)
    v, beta = final_weights(final["params"], m.spec.head, table)
    np.savez(run_dir / "final_weights.npz", final_weights=v, final_bias=beta, indices=table)
    if opts["export"]:
        from jaxnets.converters.torch_writer import export_variables

        ck = run_dir / "finetuned"
        if ck.exists():
            import shutil

            shutil.rmtree(ck)  # a resumed run re-exports its final state
        save_variables(ck, baked, {"model": m.spec.name, "num_classes": m.num_classes,
                                   "decomposed_head": True, "indices_k": int(table.shape[1]),
                                   "source": "jaxnets finetune"})
        exports = {"jaxnets": str(ck),
                   "torch": str(export_variables(run_dir / "finetuned.pth", baked, m.spec.keymap))}
    report = {"schema": "jaxnets.decompose.finetune/1", "model": m.spec.name,
              "weights": str(opts["weights"] or ""), "indices": str(opts["indices"]),
              "k": int(table.shape[1]), "data": opts["data"], "eval_split": eval_split,
              "lr": lr, "batch_size": opts["batch_size"], "epochs_completed":
              int(jax.device_get(result.state.step)) // loader.steps_per_epoch,
              "steps": int(jax.device_get(result.state.step)),
              "normalization": {"mean": m.mean, "std": m.std},
              "start_top1": start, "final_top1": final_top1, "history": history,
              "exports": exports}
    write_json(run_dir / "results.json", report)
    before = f"{100 * start:.2f} % → " if start is not None else ""
    print(f"{m.spec.name} decomposed (k={table.shape[1]}): {eval_split} top-1 {before}"
          f"{100 * final_top1:.2f} % after {report['epochs_completed']} epoch(s); run folder {run_dir}")
    return {**report, "run_dir": str(run_dir), "variables": final, "table": table}


# ------------------------------------------------------------------------------- essential


def run_essential(opts: Mapping[str, Any]) -> dict:
    """Noise the influential vs the other pooled features ("ours" and, given CSG weights, "csg")."""
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.methods.decompose.csg import csg_indices, load_gates
    from jaxnets.methods.decompose.essential import essential_counts, plot_essential, schema_view
    from jaxnets.methods.decompose.features import all_features
    from jaxnets.runtime import setup_jax, write_json
    from jaxnets.train.logging import write_config
    from jaxnets.ui import info, warn

    # The experiment is defined on the test split (spec §3.5); an explicit --split is honoured.
    split = opts.get("split") or "test"
    opts = {**_opts(opts), "split": split}
    if not opts.get("indices"):
        raise JaxnetsError("essential needs --indices FILE (our index JSON)")
    if split != "test":
        warn(f"essential on the {split} split: the paper's experiment uses the test split")
    source = _source(opts, split, opts["limit"])
    pairs: list[tuple[str, Any, Any]] = [("ours", opts["weights"], None)]
    gates = None
    if opts.get("csg_weights"):
        gates = load_gates(opts["csg_weights"])
        pairs.insert(0, ("csg", opts["csg_weights"], None))
    elif opts.get("csg_indices"):
        raise JaxnetsError("--csg-indices needs --csg-weights (the CSG model's checkpoint)")
    run_dir = _run_dir(opts, "essential", opts["model"])
    setup_jax(None)
    write_config(run_dir, opts, "essential")
    runs: dict[str, dict] = {}
    tables: dict[str, list] = {}
    for name, weights, _ in pairs:
        m = _Model(opts, source, weights)
        if name == "ours":
            table = m.load_table(opts["indices"])
        elif opts.get("csg_indices"):
            table = m.load_table(opts["csg_indices"])
        else:
            ours_k = m.load_table(opts["indices"]).shape[1]
            if gates.shape != (m.num_classes, m.num_features):
                raise JaxnetsError(f"CSG gates have shape {gates.shape}, the model needs "
                                   f"({m.num_classes}, {m.num_features})")
            if opts["csg_order"] == "ascending":
                warn("CSG indices: ascending gate order (the published files; the *least* used "
                     "channels) — pass --csg-order descending for the semantically right ones")
            table = csg_indices(gates, ours_k, opts["csg_order"])
        loader = eval_loader(m.spec, source, opts["batch_size"])
        feats, labels, _ = all_features(m.module, m.variables, loader, m.mean, m.std, name)
        kernel, bias = m.head()
        runs[name] = essential_counts(feats, labels, kernel, bias, table, seed=opts["seed"],
                                      run=name, mode=opts["noise_mode"])
        tables[name] = table.tolist()
    view = schema_view({k: runs[k] for k in ("ours", "csg") if k in runs})
    write_json(run_dir / "results_essential_features.json", view)
    plot_essential(run_dir / "essential.png", runs)
    totals = {run: {key: int(sum(r[key] for r in rows.values()))
                    for key in ("noise_at_inf", "noise_at_noninf", "clean", "total")}
              for run, rows in runs.items()}
    report = {"schema": "jaxnets.decompose.essential/1", "seed": opts["seed"],
              "noise_mode": opts["noise_mode"], "csg_order": opts["csg_order"] if gates is not None else None,
              "data": opts["data"], "split": split, "runs": runs, "totals": totals, "indices": tables}
    write_json(run_dir / "results.json", report)
    for run, t in totals.items():
        print(f"{run}: clean {t['clean']}/{t['total']}, influential noised {t['noise_at_inf']}/"
              f"{t['total']}, others noised {t['noise_at_noninf']}/{t['total']}")
    info(f"wrote {run_dir / 'results_essential_features.json'} and essential.png")
    return {**report, "run_dir": str(run_dir)}


# ----------------------------------------------------------------------------- mutual info


MI_DEFAULT_KS = (5, 10, 20)  # the paper's table (spec §3.6)


def _num_features(opts: Mapping[str, Any], gates: Any) -> int:
    if opts.get("num_features"):
        return int(opts["num_features"])
    if gates is not None:
        return int(gates.shape[1])
    from jaxnets.methods.decompose.head import head_shape
    from jaxnets.models.api import abstract_variables, resolve

    spec = resolve(opts["model"])
    module = spec.create(opts.get("num_classes") or spec.num_classes)
    return head_shape(abstract_variables(spec, module)["params"], spec.head)[0]


def run_mutual_info(opts: Mapping[str, Any]) -> dict:
    """MI scores for our index files and, given the CSG checkpoint, CSG in both gate orders."""
    from jaxnets.methods.decompose.csg import csg_indices, load_gates
    from jaxnets.methods.decompose.indices import load_indices
    from jaxnets.methods.decompose.mutual_info import mi_score
    from jaxnets.runtime import setup_jax, write_json
    from jaxnets.train.logging import write_config
    from jaxnets.ui import warn

    # --k has its own default here (DEFAULTS' "5" is the indices command's).
    csg_ks_given = _parse_ks(opts["k"]) if opts.get("k") is not None else None
    opts = {**_opts(opts), "k": opts.get("k")}
    files = opts.get("indices") or []
    if isinstance(files, str | Path):
        files = [files]
    if not files and not opts.get("csg_weights"):
        raise JaxnetsError("mutual-info needs --indices FILE (repeatable) and/or --csg-weights")
    if opts["csg_order"] not in ("ascending", "descending"):
        raise JaxnetsError(f"--csg-order must be ascending or descending, got {opts['csg_order']!r}")
    if csg_ks_given is not None and not opts.get("csg_weights"):
        raise JaxnetsError("--k chooses the k values of the CSG rows and needs --csg-weights; the Ours "
                           "rows come from the --indices files (one file per k)")
    gates = load_gates(opts["csg_weights"]) if opts.get("csg_weights") else None
    d = _num_features(opts, gates)
    ours: dict[int, dict] = {}
    for f in files:
        t = load_indices(f, num_features=d)
        if gates is not None and t.shape[0] != gates.shape[0]:
            raise JaxnetsError(f"{f} has {t.shape[0]} classes, the CSG gates {gates.shape[0]}")
        k = int(t.shape[1])
        if k in ours:
            raise JaxnetsError(f"two --indices files have k = {k}: {ours[k]['file']} and {f}")
        ours[k] = {"file": str(f), **mi_score(t, d)}
    ours = dict(sorted(ours.items()))
    # CSG rows: every --k value; by default the k of the index files, else the paper's 5, 10, 20.
    csg_ks = csg_ks_given or sorted(ours) or list(MI_DEFAULT_KS)
    too_big = [k for k in csg_ks if k > d]
    if too_big:
        raise JaxnetsError(f"--k {too_big[0]} exceeds the {d} penultimate channels")
    csg: dict[str, dict[int, dict]] = {}
    if gates is not None:
        for order in ("ascending", "descending"):
            csg[order] = {k: mi_score(csg_indices(gates, k, order), d) for k in csg_ks}
    ks = sorted(set(ours) | set(csg_ks if gates is not None else ()))
    if gates is not None and opts["csg_order"] == "ascending":
        warn("the CSG column uses the ascending gate order of the published files (the least "
             "used channels); the descending column is the semantically right selection")
    run_dir = _run_dir(opts, "mutual-info", None)
    setup_jax(None)
    write_config(run_dir, opts, "mutual-info")
    primary = opts["csg_order"]
    other = "descending" if primary == "ascending" else "ascending"
    head = ["k", "Ours", f"CSG ({primary})", f"CSG ({other})", "Ours off-diag",
            f"CSG ({primary}) off-diag", f"CSG ({other}) off-diag"]
    rows = []
    for k in ks:
        def cell(d_: Mapping | None, key: str) -> str:
            return f"{d_[key]:.7f}" if d_ else "—"

        o = ours.get(k)
        cp = csg.get(primary, {}).get(k)
        co = csg.get(other, {}).get(k)
        rows.append([str(k), cell(o, "score"), cell(cp, "score"), cell(co, "score"),
                     cell(o, "off_diagonal"), cell(cp, "off_diagonal"), cell(co, "off_diagonal")])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table_md = "\n".join(lines) + "\n"
    (run_dir / "mutual_info.md").write_text(table_md)
    report = {"schema": "jaxnets.decompose.mutual_info/1", "num_features": d,
              "ours": {str(k): v for k, v in ours.items()},
              "csg": {o: {str(k): v for k, v in by_k.items()} for o, by_k in csg.items()},
              "csg_order": primary, "csg_weights": str(opts.get("csg_weights") or "")}
    write_json(run_dir / "results.json", report)
    print(table_md, end="")
    return {**report, "run_dir": str(run_dir), "table": table_md}


# ------------------------------------------------------------------------------------ demo


def run_digits(out: str | Path, *, weights: str | Path | None = None, seed: int = 0,
               train_epochs: int = 8, finetune_epochs: int = 1, k: int = 5) -> dict:
    """The whole method on ``digits_cnn`` + scikit-learn digits, in well under a minute.

    Trains the CNN (unless ``weights`` is given), extracts the influential channels, validates
    full vs decomposed, fine-tunes briefly, runs the essential experiment and the MI score.
    Returns the headline numbers; every step writes its own sub-folder of ``out``.
    """
    import jax
    import optax

    from jaxnets.data.pipeline import adapt_to_data, train_loader
    from jaxnets.data.spec import open_source
    from jaxnets.io import save_variables
    from jaxnets.methods.decompose.mutual_info import mi_score
    from jaxnets.models.api import init_variables, resolve
    from jaxnets.train.loop import fit
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    base = {"data": "digits", "model": "digits_cnn", "seed": seed, "quiet": True}
    if weights is None:
        spec = resolve("digits_cnn")
        train = open_source("digits", "train")
        spec = adapt_to_data(spec, train, spec.num_classes)
        module = spec.create()
        from jaxnets.data.transforms import normalization_for

        state = TrainState.create(module, init_variables(spec, module, seed), optax.adam(3e-3),
                                  seed=seed)
        step = make_train_step(module, normalize=normalization_for(spec))
        res = fit(state, step, train_loader(spec, train, 64, seed=seed, augment=False),
                  epochs=train_epochs, progress=False)
        weights = out / "digits_cnn_trained"
        if weights.exists():
            import shutil

            shutil.rmtree(weights)
        save_variables(weights, jax.device_get(res.state.variables), {"model": spec.name})
    ind = run_indices({**base, "weights": weights, "split": "train", "k": str(k),
                       "out": out / "indices"})
    index_file = ind["files"][k]
    from jaxnets.validate import run_validate

    val = run_validate({"model": "digits_cnn", "weights": weights, "data": "digits", "split": "test",
                        "limit": None, "classes": None, "normalize": None, "num_classes": None,
                        "save_logits": False, "indices": index_file, "out": out / "validate",
                        "seed": seed, "batch_size": 128, "devices": "1"})
    ft = run_finetune({**base, "weights": weights, "indices": index_file, "epochs": finetune_epochs,
                       "lr": 1e-3, "batch_size": 64, "out": out / "finetune", "initial_eval": False})
    ess = run_essential({**base, "weights": weights, "indices": index_file, "split": "test",
                         "out": out / "essential"})
    mi = mi_score(ind["tables"][k], 64)
    summary = {
        "k": k, "index_file": index_file, "full_top1": val["full_top1"],
        "decomposed_top1": val["decomposed_top1"], "finetuned_top1": ft["final_top1"],
        "essential_noise_at_inf": ess["totals"]["ours"]["noise_at_inf"],
        "essential_noise_at_noninf": ess["totals"]["ours"]["noise_at_noninf"],
        "essential_total": ess["totals"]["ours"]["total"], "mutual_info": mi["score"],
        "mutual_info_off_diagonal": mi["off_diagonal"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
