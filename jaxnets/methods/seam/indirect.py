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
test set.

``finetune(model, data, FinetuneConfig(...), run_dir=None, *, test_data, masks) -> FinetuneResult``
is the library entry point (``jaxnets seam finetune`` is a thin adapter). Run folder:
``step_1_model_ft.msgpack``, ``step_2_seam.msgpack`` (scores + output layer),
``step_3_seam_ft.msgpack``, ``defect.json``; without a ``run_dir`` nothing is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnets.api import Data, Model
from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam import core, defect, maskdict
from jaxnets.methods.seam.config import FinetuneConfig
from jaxnets.methods.seam.loaders import open_split, target_loaders
from jaxnets.models.api import init_variables
from jaxnets.rundir import RunDir
from jaxnets.train.state import TrainState, trainable_from_patterns
from jaxnets.train.steps import make_train_step, normalize_images
from jaxnets.transforms import masks as mask_ops
from jaxnets.transforms import names
from jaxnets.ui import info


def _load_masks(path: Path, template: Any, keymap: Any) -> Any:
    if path.is_dir():
        return maskdict.load_tree(path / "scores.msgpack", template)
    return maskdict.import_mask_dict(path, template, keymap)[0]


def _drop(scores: Any, head: str) -> Any:
    """The same scores with the output layer unmasked (its shape changes with K)."""
    return names.map_with_names(lambda n, s: None if n.split("/", 1)[0] == head else s, scores)


def _sgd(lr: float) -> Any:
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
    return jax.tree_util.tree_map(lambda a: np.array(a, copy=True), jax.device_get(tree))


def _train_keep_best(module: Any, norm: Any, step: Callable, state: Any, train_l: Any, test_l: Any,
                     variables_of: Callable[[Any], dict], *, epochs: int, early_stop: int,
                     log: Callable[[str], None], name: str) -> tuple[dict, dict]:
    """Train epoch by epoch, testing after each; keep the variables of the best test accuracy
    (ties go to the later epoch); stop after ``early_stop`` epochs without a new best (> 0)."""
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


