"""Indirect reuse (specs/seam.md §2.10) and the defect inheritance rate (§3.5).

The original three-step pipeline (``defect_inherit/reengineering_finetune.py``):

1. **Fit a new output layer.** The pretrained model with a fresh ``Linear(features → K)``
   (default init); only that layer trains (SGD ``lr_s1_output``, momentum 0, weight decay 1e-4)
   while the model runs in *train* mode, so BN running statistics adapt to the target data even
   though BN weights are frozen (pitfall 21). Best test accuracy kept (ties → later epoch), early
   stop after ``early_stop`` epochs without improvement.
2. **Re-engineer the step-1 model.** Scores on every conv/linear except the output layer, which
   trains in the *same* Adam (scores at ``lr_mask``, output layer at ``lr_s2_output``); loss
   CE + α·R; BN frozen on the step-1 statistics; no head-only epochs. After each epoch: if the
   pruned fraction 1 − r ≥ ``prune_threshold`` take this epoch and stop, otherwise keep the
   snapshot with the best acc − r (a *copy*: pitfall 19), early stop after ``early_stop``
   epochs without improvement.
3. **Fine-tune.** A *fresh* pretrained model (original BN statistics) with ``W ⊙ 1[s > 0]`` and a
   new randomly initialised output layer (the step-2 one is not reused); all parameters train
   (SGD, momentum 0, weight decay 1e-4, output layer at 10× the backbone lr, BN in train mode);
   best test accuracy kept, early stop. As in the original the masks only initialise (pruned
   weights may regrow) unless ``enforce_masks`` (non-original).

``masks`` (a ``seam reengineer`` run folder or an original mask-dict ``.pth``) skips steps 1–2.
Then PGD on the *public pretrained* feature extractor and the DIR of the fine-tuned model on the
test set. Run folder: ``step_1_model_ft.msgpack``, ``step_2_seam.msgpack`` (scores + output
layer), ``step_3_seam_ft.msgpack``, ``defect.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam.runner import _loaders

FT_DEFAULTS: dict[str, Any] = {
    "lr_s1_output": 0.1, "lr_s2_output": 0.001, "lr_mask": 0.1, "alpha": 1.0, "prune_threshold": 1.0,
    "lr": 0.005, "epochs": 300, "early_stop": 30, "enforce_masks": False, "pgd_eps": 0.1,
    "pgd_steps": 40, "batch_size": 64, "seed": 0, "limit": None, "normalize": None, "masks": None,
    "weights": None, "out": None, "augment": True,
}


def _load_masks(path: Path, template: Any, keymap: Any) -> Any:
    from jaxnets.methods.seam import maskdict

    if path.is_dir():
        return maskdict.load_tree(path / "scores.msgpack", template)
    return maskdict.import_mask_dict(path, template, keymap)[0]


def _drop(scores: Any, head: str) -> Any:
    """The same scores with the output layer unmasked (its shape changes with K)."""
    from jaxnets.transforms import names

    return names.map_with_names(lambda n, s: None if n.split("/", 1)[0] == head else s, scores)


def _sgd(lr: float) -> Any:
    import optax

    # PyTorch SGD(weight_decay=1e-4, momentum=0): the decay is added to the gradient.
    return optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(lr))


def _accuracy(predict: Callable, loader: Any, *args: Any) -> float:
    correct, n = 0, 0
    for b in loader.epoch(0):
        p = np.asarray(predict(*args, b.images))
        correct += int(np.sum((p == b.labels) & b.mask))
        n += b.num_valid
    return correct / max(n, 1)


def _copy(tree: Any) -> Any:
    import jax

    return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), jax.device_get(tree))


def _train_keep_best(module: Any, norm: Any, step: Callable, state: Any, train_l: Any, test_l: Any,
                     variables_of: Callable[[Any], dict], *, epochs: int, early_stop: int,
                     log: Callable[[str], None], name: str) -> tuple[dict, dict]:
    """Train epoch by epoch, testing after each; keep the variables of the best test accuracy
    (ties go to the later epoch); stop after ``early_stop`` epochs without a new best (> 0)."""
    import jax
    import jax.numpy as jnp

    from jaxnets.train.steps import normalize_images

    predict = jax.jit(lambda v, x: jnp.argmax(module.apply(v, normalize_images(x, norm), train=False), -1))
    best, best_acc, best_epoch, since = None, -1.0, -1, 0
    for epoch in range(epochs):
        for b in train_l.epoch(epoch):
            state, _ = step(state, b.images, b.labels, b.mask)
        acc = _accuracy(predict, test_l, variables_of(state))
        if acc >= best_acc:
            best, best_acc, best_epoch, since = _copy(variables_of(state)), acc, epoch, 0
        else:
            since += 1
        log(f"{name} epoch {epoch}: test acc {acc:.4f}")
        if 0 < early_stop <= since:
            break
    return best, {"acc": best_acc, "epoch": best_epoch, "epochs_run": epoch + 1}


def step1_fit_output(module: Any, variables: Mapping, head: str, train_l: Any, test_l: Any,
                     norm: Any, *, lr: float, epochs: int, early_stop: int, seed: int,
                     log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train only the output layer (BN statistics adapt); returns (best variables, summary)."""
    import jax
    import jax.numpy as jnp

    from jaxnets.train.state import TrainState, trainable_from_patterns
    from jaxnets.train.steps import make_train_step

    trainable = trainable_from_patterns(variables["params"], [f"^{head}/"])
    # The step donates its state: work on a copy so the caller's (pretrained) arrays survive.
    state = TrainState.create(module, jax.tree_util.tree_map(jnp.array, variables), _sgd(lr), seed=seed)
    step = make_train_step(module, normalize=norm, trainable_mask=trainable)
    return _train_keep_best(module, norm, step, state, train_l, test_l, lambda st: st.variables,
                            epochs=epochs, early_stop=early_stop, log=log, name="step 1")


