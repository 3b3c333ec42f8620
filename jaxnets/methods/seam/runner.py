"""SeaM's library entry point: ``reengineer(model, data, ReengineerConfig(...), run_dir=None, *,
test_data) -> ReengineerResult`` (``jaxnets seam reengineer`` is a thin adapter over it; so is the
demo's :func:`run_digits`). Also the measurements of a re-engineered module behind ``seam flops``
/ ``seam time`` / ``seam eval``: :func:`open_module` opens a finished run folder or an original
mask dict (the authors' released masks) over a loaded model as a :class:`SavedModule`;
:func:`module_flops`, :func:`module_time`, :func:`module_eval` measure it (and write their JSON
only when given a file).

Run folder (``run_dir``; the CLI names it ``OUT/lr_head_mask_{lr_head}_{lr_mask}_alpha_{alpha}``):
``config.json``, ``metrics.jsonl``/``metrics.csv`` (+ TensorBoard; written by ``train.loop.fit``:
one row per epoch, with the SeaM fields, and a train row every 50 steps), ``checkpoints/``
(fit's, at every epoch end and every ``checkpoint_every`` steps), ``metrics.json`` (acc, acc_pre,
WRR, kept/N, FLOPs, chosen epoch, seed, flags, history), ``scores.msgpack`` + ``head.msgpack``
(the chosen snapshot), ``pruned_params.msgpack`` (params ⊙ 1[s > 0] and batch_stats),
``masks.pth`` (the original mask-dict format), ``history.png`` and ``layer_retention.png``.
Without a ``run_dir`` nothing is written. ``resume="auto"`` continues a killed run from its
latest checkpoint and ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets.api import Data, Model, load
from jaxnets.data.loader import Loader
from jaxnets.data.pipeline import adapt_to_data
from jaxnets.data.sources import Source
from jaxnets.data.spec import open_source
from jaxnets.errors import CheckpointError, JaxnetsError
from jaxnets.methods.seam import core, flops, maskdict, timing
from jaxnets.methods.seam.config import ReengineerConfig, exclude_patterns
from jaxnets.methods.seam.finetuning import count_correct
from jaxnets.methods.seam.loaders import open_split, target_loaders, test_loader
from jaxnets.methods.seam.targets import Target, original_correct, parse_target, target_sources
from jaxnets.methods.seam.training import train_masks
from jaxnets.models.api import init_variables, load_weights, resolve
from jaxnets.models.registry import NORMALIZATIONS, get_spec
from jaxnets.models.weights import input_normalization
from jaxnets.rundir import RunDir
from jaxnets.runtime import setup_jax, write_json
from jaxnets.train.checkpoint import find_resume, resumed_run_folder
from jaxnets.train.state import TrainState
from jaxnets.train.steps import make_train_step, normalize_images
from jaxnets.ui import info

SCHEMA = "jaxnets.seam/1"


def run_folder(out: str | Path, config: ReengineerConfig) -> Path:
    """``out/lr_head_mask_{lr_head}_{lr_mask}_alpha_{alpha}``: as the original, one ``--out``
    holds one sub-folder per setting (the no-overwrite rule applies to that sub-folder)."""
    return Path(out) / maskdict.run_name(config.lr_head, config.lr_mask, config.alpha)


def original_accuracy(module: Any, variables: Mapping, loader: Any, normalize: Any, target: Target,
                      mesh: Any = None) -> float:
    """The original model on the target test set, by the definition of §3.1."""
    bs = variables.get("batch_stats") or {}
    fn = jax.jit(lambda p, b, x: jnp.argmax(core.apply_backbone(module, p, b, normalize_images(x, normalize)), -1))
    preds, labels = [], []
    for batch in loader.epoch(0):
        p = np.asarray(fn(variables["params"], bs, batch.images))
        preds.append(p[batch.mask])
        labels.append(batch.labels[batch.mask])
    ok = original_correct(np.concatenate(preds), np.concatenate(labels), target)
    return float(ok.mean()) if len(ok) else 0.0


@dataclass(frozen=True)
class TargetProblem:
    """The target problem's data (§2.8): relabelled subsets, and the test subset with the original
    labels (to score the original model)."""

    target: Target
    train: Source
    test: Source
    test_original: Source


def config_target(config: ReengineerConfig, data: Data) -> Target:
    """``config.target`` against the classes of ``data`` (one-line errors in the flags' words)."""
    return parse_target(config.target, data.num_classes, superclass_type=config.superclass_type,
                        n_classes=config.n_classes, seed=config.seed)


def target_problem(model: Model, data: Data, test_data: Data, config: ReengineerConfig) -> TargetProblem:
    """Parse ``config.target`` against the data's classes and cut both splits to it."""
    target = config_target(config, data)
    if max(target.classes) >= model.num_classes:
        raise JaxnetsError(f"--target class {max(target.classes)} is out of range for {model.name} "
                           f"with {model.num_classes} classes")
    test_limit = config.limit if config.test_limit is None else config.test_limit
    train, _ = target_sources(data.source, target, config.limit)
    test, test_original = target_sources(test_data.source, target, test_limit)
    return TargetProblem(target, train, test, test_original)


@dataclass
class ReengineerResult:
    """A re-engineered module (``to_json()`` is metrics.json).

    ``model`` is the pruned backbone (W ⊙ 1[s > 0], the original C logits) as a
    :class:`jaxnets.Model`; ``head`` maps them to the target's K classes (:meth:`logits`).
    """

    model: Model
    head: dict
    scores: Any
    target: Target
    summary: dict[str, Any]
    run_dir: RunDir | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(self.summary["acc"])

    @property
    def original_accuracy(self) -> float:
        return float(self.summary["acc_pre"])

    @property
    def retention(self) -> float:
        return float(self.summary["retention"])

    @property
    def flops(self) -> dict[str, Any]:
        return self.summary["flops"]

    def logits(self, images: Any) -> jnp.ndarray:
        """K-way outputs of the module (pixel-unit NHWC images, as ``Model.__call__``)."""
        head_module = core.ModuleHead(self.target.num_targets, self.model.num_classes)
        return head_module.apply({"params": self.head}, self.model(images))

    def to_json(self) -> dict[str, Any]:
        return self.summary

    def plot(self, path: str | Path) -> Path:
        """Test accuracy and retention per epoch (history.png)."""
        from jaxnets.methods.seam import plots

        return plots.plot_history(self.history, Path(path), self.original_accuracy)

    def plot_layers(self, path: str | Path) -> Path:
        """Retention per masked layer (layer_retention.png)."""
        from jaxnets.methods.seam import plots

        return plots.plot_layer_retention(self.summary["layers"], Path(path))

    def describe(self) -> str:
        """The one line ``seam reengineer`` prints."""
        s, fl = self.summary, self.flops
        return (f"{s['model']} {self.target.describe()}: acc {s['acc']:.4f} (original {s['acc_pre']:.4f}), "
                f"retention {s['retention']:.4f} ({s['kept']}/{s['n_entries']}), epoch {s['epoch']}"
                f"{' (fallback)' if s['used_fallback'] else ''}; FLOPs {fl['flops_sparse'] / 1e6:.2f}M of "
                f"{fl['flops_dense'] / 1e6:.2f}M")


def reengineer(model: Model, data: Data, config: ReengineerConfig | None = None,
               run_dir: str | Path | RunDir | None = None, *, test_data: Data | None = None,
               devices: int | None = None, provenance: Mapping[str, Any] | None = None,
               resume: str | Path | None = None) -> ReengineerResult:
    """Re-engineer ``model`` for ``config.target``: train on ``data``, select on ``test_data``
    (§2.7; default: the test split of the same data); the result's ``model`` is the pruned net.

    ``devices`` > 1 shards each batch over that many devices. ``provenance`` (the CLI's other
    flags) is recorded in config.json next to the config. ``resume``: ``"auto"`` (the run
    folder's latest checkpoint, if any) or a run/checkpoints folder to continue from.
    """
    config = config or ReengineerConfig()
    if test_data is None:
        test_data = open_split(data.text, "test", partial=config.limit is not None)
    spec, module, variables = model.spec, model.module, model.variables
    normalize = (model.mean, model.std)
    problem = target_problem(model, data, test_data, config)
    target = problem.target
    run_dir = RunDir.of(run_dir, "seam reengineer", spec.name, resume=resume)
    # A bad resume folder fails here, before anything is written.
    resume_dir = find_resume(resume, run_dir) if resume is not None else None
    setup_jax(devices)
    mesh = None
    if devices and devices > 1:
        from jaxnets.train.parallel import check_divisible, make_mesh

        mesh = make_mesh(devices)
        check_divisible(config.batch_size, mesh)
    loaders = target_loaders(spec, problem.train, problem.test, batch_size=config.batch_size, seed=config.seed,
                             augment=config.augment, test_original=problem.test_original)
    acc_pre = original_accuracy(module, variables, loaders.original, normalize, target)
    if not 0 < acc_pre <= 1:
        raise JaxnetsError(f"the original model gets {acc_pre:.3f} on the target test set; SeaM's "
                           "selection needs an accuracy in (0, 1] (wrong --weights or data?)")
    recorded = {"model": spec.name, "weights": model.weights, "data": data.text, "normalize": None,
                "num_classes": None, "out": run_dir, "devices": devices, **(provenance or {}),
                **dataclasses.asdict(config)}
    recorded = json.loads(json.dumps(recorded, default=str))  # checkpoints store it as JSON
    if run_dir is not None:
        run_dir.write_config(recorded, resume_from=resumed_run_folder(resume, run_dir), target=target.to_json())
    info(f"SeaM {spec.name}: {target.describe()}; train {len(problem.train)}, test "
         f"{len(problem.test)} images; original accuracy {acc_pre:.4f}")
    if resume_dir is not None:
        info(f"resuming from {resume_dir}")

    def on_epoch(row: dict) -> None:
        info(f"epoch {row['epoch']:3d} ({row['phase']}) loss {row['train_loss']:.4f} "
             f"acc {row['test_acc']:.4f} retention {row['retention']:.4f} ({row['event']})")

    result = train_masks(module, variables, loaders.train, loaders.test, num_classes=model.num_classes,
                         num_targets=target.num_targets, normalize=normalize, acc_pre=acc_pre,
                         cfg=config, exclude=config.exclude_patterns, mesh=mesh, on_epoch=on_epoch,
                         run_dir=run_dir, resume=resume_dir, model_name=spec.name, record=recorded)
    kept = core.count_kept(result.scores)
    host = jax.device_get(variables)
    fl = flops.count_flops(module, host, spec.input_shape(1), scores=result.scores,
                           head_shape=(model.num_classes, target.num_targets))
    pruned = {"params": core.pruned_params(host["params"], result.scores)}
    if host.get("batch_stats"):
        pruned["batch_stats"] = host["batch_stats"]
    layers = core.per_layer_retention(result.scores)
    summary = {
        "schema": SCHEMA, "model": spec.name, "weights": str(model.weights or ""),
        "data": data.text, "target": target.to_json(), "seed": config.seed,
        "lr_head": config.lr_head, "lr_mask": config.lr_mask, "alpha": config.alpha,
        "epochs_run": len(result.history), "acc": result.acc, "acc_pre": acc_pre,
        "retention": kept / result.n_entries, "kept": kept, "n_entries": result.n_entries,
        "epoch": result.epoch, "used_fallback": result.used_fallback, "flops": fl,
        "params_original": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(host["params"]))),
        "layers": layers, "train_images": len(problem.train), "test_images": len(problem.test),
        "run_dir": str(run_dir) if run_dir is not None else None, "resumed_from": result.resumed_from,
        "history": result.history,
    }
    out = ReengineerResult(model=model.replace(pruned), head=result.head, scores=result.scores, target=target,
                           summary=summary, run_dir=run_dir, history=result.history)
    if run_dir is not None:
        maskdict.save_tree(run_dir / "scores.msgpack", result.scores)
        maskdict.save_tree(run_dir / "head.msgpack", result.head)
        maskdict.save_tree(run_dir / "pruned_params.msgpack", {**pruned, "head": result.head})
        maskdict.export_mask_dict(run_dir / "masks.pth", result.scores, result.head, spec.keymap)
        run_dir.write_json("metrics.json", summary)
        if config.plots:
            out.plot(run_dir / "history.png")
            out.plot_layers(run_dir / "layer_retention.png")
    return out