@dataclass
class FinetuneResult:
    """The fine-tuned K-way model and the numbers of defect.json (``to_json()``)."""

    model: Model
    summary: dict[str, Any]
    run_dir: RunDir | None = None

    @property
    def clean_top1(self) -> float:
        return float(self.summary["clean_top1"])

    @property
    def defect_inheritance_rate(self) -> float:
        return float(self.summary["dir"])

    @property
    def retention(self) -> float:
        return float(self.summary["retention"])

    def to_json(self) -> dict[str, Any]:
        return self.summary

    def describe(self) -> str:
        """The one line ``seam finetune`` prints."""
        return (f"Clean Top-1: {self.clean_top1:.2f} | Attack Success Rate: {self.defect_inheritance_rate:.2f}"
                f" (retention {self.retention:.4f})")


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def finetune(model: Model, data: Data, config: FinetuneConfig | None = None, run_dir: str | Path | RunDir | None = None,
             *, test_data: Data | None = None, masks: str | Path | None = None,
             provenance: Mapping[str, Any] | None = None) -> FinetuneResult:
    """Steps 1–3 (or 3 only with ``masks``) on ``data`` from the public pretrained ``model``, then
    the DIR on ``test_data`` (default: the test split of the same data).

    The result's ``model`` is the fine-tuned network with ``data.num_classes`` outputs.
    ``provenance`` (the CLI's other flags) is recorded in defect.json's ``options``.
    """
    config = config or FinetuneConfig()
    if test_data is None:
        test_data = open_split(data.text, "test", limit=data.limit, partial=bool(data.limit))
    seed, epochs, es = config.seed, config.epochs, config.early_stop
    spec, orig_module, orig = model.spec, model.module, model.variables
    k = data.num_classes
    head = spec.head
    if "/" in head:
        raise JaxnetsError(f"seam finetune needs a top-level output layer; {spec.name}'s is {head}")
    module = spec.create(k)
    norm = (model.mean, model.std)
    # The loaders of `seam reengineer` (one rule for both): per-image ImageNet resize/crop for a
    # 224-px model on other-sized or mixed-size images (spec §2.8), CIFAR crop + flip on 32 px.
    loaders = target_loaders(spec, data.source, test_data.source, batch_size=config.batch_size, seed=seed,
                             augment=config.augment)
    train_l, test_l = loaders.train, loaders.test
    run_dir = RunDir.of(run_dir, "seam-finetune", spec.name)

    def with_new_fc(params: Mapping, offset: int) -> dict:
        fresh = init_variables(spec, module, seed + offset)  # a default-initialised K-way layer
        out = dict(params)
        out[head] = fresh["params"][head]
        return out

    options = {"model": spec.name, "weights": model.weights, "data": data.text, "masks": masks,
               "limit": data.limit, "normalize": None, "out": run_dir, **(provenance or {}),
               **dataclasses.asdict(config)}
    summary: dict[str, Any] = {"model": spec.name, "data": data.text, "num_targets": k, "seed": seed,
                               "options": {key: _jsonable(v) for key, v in options.items()}}
    if masks is None:
        s1_vars = {"params": with_new_fc(orig["params"], 1)}
        if orig.get("batch_stats"):
            s1_vars["batch_stats"] = orig["batch_stats"]
        s1_vars, s1 = step1_fit_output(module, s1_vars, head, train_l, test_l, norm, lr=config.lr_s1_output,
                                       epochs=epochs, early_stop=es, seed=seed, log=info)
        if run_dir is not None:
            maskdict.save_tree(run_dir / "step_1_model_ft.msgpack", s1_vars)
        scores, fc, s2 = step2_reengineer(module, s1_vars, head, train_l, test_l, norm, lr_mask=config.lr_mask,
                                          lr_output=config.lr_s2_output, alpha=config.alpha,
                                          prune_threshold=config.prune_threshold, epochs=epochs,
                                          early_stop=es, seed=seed, log=info)
        if run_dir is not None:
            maskdict.save_tree(run_dir / "step_2_seam.msgpack", {"scores": scores, head: fc})
        summary.update({"step1": s1, "step2": s2})
    else:
        template = core.init_scores(orig["params"])
        scores = _drop(_load_masks(Path(masks), template, spec.keymap), head)
    # Step 3 from the *original* pretrained params and statistics, a new output layer.
    keep_tree = core.binary_masks(scores)
    base = with_new_fc(core.pruned_params(orig["params"], scores), 2)
    s3_vars = {"params": base, **({"batch_stats": orig["batch_stats"]} if orig.get("batch_stats") else {})}
    ft_vars, s3 = step3_finetune(module, s3_vars, head, keep_tree if config.enforce_masks else None,
                                 train_l, test_l, norm, lr=config.lr, epochs=epochs,
                                 early_stop=es, seed=seed, log=info)
    if run_dir is not None:
        maskdict.save_tree(run_dir / "step_3_seam_ft.msgpack", ft_vars)

    def features(x: jax.Array) -> jax.Array:
        _, st = orig_module.apply(orig, x, train=False, mutable=["intermediates"])
        return st["intermediates"]["features"][0]

    attack = jax.jit(lambda x, key: defect.pgd_attack(features, x, key, eps=config.pgd_eps, steps=config.pgd_steps))
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
                   "n_entries": core.num_entries(scores), "enforce_masks": config.enforce_masks,
                   "step3": s3, "run_dir": str(run_dir) if run_dir is not None else None})
    summary.update(result)
    if run_dir is not None:
        run_dir.write_json("defect.json", summary)
    tuned = dataclasses.replace(model, module=module, variables=ft_vars, num_classes=k, weights=None)
    return FinetuneResult(model=tuned, summary=summary, run_dir=run_dir)