def step2_reengineer(module: Any, variables: Mapping, head: str, train_l: Any, test_l: Any,
                     norm: Any, *, lr_mask: float, lr_output: float, alpha: float,
                     prune_threshold: float, epochs: int, early_stop: int, seed: int,
                     log: Callable[[str], None] = print) -> tuple[Any, Any, dict]:
    """Scores (output layer unmasked) + the output layer in one Adam; returns (scores, output
    layer, summary) of the chosen epoch."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxnets.methods.seam import core
    from jaxnets.train.steps import normalize_images

    params, bs = variables["params"], variables.get("batch_stats") or {}
    scores = core.init_scores(params, [f"^{head}/"])
    n = core.num_entries(scores)
    trainable = {"scores": scores, "fc": params[head]}
    tx = optax.multi_transform(
        {"mask": optax.adam(lr_mask, b1=0.9, b2=0.999, eps=1e-8),
         "fc": optax.adam(lr_output, b1=0.9, b2=0.999, eps=1e-8)},
        lambda t: {"scores": jax.tree_util.tree_map(lambda _: "mask", t["scores"]),
                   "fc": jax.tree_util.tree_map(lambda _: "fc", t["fc"])})
    opt_state = tx.init(trainable)

    # The frozen params are jit arguments (not closed-over constants baked into the program).
    def logits_of(t: Any, p: Any, b: Any, x: jax.Array) -> jax.Array:
        return core.masked_logits(module, {**p, head: t["fc"]}, b, t["scores"], normalize_images(x, norm))

    def step(t: Any, st: Any, p: Any, b: Any, x: jax.Array, y: jax.Array, valid: jax.Array) -> tuple:
        def loss_fn(t: Any) -> tuple[jax.Array, dict]:
            return core.seam_loss(logits_of(t, p, b, x), y, valid, t["scores"], alpha, n)

        (loss, aux), g = jax.value_and_grad(loss_fn, has_aux=True)(t)
        updates, st = tx.update(g, st, t)
        return optax.apply_updates(t, updates), st, loss

    step = jax.jit(step, donate_argnums=(0, 1))
    predict = jax.jit(lambda t, p, b, x: jnp.argmax(logits_of(t, p, b, x), -1))
    chosen, best_value, since, reason = None, -np.inf, 0, "epochs"
    for epoch in range(epochs):
        for b in train_l.epoch(epoch):
            trainable, opt_state, _ = step(trainable, opt_state, params, bs, b.images, b.labels, b.mask)
        acc = _accuracy(predict, test_l, trainable, params, bs)
        r = core.count_kept(trainable["scores"]) / n
        log(f"step 2 epoch {epoch}: test acc {acc:.4f}, retention {r:.4f}")
        if 1 - r >= prune_threshold:
            chosen, reason = (_copy(trainable), epoch, acc, r), "threshold"
            break
        if acc - r > best_value:
            chosen, best_value, since = (_copy(trainable), epoch, acc, r), acc - r, 0
        else:
            since += 1
            if 0 < early_stop <= since:
                reason = "early-stop"
                break
    assert chosen is not None, "at least one epoch must run"
    t, c_epoch, c_acc, c_r = chosen
    return t["scores"], t["fc"], {"acc": c_acc, "retention": c_r, "epoch": c_epoch,
                                  "epochs_run": epoch + 1, "stopped_by": reason, "n_entries": n}


def step3_finetune(module: Any, variables: Mapping, head: str, keep: Any, train_l: Any, test_l: Any,
                   norm: Any, *, lr: float, epochs: int, early_stop: int, seed: int,
                   log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Fine-tune everything (output layer at 10× lr); ``keep``: binary masks to enforce, or None."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step
    from jaxnets.transforms import masks as mask_ops

    labels_fn = lambda p: {k: ("head" if k == head else "body") for k in p}  # noqa: E731
    tx = optax.multi_transform({"body": _sgd(lr), "head": _sgd(10 * lr)}, labels_fn)
    transform = (lambda p, _: mask_ops.apply_mask(p, keep)) if keep is not None else None
    state = TrainState.create(module, jax.tree_util.tree_map(jnp.array, variables), tx, seed=seed)
    step = make_train_step(module, normalize=norm, param_transform=transform)

    def final(st: Any) -> dict:
        p = st.params if transform is None else transform(st.params, None)
        return {"params": p, **({"batch_stats": st.batch_stats} if st.batch_stats else {})}

    return _train_keep_best(module, norm, step, state, train_l, test_l, final,
                            epochs=epochs, early_stop=early_stop, log=log, name="step 3")


def run_finetune(opts: Mapping[str, Any]) -> dict:
    """Steps 1–3 (or 3 only with ``masks``) + DIR; writes the run folder, returns the summary."""
    import jax
    import jax.numpy as jnp

    from jaxnets.data.pipeline import adapt_to_data
    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalization_for
    from jaxnets.methods.seam import core, defect, maskdict
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.runtime import create_run_dir, write_json
    from jaxnets.train.steps import normalize_images
    from jaxnets.ui import info

    opts = {**FT_DEFAULTS, **{k: v for k, v in dict(opts).items() if v is not None or k not in FT_DEFAULTS}}
    for key in ("alpha", "pgd_eps"):
        if float(opts[key]) < 0:
            raise JaxnetsError(f"--{key.replace('_', '-')} must be ≥ 0 (got {opts[key]})")
    for key in ("lr", "lr_mask", "lr_s1_output", "lr_s2_output"):
        if float(opts[key]) <= 0:
            raise JaxnetsError(f"--{key.replace('_', '-')} must be > 0 (got {opts[key]})")
    if int(opts["epochs"]) < 1:
        raise JaxnetsError(f"--epochs must be at least 1 (got {opts['epochs']})")
    if int(opts["early_stop"]) == 0 or int(opts["early_stop"]) < -1:
        raise JaxnetsError(f"--early-stop must be -1 (never) or ≥ 1 (got {opts['early_stop']})")
    if not 0 < float(opts["prune_threshold"]) <= 1:
        raise JaxnetsError(f"--prune-threshold must be in (0, 1] (got {opts['prune_threshold']})")
    seed, epochs, es = int(opts["seed"]), int(opts["epochs"]), int(opts["early_stop"])
    spec = resolve(opts["model"])
    limit = opts.get("limit")
    train = open_source(opts["data"], "train", limit=limit, cache=False if limit else None)
    test = open_source(opts["data"], "test", limit=limit, cache=False if limit else None)
    k = train.num_classes
    spec = adapt_to_data(spec, test, spec.num_classes)
    orig_module = spec.create(spec.num_classes)
    if opts.get("variables") is not None:
        orig = opts["variables"]
    elif opts.get("weights"):
        orig = load_weights(spec, orig_module, opts["weights"])
    else:
        orig = init_variables(spec, orig_module, seed)
    head = spec.head
    if "/" in head:
        raise JaxnetsError(f"seam finetune needs a top-level output layer; {spec.name}'s is {head}")
    module = spec.create(k)
    norm = normalization_for(spec, opts.get("normalize"))
    batch = int(opts["batch_size"])
    # The loaders of `seam reengineer` (one rule for both): per-image ImageNet resize/crop for a
    # 224-px model on other-sized or mixed-size images (spec §2.8), CIFAR crop + flip on 32 px.
    train_l, test_l, _ = _loaders(spec, train, test, batch, seed, bool(opts["augment"]))
    run_dir = create_run_dir(opts.get("out"), "seam-finetune", spec.name)
    run_dir.mkdir(parents=True, exist_ok=True)

    def with_new_fc(params: Mapping, offset: int) -> dict:
        fresh = init_variables(spec, module, seed + offset)  # a default-initialised K-way layer
        out = dict(params)
        out[head] = fresh["params"][head]
        return out

    summary: dict[str, Any] = {"model": spec.name, "data": opts["data"], "num_targets": k,
                               "seed": seed, "options": {key: (str(v) if isinstance(v, Path) else v)
                                                         for key, v in opts.items() if key != "variables"}}
    if opts.get("masks") is None:
        s1_vars = {"params": with_new_fc(orig["params"], 1)}
        if orig.get("batch_stats"):
            s1_vars["batch_stats"] = orig["batch_stats"]
        s1_vars, s1 = step1_fit_output(module, s1_vars, head, train_l, test_l, norm,
                                       lr=float(opts["lr_s1_output"]), epochs=epochs, early_stop=es,
                                       seed=seed, log=info)
        maskdict.save_tree(run_dir / "step_1_model_ft.msgpack", s1_vars)
        scores, fc, s2 = step2_reengineer(module, s1_vars, head, train_l, test_l, norm,
                                          lr_mask=float(opts["lr_mask"]), lr_output=float(opts["lr_s2_output"]),
                                          alpha=float(opts["alpha"]),
                                          prune_threshold=float(opts["prune_threshold"]), epochs=epochs,
                                          early_stop=es, seed=seed, log=info)
        maskdict.save_tree(run_dir / "step_2_seam.msgpack", {"scores": scores, head: fc})
        summary.update({"step1": s1, "step2": s2})
    else:
        template = core.init_scores(orig["params"])
        scores = _drop(_load_masks(Path(opts["masks"]), template, spec.keymap), head)
    # Step 3 from the *original* pretrained params and statistics, a new output layer.
    keep_tree = core.binary_masks(scores)
    base = with_new_fc(core.pruned_params(orig["params"], scores), 2)
    s3_vars = {"params": base, **({"batch_stats": orig["batch_stats"]} if orig.get("batch_stats") else {})}
    ft_vars, s3 = step3_finetune(module, s3_vars, head, keep_tree if opts.get("enforce_masks") else None,
                                 train_l, test_l, norm, lr=float(opts["lr"]), epochs=epochs,
                                 early_stop=es, seed=seed, log=info)
    maskdict.save_tree(run_dir / "step_3_seam_ft.msgpack", ft_vars)

    def features(x: jax.Array) -> jax.Array:
        _, st = orig_module.apply(orig, x, train=False, mutable=["intermediates"])
        return st["intermediates"]["features"][0]

    attack = jax.jit(lambda x, key: defect.pgd_attack(features, x, key, eps=float(opts["pgd_eps"]),
                                                      steps=int(opts["pgd_steps"])))
    predict = jax.jit(lambda x: jnp.argmax(module.apply(ft_vars, x, train=False), -1))
    clean, adv, labels = [], [], []
    for i, b in enumerate(test_l.epoch(0)):
        x = normalize_images(b.images, norm)
        xa = attack(x, jax.random.key(i))
        clean.append(np.asarray(predict(x))[b.mask])
        adv.append(np.asarray(predict(xa))[b.mask])
        labels.append(b.labels[b.mask])
    result = defect.defect_inheritance_rate(np.concatenate(clean), np.concatenate(adv), np.concatenate(labels))
    result.update({"retention": core.retention_rate(scores), "kept": core.count_kept(scores),
                   "n_entries": core.num_entries(scores), "enforce_masks": bool(opts.get("enforce_masks")),
                   "step3": s3, "run_dir": str(run_dir)})
    summary.update(result)
    write_json(run_dir / "defect.json", summary)
    print(f"Clean Top-1: {result['clean_top1']:.2f} | Attack Success Rate: {result['dir']:.2f}"
          f" (retention {result['retention']:.4f})")
    return summary