# --------------------------------------------------------------------------- saved modules


@dataclass
class SavedModule:
    """A re-engineered module to measure: a finished run folder's, or an original/released mask
    dict over a loaded model (:func:`open_module`)."""

    spec: Any
    module: Any
    variables: dict  # the dense original
    scores: Any
    head: dict | None  # None: a mask dict without ``module_head`` (defect_inherit's)
    num_classes: int  # C, the backbone's outputs
    normalize: tuple[tuple[float, ...], tuple[float, ...]]
    source: str  # the run folder or the mask file
    metrics: dict | None = None  # a run folder's metrics.json
    options: dict = field(default_factory=dict)  # a run folder's config.json options

    @property
    def num_targets(self) -> int | None:
        return None if self.head is None else int(np.shape(self.head["linear"]["kernel"])[1])


def _run_module(run: Path) -> SavedModule:
    cfg_path, met_path = run / "config.json", run / "metrics.json"
    if not cfg_path.is_file() or not met_path.is_file():
        raise JaxnetsError(f"{run} is not a finished SeaM run (needs config.json and metrics.json)")
    opts = json.loads(cfg_path.read_text())["options"]
    metrics = json.loads(met_path.read_text())
    spec = resolve(opts["model"])
    num_classes = int(opts.get("num_classes") or spec.num_classes)
    if spec.in_channels != 1 and opts["data"] == "digits":
        spec = adapt_to_data(spec, open_source("digits", "test"), num_classes)
    module = spec.create(num_classes)
    if opts.get("weights"):
        variables = load_weights(spec, module, opts["weights"])
    else:
        pruned = maskdict.load_tree(run / "pruned_params.msgpack")
        variables = init_variables(spec, module, int(opts.get("seed", 0)))
        if "batch_stats" in pruned:
            variables["batch_stats"] = pruned["batch_stats"]
        # Without a weights file the dense original is unknown beyond the kept entries; the
        # pretrained variables of a runner-made model are stored next to the run.
        orig = run / "original_params.msgpack"
        if orig.is_file():
            variables = maskdict.load_tree(orig)
    template = core.init_scores(variables["params"], exclude_patterns(opts.get("exclude")))
    scores = maskdict.load_tree(run / "scores.msgpack", template)
    head = maskdict.load_tree(run / "head.msgpack")
    mean, std = input_normalization(spec, opts.get("weights"), opts.get("normalize"))
    return SavedModule(spec=spec, module=module, variables=variables, scores=scores, head=head,
                       num_classes=num_classes, normalize=(tuple(mean), tuple(std)), source=str(run),
                       metrics=metrics, options=opts)


