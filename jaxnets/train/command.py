"""Training from an options mapping: the engine behind ``jaxnets train`` (the hyperplane paper's
train.py; specs/hyperplane-arrangements.md §4).

Fixed relative to the original (§7): resume continues after the last finished epoch; the final
snapshot is labelled with the number of finished epochs; stratified splits work; class
subsampling works for every data set and the class list is stored; kill-plateaus stops cleanly
(``converged: false``); top-5 only with more than 5 classes; Adam warns that it ignores weight
decay and momentum.
"""

from __future__ import annotations

from jaxnets.data.classes import parse_classes

SNAPSHOT_SCHEMA = "jaxnets.train.snapshot/1"


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
        if opts["weight_decay"] not in (0, 1e-4) or opts["momentum"] != 0.9:
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
    if opts["noise"] == -1 and opts["augmentation"]:
        raise JaxnetsError("pixel shuffle (--noise -1) with --augmentation is not supported yet: the original "
                           "shuffles after cropping, which would need the shuffle inside the loader")
    if opts["precision"] not in ("fp32", "bf16"):
        raise JaxnetsError("--precision must be fp32 or bf16")


def build_sources(opts: dict):
    """Train / validation / test sources with corruption, split and class subsampling applied, at
    the size the model sees: the data's own, or ``--upscale``'s (never an automatic resize)."""
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
    elif opts["noise"] == -1:
        h, w = full.image_shape[:2]
        perms = corruption.pixel_shuffle_permutations(len(full), train_idx, h * w, opts["noise_seed"])
        full = corruption.CorruptedSource(full, pixel_perms=perms)
    train_src = Subset(full, train_idx) if opts["split"] else full

    def as_fed(source: Source | None) -> Source | None:
        # As the original train.py: CIFAR-size data reaches every model at its own size (or the
        # --upscale size); only images of varying size (ImageNet) get the ImageNet resize/crop.
        if source is None or (upscale is None and source.image_shape is None):
            return source
        return FixedSizeSource(source, upscale)

    return as_fed(train_src), as_fed(val_src), as_fed(test_src), n_classes, class_list


def run_train(opts: dict) -> dict:
    import json
    import shutil

    import jax

    from jaxnets.data.pipeline import adapt_to_data, eval_loader, train_loader
    from jaxnets.errors import JaxnetsError
    from jaxnets.io import checkpoint_problem, save_variables
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.models.weights import input_normalization
    from jaxnets.rundir import RunDir
    from jaxnets.runtime import parse_devices, setup_jax
    from jaxnets.train.checkpoint import resumed_run_folder
    from jaxnets.train.evaluate import evaluate as run_eval
    from jaxnets.train.loop import fit
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step
    from jaxnets.ui import info, warn

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
    train_src, val_src, test_src, n_classes, class_list = build_sources(opts)
    spec = adapt_to_data(spec, train_src, n_classes)
    # Several processes share one --out: process 0 writes the files (the others only join the
    # checkpoint saves), so only it applies the no-overwrite rule (the others may see its files).
    primary = jax.process_index() == 0
    run_dir = RunDir.create(opts["out"], "train", spec.name, resume=opts["resume"] or not primary)
    setup_jax(n_devices)
    if not opts["shuffle"] and not opts["split"]:
        warn("--shuffle is off (the original's default): training batches come in the same order every epoch")
    mean, std = ((0.0,) * spec.in_channels, (1.0,) * spec.in_channels) if opts["unnormalize"] \
        else input_normalization(spec, opts["pretrained"], opts["normalize"])
    module = spec.create(n_classes)
    if opts["pretrained"]:
        variables = load_weights(spec, module, opts["pretrained"])
    else:
        variables = init_variables(spec, module, opts["seed"])

    def evaluate_on(variables, source, name: str) -> dict:
        r = run_eval(module, variables, eval_loader(spec, source, opts["batch_size"]), mean, std, n_classes,
                     mesh=mesh, description=name)
        return {f"{name}_top1": r.top1, **({f"{name}_top5": r.top5} if r.top5 is not None else {})}

    if primary:
        run_dir.write_config(opts, resume_from=resumed_run_folder(opts["resume"], run_dir))
    if opts["evaluate"] or opts["evaluate_train"]:
        src, name = (test_src, "test") if opts["evaluate"] else (train_src, "train")
        result = evaluate_on(variables, src, name)
        if primary:
            run_dir.write_json("results.json", {"schema": "jaxnets.train.evaluate/1", "model": spec.name, **result})
        print(f"{spec.name}: {name} top-1 {100 * result[f'{name}_top1']:.2f} %")
        return result

    loader = train_loader(spec, train_src, opts["batch_size"], seed=opts["seed"], augment=opts["augmentation"],
                          shuffle=opts["shuffle"] or bool(opts["split"]))
    steps = loader.steps_per_epoch
    if steps < 1:
        raise JaxnetsError(f"--batch-size {opts['batch_size']} is larger than the training set ({len(train_src)})")
    state = TrainState.create(module, variables, _optimizer(opts, steps), seed=opts["seed"])
    step_fn = make_train_step(module, normalize=(mean, std), precision=opts["precision"], mesh=mesh)
    val_name = "val" if val_src is not None else "test"
    val_source = val_src if val_src is not None else test_src
    snapshots = run_dir / "snapshots"
    epochs = opts["epochs"]
    meta_base = {"schema": SNAPSHOT_SCHEMA, "model": spec.name, "arch": spec.name, "dataset": opts["data"],
                 "num_classes": n_classes, "class_list": class_list, "noise": opts["noise"],
                 "noise_seed": opts["noise_seed"], "split": opts["split"], "split_seed": opts["split_seed"],
                 "seed": opts["seed"], "val_is_test": val_src is None,
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

    if not opts["resume"] or not (run_dir / "checkpoints").exists():
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
            row.update(evaluate_on(state.variables, train_src, "train_eval"))
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

    result = fit(state, step_fn, loader, epochs=epochs, run_dir=run_dir, eval_fn=eval_fn, resume=opts["resume"],
                 model_name=spec.name, config=json.loads(json.dumps(opts, default=str)), mesh=mesh,
                 checkpoint_every=opts["checkpoint_every"],
                 on_epoch_end=[on_epoch_end], progress=None)
    final = result.state.variables
    test = evaluate_on(final, test_src, "test")
    finished = int(jax.device_get(result.state.step)) // steps
    if plateau["converged"]:
        snapshot(final, f"final_{finished}", finished, epoch_completed=finished, converged=True,
                 top1_acc=test["test_top1"], top5_acc=test.get("test_top5"))
    report = {"schema": "jaxnets.train/1", "model": spec.name, "epochs_completed": finished,
              "converged": plateau["converged"], **test, "history": result.history,
              "run_dir": str(run_dir), "snapshots": str(snapshots),
              "final_snapshot": str(snapshots / f"{spec.name}_final_{finished}") if plateau["converged"] else None}
    if primary:
        run_dir.write_json("results.json", report)
    print(f"{spec.name}: test top-1 {100 * test['test_top1']:.2f} % after {finished} epoch(s); run folder {run_dir}")
    info(f"snapshots in {snapshots}")
    return report
