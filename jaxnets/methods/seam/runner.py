"""Plain runners behind ``jaxnets seam …`` (and the demo): options dict in, summary dict out.

Run folder (``OUT/lr_head_mask_{lr_head}_{lr_mask}_alpha_{alpha}``): ``config.json``,
``metrics.jsonl`` (one row per epoch), ``metrics.json`` (acc, acc_pre, WRR, kept/N, FLOPs,
chosen epoch, seed, flags), ``scores.msgpack`` + ``head.msgpack`` (the chosen snapshot),
``pruned_params.msgpack`` (params ⊙ 1[s > 0] and batch_stats), ``masks.pth`` (the original
mask-dict format), ``history.png`` and ``layer_retention.png``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError

SCHEMA = "jaxnets.seam/1"

DEFAULTS: dict[str, Any] = {
    "weights": None, "data": "digits", "target": "binary:0", "superclass_type": "predefined",
    "n_classes": None, "lr_head": 0.1, "lr_mask": 0.1, "alpha": 1.0, "epochs": 300,
    "early_stop": -1, "batch_size": 64, "seed": 0, "limit": None, "test_limit": None,
    "normalize": None, "augment": True, "num_classes": None, "exclude": None, "out": None,
    "devices": "1", "plots": True,
}


def _check(opts: Mapping[str, Any]) -> None:
    if opts["alpha"] is None or float(opts["alpha"]) < 0:
        raise JaxnetsError(f"--alpha must be ≥ 0 (got {opts['alpha']})")
    for key in ("lr_head", "lr_mask"):
        if float(opts[key]) <= 0:
            raise JaxnetsError(f"--{key.replace('_', '-')} must be > 0 (got {opts[key]})")
    if int(opts["epochs"]) < 1:
        raise JaxnetsError(f"--epochs must be at least 1 (got {opts['epochs']})")
    if int(opts["batch_size"]) < 1:
        raise JaxnetsError(f"--batch-size must be at least 1 (got {opts['batch_size']})")
    es = int(opts["early_stop"])
    if es == 0 or es < -1:
        raise JaxnetsError(f"--early-stop must be -1 (never) or ≥ 1 (got {es})")


def _loaders(spec: Any, train_src: Any, test_src: Any, batch: int, seed: int, augment: bool,
             orig_src: Any = None) -> tuple:
    from jaxnets.data import transforms
    from jaxnets.data.loader import Loader

    shape = getattr(test_src, "image_shape", None)
    big = spec.input_size >= 128 and (shape is None or shape[0] != spec.input_size)
    per_train = (transforms.imagenet_train if augment else transforms.imagenet_eval) if big else None
    per_eval = transforms.imagenet_eval if big else None
    batch_aug = transforms.cifar_augment if (augment and not big and shape is not None
                                              and shape[0] == 32) else None
    # Last partial batch kept (§2.6): padded to a fixed shape, the padding masked out of the loss.
    train = Loader(train_src, batch, shuffle=True, seed=seed, drop_last=False, pad_last=True,
                   per_image=per_train, augment=batch_aug)
    test = Loader(test_src, batch, shuffle=False, pad_last=True, per_image=per_eval)
    orig = Loader(orig_src, batch, shuffle=False, pad_last=True, per_image=per_eval) \
        if orig_src is not None else None
    return train, test, orig


def original_accuracy(module: Any, variables: Mapping, loader: Any, normalize: Any, target: Any,
                      mesh: Any = None) -> float:
    """The original model on the target test set, by the definition of §3.1."""
    import jax
    import jax.numpy as jnp

    from jaxnets.methods.seam import core
    from jaxnets.methods.seam.targets import original_correct
    from jaxnets.train.steps import normalize_images

    bs = variables.get("batch_stats") or {}
    fn = jax.jit(lambda p, b, x: jnp.argmax(core.apply_backbone(module, p, b, normalize_images(x, normalize)), -1))
    preds, labels = [], []
    for batch in loader.epoch(0):
        p = np.asarray(fn(variables["params"], bs, batch.images))
        preds.append(p[batch.mask])
        labels.append(batch.labels[batch.mask])
    ok = original_correct(np.concatenate(preds), np.concatenate(labels), target)
    return float(ok.mean()) if len(ok) else 0.0


def prepare(opts: Mapping[str, Any]) -> dict:
    """Model, weights, target and data of a re-engineering run (no training)."""
    from jaxnets.data.pipeline import adapt_to_data
    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalization_for
    from jaxnets.methods.seam.targets import parse_target, target_sources
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.ui import warn

    spec = resolve(opts["model"])
    cache = False if opts.get("limit") is not None else None
    train = open_source(opts["data"], "train", cache=cache)
    test = open_source(opts["data"], "test", cache=cache)
    num_classes = int(opts.get("num_classes") or spec.num_classes)
    target = parse_target(opts["target"], train.num_classes,
                          superclass_type=opts.get("superclass_type") or "predefined",
                          n_classes=opts.get("n_classes"), seed=int(opts.get("seed", 0)))
    if max(target.classes) >= num_classes:
        raise JaxnetsError(f"--target class {max(target.classes)} is out of range for {spec.name} "
                           f"with {num_classes} classes")
    spec = adapt_to_data(spec, test, num_classes)
    module = spec.create(num_classes)
    if opts.get("variables") is not None:
        variables = opts["variables"]
    elif opts.get("weights") is None:
        warn(f"no --weights given: re-engineering a randomly initialised {spec.name}")
        variables = init_variables(spec, module, int(opts.get("seed", 0)))
    else:
        variables = load_weights(spec, module, opts["weights"])
    limit, test_limit = opts.get("limit"), opts.get("test_limit")
    if test_limit is None:
        test_limit = limit
    train_src, _ = target_sources(train, target, limit)
    test_src, test_orig = target_sources(test, target, test_limit)
    normalize = normalization_for(spec, opts.get("normalize"))
    return {"spec": spec, "module": module, "variables": variables, "target": target,
            "train": train_src, "test": test_src, "test_orig": test_orig,
            "num_classes": num_classes, "normalize": normalize}


def _exclude(opts: Mapping[str, Any]) -> Any:
    ex = opts.get("exclude")
    if ex in (None, "", []):
        return None
    return [ex] if isinstance(ex, str) else list(ex)


def run_reengineer(opts: Mapping[str, Any]) -> dict:
    """Re-engineer a model for a target problem; write the run folder; return the summary."""
    import jax

    from jaxnets.methods.seam import core, flops, maskdict
    from jaxnets.methods.seam.reengineer import SeamConfig, reengineer
    from jaxnets.runtime import create_run_dir, default_run_path, parse_devices, setup_jax, write_json
    from jaxnets.train.logging import write_config
    from jaxnets.ui import info

    opts = {**DEFAULTS, **dict(opts)}
    _check(opts)
    n_devices = parse_devices(opts.get("devices"))
    prep = prepare(opts)
    spec, module, variables, target = prep["spec"], prep["module"], prep["variables"], prep["target"]
    # As the original, one --out holds one sub-folder per (lr_head, lr_mask, alpha) setting; the
    # no-overwrite rule applies to that sub-folder.
    base = default_run_path(opts["out"], "seam", spec.name)
    run_dir = create_run_dir(base / maskdict.run_name(opts["lr_head"], opts["lr_mask"], opts["alpha"]), "seam")
    setup_jax(n_devices)
    mesh = None
    if n_devices and n_devices > 1:
        from jaxnets.train.parallel import check_divisible, make_mesh

        mesh = make_mesh(n_devices)
        check_divisible(int(opts["batch_size"]), mesh)
    cfg = SeamConfig(lr_head=float(opts["lr_head"]), lr_mask=float(opts["lr_mask"]),
                     alpha=float(opts["alpha"]), epochs=int(opts["epochs"]),
                     early_stop=int(opts["early_stop"]), seed=int(opts["seed"]))
    train_l, test_l, orig_l = _loaders(spec, prep["train"], prep["test"], int(opts["batch_size"]),
                                       int(opts["seed"]), bool(opts["augment"]), prep["test_orig"])
    acc_pre = original_accuracy(module, variables, orig_l, prep["normalize"], target)
    if not 0 < acc_pre <= 1:
        raise JaxnetsError(f"the original model gets {acc_pre:.3f} on the target test set; SeaM's "
                           "selection needs an accuracy in (0, 1] (wrong --weights or data?)")
    cfg_json = {k: v for k, v in opts.items() if k != "variables"}
    write_config(run_dir, cfg_json, "seam reengineer", target=target.to_json())
    info(f"SeaM {spec.name}: {target.describe()}; train {len(prep['train'])}, test "
         f"{len(prep['test'])} images; original accuracy {acc_pre:.4f}")
    jsonl = (run_dir / "metrics.jsonl").open("w")

    def on_epoch(row: dict) -> None:
        jsonl.write(json.dumps(row) + "\n")
        jsonl.flush()
        info(f"epoch {row['epoch']:3d} ({row['phase']}) loss {row['train_loss']:.4f} "
             f"acc {row['test_acc']:.4f} retention {row['retention']:.4f} ({row['event']})")

    try:
        result = reengineer(module, variables, train_l, test_l, num_classes=prep["num_classes"],
                            num_targets=target.num_targets, normalize=prep["normalize"],
                            acc_pre=acc_pre, cfg=cfg, exclude=_exclude(opts), mesh=mesh,
                            on_epoch=on_epoch)
    finally:
        jsonl.close()
    kept = core.count_kept(result.scores)
    fl = flops.count_flops(module, jax.device_get(variables), spec.input_shape(1),
                           scores=result.scores, head_shape=(prep["num_classes"], target.num_targets))
    maskdict.save_tree(run_dir / "scores.msgpack", result.scores)
    maskdict.save_tree(run_dir / "head.msgpack", result.head)
    pruned = {"params": core.pruned_params(jax.device_get(variables["params"]), result.scores)}
    if variables.get("batch_stats"):
        pruned["batch_stats"] = jax.device_get(variables["batch_stats"])
    pruned["head"] = result.head
    maskdict.save_tree(run_dir / "pruned_params.msgpack", pruned)
    maskdict.export_mask_dict(run_dir / "masks.pth", result.scores, result.head, spec.keymap)
    layers = core.per_layer_retention(result.scores)
    summary = {
        "schema": SCHEMA, "model": spec.name, "weights": str(opts["weights"] or ""),
        "data": opts["data"], "target": target.to_json(), "seed": int(opts["seed"]),
        "lr_head": cfg.lr_head, "lr_mask": cfg.lr_mask, "alpha": cfg.alpha, "epochs_run": len(result.history),
        "acc": result.acc, "acc_pre": acc_pre, "retention": kept / result.n_entries, "kept": kept,
        "n_entries": result.n_entries, "epoch": result.epoch, "used_fallback": result.used_fallback,
        "flops": fl, "params_original": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(variables["params"]))),
        "layers": layers, "train_images": len(prep["train"]), "test_images": len(prep["test"]),
        "run_dir": str(run_dir), "history": result.history,
    }
    write_json(run_dir / "metrics.json", summary)
    if opts.get("plots", True):
        from jaxnets.methods.seam import plots

        plots.plot_history(result.history, run_dir / "history.png", acc_pre)
        plots.plot_layer_retention(layers, run_dir / "layer_retention.png")
    print(f"{spec.name} {target.describe()}: acc {result.acc:.4f} (original {acc_pre:.4f}), retention "
          f"{summary['retention']:.4f} ({kept}/{result.n_entries}), epoch {result.epoch}"
          f"{' (fallback)' if result.used_fallback else ''}; FLOPs {fl['flops_sparse'] / 1e6:.2f}M of "
          f"{fl['flops_dense'] / 1e6:.2f}M")
    info(f"wrote {run_dir}")
    return summary


# --------------------------------------------------------------------------- saved runs


def load_run(run: str | Path) -> dict:
    """Model, variables, scores and head of a finished run folder (from its config.json)."""
    from jaxnets.methods.seam import core, maskdict
    from jaxnets.models.api import init_variables, load_weights, resolve

    run = Path(run)
    cfg_path, met_path = run / "config.json", run / "metrics.json"
    if not cfg_path.is_file() or not met_path.is_file():
        raise JaxnetsError(f"{run} is not a finished SeaM run (needs config.json and metrics.json)")
    opts = json.loads(cfg_path.read_text())["options"]
    metrics = json.loads(met_path.read_text())
    spec = resolve(opts["model"])
    num_classes = int(opts.get("num_classes") or spec.num_classes)
    if spec.in_channels != 1 and opts["data"] == "digits":
        from jaxnets.data.pipeline import adapt_to_data
        from jaxnets.data.spec import open_source

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
    template = core.init_scores(variables["params"], _exclude(opts))
    scores = maskdict.load_tree(run / "scores.msgpack", template)
    head = maskdict.load_tree(run / "head.msgpack")
    return {"spec": spec, "module": module, "variables": variables, "scores": scores, "head": head,
            "metrics": metrics, "options": opts, "num_classes": num_classes}


def run_flops(run: str | Path) -> dict:
    from jaxnets.methods.seam import flops
    from jaxnets.runtime import claim_output_file, write_json

    r = load_run(run)
    claimed_flops = claim_output_file(Path(run) / "flops.json", "seam flops: result file")
    k = int(r["metrics"]["target"]["num_targets"])
    out = flops.count_flops(r["module"], r["variables"], r["spec"].input_shape(1), scores=r["scores"],
                            head_shape=(r["num_classes"], k))
    out.update({"acc_pre": r["metrics"]["acc_pre"], "acc": r["metrics"]["acc"],
                "kept": r["metrics"]["kept"], "n_entries": r["metrics"]["n_entries"],
                "retention": r["metrics"]["retention"]})
    write_json(claimed_flops, out)
    print(f"Model ACC: {out['acc_pre']:.4f}\nReengineered model ACC: {out['acc']:.4f}\n"
          f"FLOPs Dense: {out['flops_dense'] / 1e6:.2f}M\nFLOPs Sparse: {out['flops_sparse'] / 1e6:.2f}M\n"
          f"FLOP% (Sparse / Dense): {100 * out['ratio']:.2f}%")
    return out


def run_time(run: str | Path, *, batch: int = 16, warmup: int = 3, repeats: int = 10) -> dict:
    from jaxnets.methods.seam import timing
    from jaxnets.runtime import claim_output_file, write_json

    if batch < 1 or repeats < 1 or warmup < 0:
        raise JaxnetsError("--batch and --repeats must be ≥ 1, --warmup ≥ 0")
    r = load_run(run)
    claimed_time = claim_output_file(Path(run) / "time.json", "seam time: result file")
    out = timing.latency(r["module"], r["variables"], r["scores"], r["spec"].input_shape(1),
                         batch=batch, warmup=warmup, repeats=repeats)
    m = r["metrics"]
    out.update({"model_weights": m["n_entries"], "reengineered_weights": m["kept"],
                "pruned_ratio": 1 - m["kept"] / m["n_entries"]})
    write_json(claimed_time, out)
    print(f"Model weights: {m['n_entries'] / 1e6:.4f}M\nReengineered Model weights: {m['kept'] / 1e6:.4f}M\n"
          f"Pruned ratio: {out['pruned_ratio']:.4f}\n"
          f"Original: {out['original']['median_ms']:.2f} ms/batch, re-engineered: "
          f"{out['reengineered']['median_ms']:.2f} ms/batch (dense XLA, batch {batch}; "
          f"reduction {100 * out['reduction']:.1f}%, {out['machine']['device']})")
    return out


# --------------------------------------------------------------------------- digits runner


def pretrain_digits(seed: int = 0, epochs: int = 15) -> dict:
    """A digits_cnn trained on scikit-learn's digits with the project's train step (seconds)."""
    import optax

    from jaxnets.data.loader import Loader
    from jaxnets.data.spec import open_source
    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

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
    """SeaM on the demo model: digits_cnn (pretrained here unless ``variables``) + digits.

    Returns the headline numbers: retention, acc (re-engineered), acc_pre (original), FLOPs.
    """
    import tempfile

    from jaxnets.methods.seam import maskdict

    if variables is None:
        variables = pretrain_digits(seed, pretrain_epochs)
    if out is None:
        out = Path(tempfile.mkdtemp(prefix="seam-digits-"))
    opts = {"model": "digits_cnn", "data": "digits", "target": target, "epochs": epochs,
            "alpha": alpha, "lr_mask": lr_mask, "lr_head": lr_head, "seed": seed, "augment": False,
            "out": Path(out), "variables": variables}
    summary = run_reengineer(opts)
    # Keep the dense original next to the run so `seam flops/time` can rebuild it.
    maskdict.save_tree(Path(summary["run_dir"]) / "original_params.msgpack", dict(variables))
    return {"retention": summary["retention"], "acc": summary["acc"], "acc_pre": summary["acc_pre"],
            "kept": summary["kept"], "n_entries": summary["n_entries"], "epoch": summary["epoch"],
            "flops_dense": summary["flops"]["flops_dense"], "flops_sparse": summary["flops"]["flops_sparse"],
            "run_dir": summary["run_dir"]}