def _mask_file_module(model: Model, masks: Path) -> SavedModule:
    """An original mask dict over ``model``: direct reuse's (every conv/linear masked, with a
    ``module_head``) or defect_inherit's (the output layer unmasked, no head)."""
    params = model.variables["params"]
    try:
        scores, head = maskdict.import_mask_dict(masks, core.init_scores(params), model.spec.keymap)
    except CheckpointError as first:
        try:  # no masks for the output layer: defect_inherit's step_2_seam.pth
            scores, head = maskdict.import_mask_dict(masks, core.init_scores(params, [f"^{model.spec.head}/"]),
                                                     model.spec.keymap, skip_modules=(model.spec.head,))
        except CheckpointError:
            raise first from None
    if head is not None and int(np.shape(head["linear"]["kernel"])[0]) != model.num_classes:
        raise JaxnetsError(f"{masks}: its module head takes {np.shape(head['linear']['kernel'])[0]} logits, "
                           f"{model.name} has {model.num_classes} (--num-classes?)")
    return SavedModule(spec=model.spec, module=model.module, variables=dict(model.variables), scores=scores,
                       head=head, num_classes=model.num_classes, normalize=(model.mean, model.std),
                       source=str(masks), options={"model": model.name, "weights": str(model.weights or "")})


def find_mask_file(masks: str | Path, lr_head: float = 0.1, lr_mask: float = 0.1, alpha: float = 1.0) -> Path:
    """``masks`` itself, or — a folder holding the original's ``lr_head_mask_…_alpha_….pth``
    files (not a jaxnets run) — the one of these settings (``alpha_1.0`` or ``alpha_1``)."""
    path = Path(masks)
    if not path.is_dir():
        if not path.is_file():
            raise JaxnetsError(f"--masks {path} not found")
        return path
    name = maskdict.run_name(lr_head, lr_mask, alpha)
    candidates = [path / f"{name}.pth"]
    if float(alpha).is_integer():  # the original's unparsed default alpha=1 writes alpha_1 (pitfall 9)
        candidates.append(path / f"{name.rsplit('_', 1)[0]}_{int(alpha)}.pth")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise JaxnetsError(f"--masks {path}: no {candidates[0].name} in it (--lr-head/--lr-mask/--alpha locate the file)")


