"""Training from an options mapping: the engine behind ``jaxnets train`` (the hyperplane paper's
train.py; specs/hyperplane-arrangements.md §4).

Fixed relative to the original (§7): resume continues after the last finished epoch; the final
snapshot is labelled with the number of finished epochs; stratified splits work; class
subsampling works for every data set and the class list is stored; kill-plateaus stops cleanly
(``converged: false``); top-5 only with more than 5 classes; Adam warns that it ignores weight
decay and momentum.

Options (and their defaults: :class:`jaxnets.methods.hyperplanes.config.TrainConfig`) beyond the
above: ``start_epoch`` (the first epoch's index, as the original), ``resume_from`` (an original
``<arch>_<e>.tar``: weights, the next epoch, SGD momentum / Adam moments where they map; see
:mod:`jaxnets.methods.hyperplanes.original`), ``eval_regularization_loss`` (the original's
``wd · Σ‖W‖₂`` diagnostic, then exit). Pixel shuffle with augmentation shuffles after the crop
and flip, as the original.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from jaxnets.data.classes import parse_classes
from jaxnets.methods.hyperplanes.config import TrainConfig

SNAPSHOT_SCHEMA = "jaxnets.train.snapshot/1"
REGULARIZATION_SCHEMA = "jaxnets.train.regularization/1"
DEFAULTS = TrainConfig()


def with_defaults(opts: Mapping[str, Any]) -> dict[str, Any]:
    """``opts`` over every option's default (a library caller names only what differs)."""
    return {**DEFAULTS.options(), **opts}