def open_module(run: str | Path | None = None, *, model: Model | None = None,
                masks: str | Path | None = None) -> SavedModule:
    """A finished ``seam reengineer`` run folder, or ``model`` with an original mask dict ``masks``
    (the authors' released masks, or ``masks.pth`` of a run)."""
    if (run is None) == (masks is None):
        raise JaxnetsError("give a run folder, or --model/--weights with --masks FILE.pth (not both)")
    if run is not None:
        return _run_module(Path(run))
    if model is None:
        raise JaxnetsError("--masks needs the model it was learnt on (--model and --weights)")
    return _mask_file_module(model, Path(masks))


def module_accuracy(saved: SavedModule, test_data: Data, target_text: str, *, superclass_type: str = "predefined",
                    n_classes: int | None = None, seed: int = 0, batch_size: int = 64) -> dict:
    """The module's K-way accuracy and the original model's (§3.1) on the target's test set."""
    target = parse_target(target_text, test_data.num_classes, superclass_type=superclass_type,
                          n_classes=n_classes, seed=seed)
    if saved.head is None:
        raise JaxnetsError(f"{saved.source} has no module head (module_head.1.*): no target accuracy to measure")
    if saved.num_targets != target.num_targets:
        raise JaxnetsError(f"the module head has {saved.num_targets} outputs, --target {target_text} "
                           f"{target.num_targets} classes")
    test, test_original = target_sources(test_data.source, target)
    original = original_accuracy(saved.module, saved.variables, test_loader(saved.spec, test_original, batch_size),
                                 saved.normalize, target)
    bs = saved.variables.get("batch_stats") or {}
    head_module = core.ModuleHead(target.num_targets, saved.num_classes)
    predict = jax.jit(lambda p, h, x: jnp.argmax(head_module.apply(
        {"params": h}, core.apply_backbone(saved.module, p, bs, normalize_images(x, saved.normalize))), -1))
    pruned = core.pruned_params(saved.variables["params"], saved.scores)
    correct, n = count_correct(predict, test_loader(saved.spec, test, batch_size), pruned, saved.head)
    return {"acc_pre": original, "acc": correct / max(n, 1), "test_images": n, "target": target.to_json()}


def _counts(saved: SavedModule) -> dict:
    kept, n = core.count_kept(saved.scores), core.num_entries(saved.scores)
    return {"kept": kept, "n_entries": n, "retention": kept / n if n else 0.0}


def _write(out_file: str | Path | None, data: dict) -> None:
    if out_file is not None:
        write_json(Path(out_file), data)


def module_flops(saved: SavedModule, *, accuracy: Mapping[str, Any] | None = None,
                 out_file: str | Path | None = None) -> dict:
    """Dense and sparse FLOPs (§3.3; the head counted when the module has one), the counts, and
    ``accuracy`` (:func:`module_accuracy`) or a run's recorded acc_pre/acc; prints the original
    script's lines. ``out_file``: where to write them (nothing without)."""
    head_shape = (saved.num_classes, saved.num_targets) if saved.head is not None else None
    out = flops.count_flops(saved.module, saved.variables, saved.spec.input_shape(1), scores=saved.scores,
                            head_shape=head_shape)
    out.update({"source": saved.source, **_counts(saved)})
    recorded = accuracy or ({k: saved.metrics[k] for k in ("acc_pre", "acc")} if saved.metrics else {})
    out.update(recorded)
    _write(out_file, out)
    lines = [f"Model ACC: {out['acc_pre']:.4f}", f"Reengineered model ACC: {out['acc']:.4f}"] if recorded else []
    print("\n".join([*lines, f"FLOPs Dense: {out['flops_dense'] / 1e6:.2f}M",
                     f"FLOPs Sparse: {out['flops_sparse'] / 1e6:.2f}M",
                     f"FLOP% (Sparse / Dense): {100 * out['ratio']:.2f}%"]))
    return out