def _optimizer(opts: dict, steps_per_epoch: int):
    import optax

    from jaxnets.errors import JaxnetsError
    from jaxnets.ui import warn

    if opts["optimizer"] not in ("sgd", "adam"):
        raise JaxnetsError(f"--optimizer must be sgd or adam, got {opts['optimizer']!r}")
    lr = opts["lr"]
    if opts["lr_step"] > 0 and opts["lr_decay"] > 0:
        # Step-LR per epoch. The original applies it to SGD only and silently ignores it for
        # Adam; here it applies to both (the default, --lr-step 0, is unchanged).
        period = opts["lr_step"] * steps_per_epoch
        decay = opts["lr_decay"]
        lr = lambda count: opts["lr"] * decay ** (count // period)  # noqa: E731
    if opts["optimizer"] == "adam":
        if opts["weight_decay"] not in (0, DEFAULTS.weight_decay) or opts["momentum"] != DEFAULTS.momentum:
            warn("adam ignores --weight-decay and --momentum (as the original does)")
        return optax.adam(lr)
    return optax.chain(optax.add_decayed_weights(opts["weight_decay"]),
                       optax.sgd(lr, momentum=opts["momentum"] or None))


def _check(opts: dict) -> None:
    from jaxnets.errors import JaxnetsError

    if opts["epochs"] < 1:
        raise JaxnetsError("--epochs must be ≥ 1")
    if opts["noise"] > 1 or (0 > opts["noise"] != -1):
        raise JaxnetsError("--noise must be in (0, 1] for label noise, -1 for pixel shuffle, or 0")
    if opts["split"] and not 0 < opts["split"] < 1:
        raise JaxnetsError("--split must lie in (0, 1)")
    start = opts["start_epoch"]
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise JaxnetsError(f"--start-epoch must be a whole number ≥ 0, got {start!r}")
    if opts["precision"] not in ("fp32", "bf16"):
        raise JaxnetsError("--precision must be fp32 or bf16")


class TrainSources(NamedTuple):
    train: Any
    val: Any  # None: validate on the test set (the original's default)
    test: Any
    num_classes: int
    class_list: list[int] | None
    # the training images' pixel shuffle (--noise -1), for the loaders to apply after the
    # augmentation: (batch, positions in ``train``) -> batch; None without the shuffle
    pixel_shuffle: Callable[[Any, Any], Any] | None


def _shuffle_pixels(perms: Any, train_positions: Any, images: Any, positions: Any) -> Any:
    """Shuffle a batch of training images (rows at ``positions`` of the training source) with the
    permutations of their positions in the full training set."""
    return perms.apply(images, train_positions[positions])


def build_sources(opts: dict) -> TrainSources:
    """Train / validation / test sources with label noise, split and class subsampling applied, at
    the size the model sees: the data's own, or ``--upscale``'s (never an automatic resize); and
    the pixel shuffle, which the loaders apply last (after the crop and flip, as the original)."""
    import functools

    import numpy as np

    from jaxnets.data import corruption, splits
    from jaxnets.data.resize import FixedSizeSource, parse_upscale
    from jaxnets.data.sources import Source, Subset
    from jaxnets.data.spec import open_source
    from jaxnets.errors import JaxnetsError

    upscale = parse_upscale(opts.get("upscale"), opts.get("upscale_padding"))
    if upscale is not None and opts["noise"] == -1:
        raise JaxnetsError("pixel shuffle (--noise -1) with --upscale is not supported: the original shuffles "
                           "the pixels of the final (upscaled) image and crashes with --upscale")
    classes = parse_classes(opts["classes"])
    train_src = open_source(opts["data"], "train", limit=opts["limit"], classes=classes)
    test_src = open_source(opts["data"], "test", classes=classes)
    class_list = None
    if opts["subsample_classes"]:
        present = sorted({int(c) for c in np.unique(train_src.labels)})
        class_list = splits.subsample_classes(present, opts["subsample_classes"], shuffle=opts["shuffle"],
                                       seed=opts["class_sample_seed"])
        train_src, test_src = splits.relabel(train_src, class_list), splits.relabel(test_src, class_list)
    n_classes = opts["num_classes"] or (len(class_list) if class_list else train_src.num_classes)
    # Corruption draws over the training indices in dataset order, before any split (as the original).
    full = train_src
    train_idx = np.arange(len(full))
    val_src = None
    if opts["split"]:
        train_idx, val_idx = splits.validation_split(len(full), full.labels, opts["split"], shuffle=opts["shuffle"],
                                                     seed=opts["split_seed"], stratified=opts["stratified"])
        val_src = Subset(full, val_idx)
    if opts["noise"] > 0:
        labels = corruption.noisy_labels(np.asarray(full.labels), opts["noise"], n_classes, opts["noise_seed"],
                                         train_indices=train_idx)
        full = corruption.CorruptedSource(full, labels=labels)
    pixel_shuffle = None
    if opts["noise"] == -1:
        if full.image_shape is None:
            raise JaxnetsError("pixel shuffle (--noise -1) needs images of one size (CIFAR, MNIST, digits)")
        h, w = full.image_shape[:2]
        # one permutation per training image, drawn once (fixed for the run), keyed by its position
        # in the full training set; the validation images (no draw) stay unshuffled
        perms = corruption.pixel_shuffle_permutations(len(full), train_idx, h * w, opts["noise_seed"])

        pixel_shuffle = functools.partial(_shuffle_pixels, perms, train_idx)
    train_src = Subset(full, train_idx) if opts["split"] else full

    def as_fed(source: Source | None) -> Source | None:
        # As the original train.py: CIFAR-size data reaches every model at its own size (or the
        # --upscale size); only images of varying size (ImageNet) get the ImageNet resize/crop.
        if source is None or (upscale is None and source.image_shape is None):
            return source
        return FixedSizeSource(source, upscale)

    return TrainSources(as_fed(train_src), as_fed(val_src), as_fed(test_src), n_classes, class_list, pixel_shuffle)


def make_train_loader(spec: Any, sources: TrainSources, opts: Mapping[str, Any]) -> Any:
    """The training loader of ``run_train``: shuffling, augmentation, then the pixel shuffle."""
    from jaxnets.data.pipeline import train_loader

    return train_loader(spec, sources.train, opts["batch_size"], seed=opts["seed"], augment=opts["augmentation"],
                        shuffle=opts["shuffle"] or bool(opts["split"]), after_augment=sources.pixel_shuffle)


def _start_epoch(opts: Mapping[str, Any], original: Any) -> int:
    """The first epoch to train: after the original snapshot's last finished one, else --start-epoch."""
    from jaxnets.errors import JaxnetsError
    from jaxnets.ui import warn

    start = opts["start_epoch"]
    from_snapshot = original is not None and original.next_epoch is not None
    if from_snapshot:
        if start and start != original.next_epoch:
            warn(f"--start-epoch {start} ignored: {original.path.name} finished epoch {original.epoch}, "
                 f"training continues at epoch {original.next_epoch}")
        start = original.next_epoch
    if start >= opts["epochs"]:
        where = (f"{original.path.name} finished epoch {original.epoch} (0-based), so training would start at "
                 f"epoch {start}") if from_snapshot else f"--start-epoch is {start}"
        raise JaxnetsError(f"nothing to train: {where} and --epochs {opts['epochs']} is the end epoch "
                           f"(the original trains epochs start..end-1); pass --epochs > {start}")
    return start


def _regularization_report(variables: Mapping, opts: Mapping[str, Any], model: str, weights: str | None) -> dict:
    from jaxnets.methods.hyperplanes.original import regularization_loss

    loss = regularization_loss(variables, opts["weight_decay"])
    return {"schema": REGULARIZATION_SCHEMA, "model": model, "weights": weights, "weight_decay": opts["weight_decay"],
            "regularization_loss": loss.value, "weight_norm_sum": loss.norm_sum, "weight_tensors": loss.tensors}


def run_train(opts: Mapping[str, Any]) -> dict:
    """Train (or evaluate) as ``jaxnets train`` does; ``opts`` over :class:`TrainConfig`'s defaults
    (plus ``model``). Returns the report written to ``results.json``."""
    import json
    import shutil

    import jax
    import jax.numpy as jnp

    from jaxnets.data.pipeline import adapt_to_data, eval_loader
    from jaxnets.errors import JaxnetsError
    from jaxnets.io import checkpoint_problem, save_variables
    from jaxnets.methods.hyperplanes.original import (
        read_original_snapshot,
        restore_optimizer_state,
        set_schedule_position,
    )
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.models.weights import input_normalization
    from jaxnets.rundir import RunDir
    from jaxnets.runtime import parse_devices, setup_jax
    from jaxnets.train.checkpoint import find_resume, resumed_run_folder
    from jaxnets.train.evaluate import evaluate as run_eval
    from jaxnets.train.loop import fit
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step
    from jaxnets.ui import info, warn

    opts = with_defaults(opts)
    _check(opts)
    if opts.get("coordinator") or opts.get("num_processes") is not None:
        from jaxnets.train.parallel import maybe_initialize_distributed

        maybe_initialize_distributed(opts.get("coordinator"), opts.get("num_processes"), opts.get("process_id"))
    spec = resolve(opts["model"])
    n_devices = parse_devices(opts["devices"])
    mesh = None
    if n_devices:
        from jaxnets.train.parallel import check_divisible, make_mesh

        mesh = make_mesh(n_devices)
        check_divisible(opts["batch_size"], mesh)
    sources = build_sources(opts)
    train_src, val_src, test_src, n_classes = sources.train, sources.val, sources.test, sources.num_classes
    spec = adapt_to_data(spec, train_src, n_classes)
    setup_jax(n_devices)
    module = spec.create(n_classes)
    # An original snapshot is read before the run folder is opened: a bad file creates nothing.
    original = read_original_snapshot(opts["resume_from"], spec, module) if opts["resume_from"] else None
    only_evaluate = opts["evaluate"] or opts["evaluate_train"] or opts["eval_regularization_loss"]
    start_epoch = 0 if only_evaluate else _start_epoch(opts, original)
    # Several processes share one --out: process 0 writes the files (the others only join the
    # checkpoint saves), so only it applies the no-overwrite rule (the others may see its files).
    primary = jax.process_index() == 0
    run_dir = RunDir.create(opts["out"], "train", spec.name, resume=opts["resume"] or not primary)
    if not opts["shuffle"] and not opts["split"]:
        warn("--shuffle is off (the original's default): training batches come in the same order every epoch")
    mean, std = ((0.0,) * spec.in_channels, (1.0,) * spec.in_channels) if opts["unnormalize"] \
        else input_normalization(spec, opts["pretrained"], opts["normalize"])
    if original is not None:  # as the original: the snapshot's weights replace any --pretrained start
        variables = original.variables
    elif opts["pretrained"]:
        variables = load_weights(spec, module, opts["pretrained"])
    else:
        variables = init_variables(spec, module, opts["seed"])

    def evaluate_on(variables, source, name: str, after_augment=None) -> dict:
        r = run_eval(module, variables, eval_loader(spec, source, opts["batch_size"], after_augment=after_augment),
                     mean, std, n_classes, mesh=mesh, description=name)
        return {f"{name}_top1": r.top1, **({f"{name}_top5": r.top5} if r.top5 is not None else {})}

    if primary:
        run_dir.write_config(opts, resume_from=resumed_run_folder(opts["resume"], run_dir))
    # The original's order: --evaluate, then --evaluate-train, then --eval-regularization-loss.
    if opts["evaluate"] or opts["evaluate_train"]:
        if opts["evaluate"]:
            result = evaluate_on(variables, test_src, name := "test")
        else:
            result = evaluate_on(variables, train_src, name := "train", sources.pixel_shuffle)
        if primary:
            run_dir.write_json("results.json", {"schema": "jaxnets.train.evaluate/1", "model": spec.name, **result})
        print(f"{spec.name}: {name} top-1 {100 * result[f'{name}_top1']:.2f} %")
        return result
    if opts["eval_regularization_loss"]:
        weights = opts["resume_from"] or opts["pretrained"]
        report = _regularization_report(variables, opts, spec.name, str(weights) if weights else None)
        if primary:
            run_dir.write_json("results.json", report)
        print(f"{spec.name}: regularization loss {report['regularization_loss']:.6f} (weight decay "
              f"{opts['weight_decay']} × Σ‖W‖₂ {report['weight_norm_sum']:.6f} over {report['weight_tensors']} "
              "weight tensors)")
        return report

    loader = make_train_loader(spec, sources, opts)
    steps = loader.steps_per_epoch
    if steps < 1:
        raise JaxnetsError(f"--batch-size {opts['batch_size']} is larger than the training set ({len(train_src)})")
    state = TrainState.create(module, variables, _optimizer(opts, steps), seed=opts["seed"])
    resuming = opts["resume"] is not None and find_resume(opts["resume"], run_dir) is not None
    resume = opts["resume"]
    config = json.loads(json.dumps(opts, default=str))
    if start_epoch and not resuming:
        # Start as a run resumed at (start_epoch, step 0): the global step (so the snapshot
        # schedule, the epoch rows and the per-step PRNG keys count from there) and, from an
        # original snapshot, its optimiser moments and the LR schedule's position. With
        # --start-epoch alone the schedule starts afresh, as the original's new StepLR does.
        opt_state, notes = state.opt_state, []
        if original is not None and original.next_epoch is not None:
            opt_state, notes = restore_optimizer_state(opt_state, original, spec, state.params, opts)
            opt_state = set_schedule_position(opt_state, start_epoch * steps)
        for note in notes:
            warn(note)
        state = state.replace(step=jnp.asarray(start_epoch * steps, state.step.dtype), opt_state=opt_state)
        info(f"starting at epoch {start_epoch}" + (f" from {original.path} (epoch {original.epoch} finished)"
                                                   if original is not None and original.epoch is not None else ""))
    step_fn = make_train_step(module, normalize=(mean, std), precision=opts["precision"], mesh=mesh)
    val_name = "val" if val_src is not None else "test"
    val_source = val_src if val_src is not None else test_src
    snapshots = run_dir / "snapshots"
    epochs = opts["epochs"]
    meta_base = {"schema": SNAPSHOT_SCHEMA, "model": spec.name, "arch": spec.name, "dataset": opts["data"],
                 "num_classes": n_classes, "class_list": sources.class_list, "noise": opts["noise"],
                 "noise_seed": opts["noise_seed"], "split": opts["split"], "split_seed": opts["split_seed"],
                 "seed": opts["seed"], "val_is_test": val_src is None,
                 "start_epoch": start_epoch, "resume_from": str(original.path) if original is not None else None,
                 # the size the model was fed (None: the data's own), for whoever loads the snapshot
                 "upscale": opts.get("upscale"), "upscale_padding": opts.get("upscale_padding"),
                 # what every later command feeds it (jaxnets.models.weights.weights_preprocessing)
                 "preprocessing": {"mean": list(mean), "std": list(std), "num_classes": n_classes,
                                   "input_size": int(train_src.image_shape[0]) if train_src.image_shape else None}}

    def snapshot(variables, label: str, epoch: int, **extra) -> None:
        target = snapshots / f"{spec.name}_{label}"
        if not primary:
            return
        if target.exists():
            problem = checkpoint_problem(target)
            if problem is None:
                return  # written whole by the interrupted run this one resumes
            warn(f"rewriting the damaged snapshot {target.name}: {problem}")
            shutil.rmtree(target)
        save_variables(target, jax.device_get(variables), {**meta_base, "epoch": epoch, **extra})

    if start_epoch == 0 and not resuming:  # as the original: the start weights only when starting at 0
        snapshot(variables, "pretrained_0" if opts["pretrained"] else "init_0", 0, epoch_completed=0)

    def is_snapshot_epoch(e: int) -> bool:
        every = opts["snapshot_every"] if opts["snapshot_every"] >= 1 else epochs
        return e < opts["snapshot_all_until"] or (e + 1) % every == 0 or e + 1 == epochs

    def eval_fn(state) -> dict:
        e = int(jax.device_get(state.step)) // steps - 1
        if not is_snapshot_epoch(e):
            return {}
        row = evaluate_on(state.variables, val_source, val_name)
        if opts["train_acc"]:
            row.update(evaluate_on(state.variables, train_src, "train_eval", sources.pixel_shuffle))
        return row

    plateau = {"previous": 0.0, "converged": True}

    def on_epoch_end(state, row) -> bool:
        key = f"{val_name}_top1"
        if key not in row:
            return False
        e = row["epoch"]
        stop = opts["kill_plateaus"] and row[key] == plateau["previous"]
        plateau["previous"] = row[key]
        snapshot(state.variables, str(e), e, epoch_completed=e + 1, top1_acc=row[key],
                 top5_acc=row.get(f"{val_name}_top5"))
        if stop:
            plateau["converged"] = False
            warn(f"plateau: identical {val_name} top-1 at two consecutive evaluations (epoch {e}); stopping")
        return stop

    result = fit(state, step_fn, loader, epochs=epochs, run_dir=run_dir, eval_fn=eval_fn, resume=resume,
                 start_epoch=0 if resuming else start_epoch,
                 model_name=spec.name, config=config, mesh=mesh, checkpoint_every=opts["checkpoint_every"],
                 on_epoch_end=[on_epoch_end], progress=None)
    final = result.state.variables
    test = evaluate_on(final, test_src, "test")
    finished = int(jax.device_get(result.state.step)) // steps
    if plateau["converged"]:
        snapshot(final, f"final_{finished}", finished, epoch_completed=finished, converged=True,
                 top1_acc=test["test_top1"], top5_acc=test.get("test_top5"))
    report = {"schema": "jaxnets.train/1", "model": spec.name, "epochs_completed": finished,
              "start_epoch": start_epoch, "resume_from": meta_base["resume_from"],
              "converged": plateau["converged"], **test, "history": result.history,
              "run_dir": str(run_dir), "snapshots": str(snapshots),
              "final_snapshot": str(snapshots / f"{spec.name}_final_{finished}") if plateau["converged"] else None}
    if primary:
        run_dir.write_json("results.json", report)
    print(f"{spec.name}: test top-1 {100 * test['test_top1']:.2f} % after {finished} epoch(s); run folder {run_dir}")
    info(f"snapshots in {snapshots}")
    return report