def _check_timing(batch: int, warmup: int, repeats: int) -> None:
    if batch < 1 or repeats < 1 or warmup < 0:
        raise JaxnetsError("--batch and --repeats must be ≥ 1, --warmup ≥ 0")


def module_time(saved: SavedModule, *, batch: int = 16, warmup: int = 3, repeats: int = 10,
                out_file: str | Path | None = None) -> dict:
    """Dense XLA latency of the original vs the pruned backbone (head excluded, §3.4); prints the
    original script's lines. ``out_file``: where to write the numbers (nothing without)."""
    _check_timing(batch, warmup, repeats)
    out = timing.latency(saved.module, saved.variables, saved.scores, saved.spec.input_shape(1),
                         batch=batch, warmup=warmup, repeats=repeats)
    c = _counts(saved)
    out.update({"source": saved.source, "model_weights": c["n_entries"], "reengineered_weights": c["kept"],
                "pruned_ratio": 1 - c["retention"]})
    _write(out_file, out)
    print(f"Model weights: {c['n_entries'] / 1e6:.4f}M\nReengineered Model weights: {c['kept'] / 1e6:.4f}M\n"
          f"Pruned ratio: {out['pruned_ratio']:.4f}\n"
          f"Original: {out['original']['median_ms']:.2f} ms/batch, re-engineered: "
          f"{out['reengineered']['median_ms']:.2f} ms/batch (dense XLA, batch {batch}; "
          f"reduction {100 * out['reduction']:.1f}%, {out['machine']['device']})")
    return out


def module_eval(saved: SavedModule, test_data: Data, target_text: str, *, superclass_type: str = "predefined",
                n_classes: int | None = None, seed: int = 0, batch_size: int = 64,
                out_file: str | Path | None = None) -> dict:
    """The module's and the original model's accuracy on the target test set, with the weight
    counts; prints one line. ``out_file``: where to write them (nothing without)."""
    out = {"source": saved.source, "model": saved.spec.name, "data": test_data.text,
           **module_accuracy(saved, test_data, target_text, superclass_type=superclass_type, n_classes=n_classes,
                             seed=seed, batch_size=batch_size), **_counts(saved)}
    _write(out_file, out)
    print(f"Model ACC: {out['acc_pre']:.4f} | Reengineered model ACC: {out['acc']:.4f} | retention "
          f"{out['retention']:.4f} ({out['kept']}/{out['n_entries']})")
    return out


def run_flops(run: str | Path) -> dict:
    """``seam flops RUN``: the FLOPs of a run folder → ``RUN/flops.json``."""
    saved = _run_module(Path(run))  # a folder that is no run fails before anything is claimed
    claimed = RunDir(run, "seam reengineer").new_file("flops.json", "seam flops: result file")
    return module_flops(saved, out_file=claimed)


def run_time(run: str | Path, *, batch: int = 16, warmup: int = 3, repeats: int = 10) -> dict:
    """``seam time RUN``: the latencies of a run folder → ``RUN/time.json``."""
    _check_timing(batch, warmup, repeats)  # before the result file is claimed
    saved = _run_module(Path(run))
    claimed = RunDir(run, "seam reengineer").new_file("time.json", "seam time: result file")
    return module_time(saved, batch=batch, warmup=warmup, repeats=repeats, out_file=claimed)


# --------------------------------------------------------------------------- digits runner


def pretrain_digits(seed: int = 0, epochs: int = 15) -> dict:
    """A digits_cnn trained on scikit-learn's digits with the project's train step (seconds)."""
    spec = get_spec("digits_cnn")
    module = spec.create()
    variables = init_variables(spec, module, seed)
    state = TrainState.create(module, variables, optax.adam(3e-3), seed=seed)
    step = make_train_step(module, normalize=NORMALIZATIONS["digits"])
    loader = Loader(open_source("digits", "train"), 64, shuffle=True, seed=seed)
    for epoch in range(epochs):
        for batch in loader.epoch(epoch):
            state, _ = step(state, batch.images, batch.labels, batch.mask)
    return {"params": state.params, "batch_stats": state.batch_stats}


def run_digits(out: str | Path | None = None, *, target: str = "binary:3,8", epochs: int = 10,
               alpha: float = 1.0, lr_mask: float = 0.1, lr_head: float = 0.01, seed: int = 0,
               pretrain_epochs: int = 15, variables: Mapping | None = None) -> dict:
    """SeaM on the demo model: digits_cnn (pretrained here unless ``variables``) + digits, written
    to ``out/lr_head_mask_…`` (a temporary folder by default).

    Returns the headline numbers: retention, acc (re-engineered), acc_pre (original), FLOPs.
    """
    import tempfile

    if variables is None:
        variables = pretrain_digits(seed, pretrain_epochs)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="seam-digits-"))
    config = ReengineerConfig(target=target, epochs=epochs, alpha=alpha, lr_mask=lr_mask, lr_head=lr_head,
                              seed=seed, augment=False)
    train, test = open_split("digits", "train"), open_split("digits", "test")
    model = load("digits_cnn", data=train, seed=seed).replace(variables)
    result = reengineer(model, train, config, run_folder(out, config), test_data=test,
                        provenance={"out": Path(out)})
    print(result.describe())
    info(f"wrote {result.run_dir}")
    # Keep the dense original next to the run so `seam flops/time` can rebuild it.
    maskdict.save_tree(result.run_dir / "original_params.msgpack", dict(variables))
    s = result.summary
    return {"retention": s["retention"], "acc": s["acc"], "acc_pre": s["acc_pre"], "kept": s["kept"],
            "n_entries": s["n_entries"], "epoch": s["epoch"], "flops_dense": s["flops"]["flops_dense"],
            "flops_sparse": s["flops"]["flops_sparse"], "run_dir": s["run_dir"]}
