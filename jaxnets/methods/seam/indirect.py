"""Indirect reuse (specs/seam.md §2.10): the original's ``defect_inherit/reengineering_finetune.py``
and the defect inheritance rate of its result (§3.5).

1. **Fit a new output layer.** The pretrained model with a fresh ``Linear(features → K)``
   (default init); only that layer trains (SGD ``lr_s1_output``, ``momentum``, ``weight_decay``)
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
   (SGD: ``lr_s3_hidden``, the output layer ``lr_s3_output``, ``momentum``, ``weight_decay``; BN
   in train mode; ``Dropout2d(dropout)`` after each ResNet stage); best test accuracy kept, early
   stop. As in the original the masks only initialise (pruned weights may regrow) unless
   ``enforce_masks`` (non-original). Step 3 is the standard fine-tuning baseline's training
   (:func:`.finetuning.train_keep_best`) from the pruned weights.

``masks`` (a ``seam reengineer`` run folder, an original mask-dict ``.pth`` or the original's
``step_2_seam.pth``) skips steps 1–2. Then PGD on the *public pretrained* feature extractor and
the DIR of the fine-tuned model on the test set (:func:`.robustness.defect_inheritance`).

``finetune(model, data, FinetuneConfig(...), run_dir=None, *, test_data, masks, resume) ->
FinetuneResult`` is the library entry point (``jaxnets seam finetune`` is a thin adapter). Every
step runs in ``jaxnets.train.loop.fit``. Run folder: ``config.json``, ``metrics.jsonl`` (one
stream, rows tagged ``stage``), ``checkpoints/step_{1,2,3}/``, ``step_1_model_ft.msgpack``,
``step_2_seam.msgpack`` (scores + output layer), ``step_3_seam_ft.msgpack``, ``stages.json`` (the
finished steps' summaries), ``defect.json``; without a ``run_dir`` nothing is written.
``resume="auto"`` reuses the finished steps' files (as the original reuses its step-1 and step-2
files) and continues an unfinished step from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnets.api import Data, Model
from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam import core, maskdict
from jaxnets.methods.seam.config import FinetuneConfig
from jaxnets.methods.seam.dropout import with_stage_dropout
from jaxnets.methods.seam.finetuning import (
    FitPlace,
    count_correct,
    output_layer_sgd,
    sgd,
    train_keep_best,
    with_new_output_layer,
)
from jaxnets.methods.seam.loaders import check_same_classes, open_split, target_loaders
from jaxnets.methods.seam.robustness import RobustnessResult, defect_inheritance
from jaxnets.methods.seam.selection import bits_float, float_bits
from jaxnets.rundir import RunDir
from jaxnets.train import loop
from jaxnets.train.state import TrainState, device_copy, host_copy, trainable_from_patterns
from jaxnets.train.steps import Step, normalize_images
from jaxnets.ui import info

STOP_REASONS = ("epochs", "threshold", "early-stop")  # why step 2 ended (its state keeps the index)
STAGE_FILES = {"step1": "step_1_model_ft.msgpack", "step2": "step_2_seam.msgpack", "step3": "step_3_seam_ft.msgpack"}


def load_masks(path: Path, params: Mapping, head: str, keymap: Any) -> Any:
    """Scores for every conv/linear except the output layer ``head``: from a ``seam reengineer``
    run folder or an original mask dict (direct reuse's, whose output-layer masks are dropped, or
    ``defect_inherit``'s ``step_2_seam.pth``, which has none and holds the step-2 ``fc``)."""
    template = core.init_scores(params, [f"^{head}/"])
    if path.is_dir():
        full = maskdict.load_tree(path / "scores.msgpack", core.init_scores(params))
        return core.unmasked(full, head)
    return maskdict.import_mask_dict(path, template, keymap, skip_modules=(head,))[0]


def step1_fit_output(module: Any, variables: Mapping, head: str, loaders: Any, norm: Any, config: FinetuneConfig,
                     *, place: FitPlace = FitPlace(), log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Train only the output layer (BN statistics adapt); returns (best variables, summary)."""
    trainable = trainable_from_patterns(variables["params"], [f"^{head}/"])
    tx = sgd(config.lr_s1_output, config.momentum, config.weight_decay)
    return train_keep_best(module, module, variables, tx, loaders.train, loaders.test, norm, epochs=config.epochs,
                           early_stop=config.early_stop, seed=config.seed, name="step1", trainable=trainable,
                           place=place, log=log)


def step2_reengineer(module: Any, variables: Mapping, head: str, loaders: Any, norm: Any, config: FinetuneConfig,
                     *, start_step: int = 0, place: FitPlace = FitPlace(),
                     log: Callable[[str], None] = print) -> tuple[Any, Any, dict]:
    """Scores (output layer unmasked) + the output layer in one Adam; returns (scores, output
    layer, summary) of the chosen epoch."""
    params, bs = variables["params"], variables.get("batch_stats") or {}
    scores = core.init_scores(params, [f"^{head}/"])
    n = core.num_entries(scores)
    tx = optax.multi_transform(
        {"mask": optax.adam(config.lr_mask, b1=0.9, b2=0.999, eps=1e-8),
         "fc": optax.adam(config.lr_s2_output, b1=0.9, b2=0.999, eps=1e-8)},
        lambda t: {"scores": jax.tree_util.tree_map(lambda _: "mask", t["scores"]),
                   "fc": jax.tree_util.tree_map(lambda _: "fc", t["fc"])})
    trainable = {"scores": scores, "fc": jax.tree_util.tree_map(jnp.array, params[head])}
    extras = {"chosen": device_copy(trainable), "best_value": jnp.asarray(float_bits(-math.inf)),
              "chosen_epoch": jnp.asarray(-1, jnp.int32), "chosen_acc": jnp.asarray(float_bits(math.nan)),
              "chosen_r": jnp.asarray(float_bits(math.nan)), "since": jnp.asarray(0, jnp.int32),
              "stopped_by": jnp.asarray(0, jnp.int32), "epochs_done": jnp.asarray(0, jnp.int32)}
    state = TrainState.create(module, {"params": trainable}, tx, seed=config.seed, extras=extras)
    state = state.replace(step=jnp.asarray(start_step, jnp.int32))
    # fit's transform_args: jit arguments, never outputs; on the device once, not sent at every step
    frozen = jax.device_put({"params": params, "batch_stats": bs})

    def logits_of(t: Any, fz: Mapping, x: jax.Array) -> jax.Array:
        return core.masked_logits(module, {**fz["params"], head: t["fc"]}, fz["batch_stats"], t["scores"], x)

    def train_step(st: TrainState, images: jax.Array, labels: jax.Array, valid: jax.Array,
                   fz: Mapping) -> tuple[TrainState, dict]:
        x = normalize_images(images, norm)

        def loss_fn(t: Any) -> tuple[jax.Array, tuple]:
            logits = logits_of(t, fz, x)
            loss, aux = core.seam_loss(logits, labels, valid, t["scores"], config.alpha, n)
            return loss, (logits, aux)

        (loss, (logits, aux)), g = jax.value_and_grad(loss_fn, has_aux=True)(st.params)
        ok = valid.astype(bool)
        return st.apply_gradients(g), {"loss": loss, **aux, "count": jnp.sum(ok).astype(jnp.int32),
                                       "correct": jnp.sum((jnp.argmax(logits, -1) == labels) & ok).astype(jnp.int32)}

    step = Step(jax.jit(train_step, donate_argnums=(0,)), None, "train")
    predict = jax.jit(lambda t, fz, x: jnp.argmax(logits_of(t, fz, normalize_images(x, norm)), -1))

    def evaluate(st: TrainState) -> dict:
        correct, images = count_correct(predict, loaders.test, st.params, frozen)
        return {"test_acc": correct / max(images, 1)}

    def end_epoch(st: TrainState, row: dict) -> tuple[TrainState, bool]:
        ex = dict(st.extras)
        epoch, acc = int(row["epoch"]), float(row["test_acc"])
        kept = core.count_kept(st.params["scores"])
        r = kept / n
        chosen, stop = False, False
        if 1 - r >= config.prune_threshold:
            chosen, stop, ex["stopped_by"] = True, True, jnp.asarray(STOP_REASONS.index("threshold"), jnp.int32)
        elif acc - r > bits_float(ex["best_value"]):
            chosen, ex["best_value"], ex["since"] = True, jnp.asarray(float_bits(acc - r)), jnp.asarray(0, jnp.int32)
        else:
            ex["since"] = jnp.asarray(int(ex["since"]) + 1, jnp.int32)
            if 0 < config.early_stop <= int(ex["since"]):
                stop, ex["stopped_by"] = True, jnp.asarray(STOP_REASONS.index("early-stop"), jnp.int32)
        if chosen:
            ex.update(chosen=device_copy(st.params), chosen_epoch=jnp.asarray(epoch, jnp.int32),
                      chosen_acc=jnp.asarray(float_bits(acc)), chosen_r=jnp.asarray(float_bits(r)))
        ex["epochs_done"] = jnp.asarray(epoch + 1, jnp.int32)
        row.update({"retention": r, "kept": kept, "chosen": chosen})
        log(f"step2 epoch {epoch}: test acc {acc:.4f}, retention {r:.4f}{' (chosen)' if chosen else ''}")
        return st.replace(extras=ex), stop

    fitted = loop.fit(state, step, loaders.train, epochs=config.epochs, run_dir=place.run_dir, eval_fn=evaluate,
                      checkpoints=place.checkpoints, metrics=place.metrics, resume=place.resume,
                      model_name=place.model_name, config=place.config, row_fields={"stage": "step2"},
                      transform_args=frozen, progress=False, end_epoch=end_epoch)
    ex = fitted.state.extras
    chosen = host_copy(ex["chosen"])
    return chosen["scores"], chosen["fc"], {
        "acc": bits_float(ex["chosen_acc"]), "retention": bits_float(ex["chosen_r"]), "epoch": int(ex["chosen_epoch"]),
        "epochs_run": int(ex["epochs_done"]), "stopped_by": STOP_REASONS[int(ex["stopped_by"])], "n_entries": n,
        "end_step": int(fitted.state.step), "resumed_from": fitted.resumed_from}


def step3_finetune(model: Any, module: Any, variables: Mapping, head: str, keep: Any, loaders: Any, norm: Any,
                   config: FinetuneConfig, *, start_step: int = 0, place: FitPlace = FitPlace(),
                   log: Callable[[str], None] = print) -> tuple[dict, dict]:
    """Fine-tune everything (the output layer in its own SGD group); ``model`` may add dropout;
    ``keep``: binary masks to enforce, or None."""
    tx = output_layer_sgd(head, config.lr_s3_hidden, config.lr_s3_output, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    return train_keep_best(model, module, variables, tx, loaders.train, loaders.test, norm, epochs=config.epochs,
                           early_stop=config.early_stop, seed=config.seed, name="step3", keep=keep,
                           start_step=start_step, place=place, log=log)


class _Stages:
    """The run folder's view of the three steps: finished ones (``stages.json`` + their file) are
    reused on a resume; each fit writes to ``checkpoints/<step>`` and one shared metrics stream."""

    def __init__(self, run_dir: RunDir | None, resume: bool, model_name: str, record: Mapping[str, Any]):
        self.run_dir, self.resume, self.model_name, self.record = run_dir, resume, model_name, record
        self.done: dict[str, dict] = {}
        if run_dir is not None and resume and (run_dir / "stages.json").is_file():
            self.done = json.loads((run_dir / "stages.json").read_text())
        self.writer: Any = None
        self.last_step = 0

    def finished(self, key: str) -> dict | None:
        if self.run_dir is None or key not in self.done or not (self.run_dir / STAGE_FILES[key]).is_file():
            return None
        self.last_step = int(self.done[key]["end_step"])
        return self.done[key]

    def place(self, key: str) -> FitPlace:
        if self.run_dir is None:
            return FitPlace()
        from jaxnets.train.checkpoint import Checkpointer

        checkpoints = self.run_dir / "checkpoints" / key
        resume_at = None
        if self.resume and checkpoints.is_dir():
            with Checkpointer(checkpoints, read_only=True) as ck:
                resume_at = ck.latest_step()
        if self.writer is None:  # rows after the point this run continues from are dropped
            restart = resume_at if resume_at is not None else (self.last_step if self.done else None)
            self.writer = self.run_dir.metrics(resume_step=restart if self.resume else None)
        return FitPlace(run_dir=self.run_dir.path, checkpoints=checkpoints, metrics=self.writer,
                        resume=checkpoints if resume_at is not None else None, model_name=self.model_name,
                        config=self.record)

    def finish(self, key: str, summary: dict, files: Mapping[str, Any]) -> None:
        self.last_step = int(summary["end_step"])
        if self.run_dir is None:
            return
        for name, tree in files.items():
            maskdict.save_tree(self.run_dir / name, tree)
        self.done[key] = summary
        self.run_dir.write_json("stages.json", self.done)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class FinetuneResult(RobustnessResult):
    """The fine-tuned K-way model and the numbers of defect.json (``to_json()``): the DIR fields of
    :class:`RobustnessResult` plus the model and the masks' retention."""

    model: Model | None = None

    @property
    def retention(self) -> float:
        return float(self.summary["retention"])

    def describe(self) -> str:
        """The original eval_robustness line (plus the retention)."""
        return f"{super().describe()} (retention {self.retention:.4f})"


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def finetune(model: Model, data: Data, config: FinetuneConfig | None = None, run_dir: str | Path | RunDir | None = None,
             *, test_data: Data | None = None, masks: str | Path | None = None,
             provenance: Mapping[str, Any] | None = None, resume: str | None = None) -> FinetuneResult:
    """Steps 1–3 (or 3 only with ``masks``) on ``data`` from the public pretrained ``model``, then
    the DIR on ``test_data`` (default: the test split of the same data).

    The result's ``model`` is the fine-tuned network with ``data.num_classes`` outputs.
    ``provenance`` (the CLI's other flags) is recorded in config.json and defect.json's
    ``options``. ``resume``: ``"auto"`` (see the module docstring) or None.
    """
    config = config or FinetuneConfig()
    if resume not in (None, "auto"):
        raise JaxnetsError(f"seam finetune resumes its own run folder: --resume auto (got {resume!r})")
    if test_data is None:
        test_data = open_split(data.text, "test", limit=data.limit, partial=bool(data.limit))
    spec, orig = model.spec, model.variables
    k, head = data.num_classes, spec.head
    check_same_classes(data, test_data)
    if "/" in head:
        raise JaxnetsError(f"seam finetune needs a top-level output layer; {spec.name}'s is {head}")
    module = spec.create(k)
    # Step 3's model (Dropout2d after each ResNet stage): a model without stages fails here, not after steps 1-2.
    trained = with_stage_dropout(module, orig["params"], config.dropout, spec.name)
    norm = (model.mean, model.std)
    # The loaders of `seam reengineer` (one rule for both): per-image ImageNet resize/crop for a
    # 224-px model on other-sized or mixed-size images (spec §2.8), CIFAR crop + flip on 32 px.
    loaders = target_loaders(spec, data.source, test_data.source, batch_size=config.batch_size, seed=config.seed,
                             augment=config.augment)
    run_dir = RunDir.of(run_dir, "seam finetune", spec.name, resume=resume)
    options = {"model": spec.name, "weights": model.weights, "data": data.text, "masks": masks,
               "limit": data.limit, "normalize": None, "out": run_dir, **(provenance or {}),
               **dataclasses.asdict(config)}
    options = {key: _jsonable(v) for key, v in options.items()}
    recorded = json.loads(json.dumps(options, default=str))  # as config.json and the checkpoints hold it
    if run_dir is not None:
        run_dir.write_config(recorded)
    summary: dict[str, Any] = {"model": spec.name, "data": data.text, "num_targets": k, "seed": config.seed,
                               "options": options}
    stages = _Stages(run_dir, resume == "auto", spec.name, recorded)
    try:
        if masks is None:
            s1 = stages.finished("step1")
            if s1 is not None:
                s1_vars = maskdict.load_tree(run_dir / STAGE_FILES["step1"])
                info(f"step 1: reusing {STAGE_FILES['step1']}")
            else:
                start = with_new_output_layer(spec, module, orig, config.seed + 1)
                s1_vars, s1 = step1_fit_output(module, start, head, loaders, norm, config, place=stages.place("step1"),
                                               log=info)
                stages.finish("step1", s1, {STAGE_FILES["step1"]: s1_vars})
            s2 = stages.finished("step2")
            if s2 is not None:
                template = {"scores": core.init_scores(s1_vars["params"], [f"^{head}/"]), head: s1_vars["params"][head]}
                saved = maskdict.load_tree(run_dir / STAGE_FILES["step2"], template)
                scores, fc = saved["scores"], saved[head]
                info(f"step 2: reusing {STAGE_FILES['step2']}")
            else:
                scores, fc, s2 = step2_reengineer(module, s1_vars, head, loaders, norm, config,
                                                  start_step=stages.last_step, place=stages.place("step2"), log=info)
                stages.finish("step2", s2, {STAGE_FILES["step2"]: {"scores": scores, head: fc}})
            summary.update({"step1": s1, "step2": s2})
        else:
            scores = load_masks(Path(masks), orig["params"], head, spec.keymap)
        # Step 3 from the *original* pretrained params and statistics, a new output layer.
        keep_tree = core.binary_masks(scores)
        base = with_new_output_layer(spec, module, {**orig, "params": core.pruned_params(orig["params"], scores)},
                                     config.seed + 2)
        s3 = stages.finished("step3")
        if s3 is not None:
            ft_vars = maskdict.load_tree(run_dir / STAGE_FILES["step3"])
        else:
            ft_vars, s3 = step3_finetune(trained, module, base, head, keep_tree if config.enforce_masks else None,
                                         loaders, norm, config, start_step=stages.last_step,
                                         place=stages.place("step3"), log=info)
            stages.finish("step3", s3, {STAGE_FILES["step3"]: ft_vars})
    finally:
        stages.close()
    tuned = dataclasses.replace(model, module=module, variables=ft_vars, num_classes=k, weights=None)
    result = defect_inheritance(model, module, ft_vars, loaders.test, eps=config.pgd_eps, steps=config.pgd_steps,
                                step_size=config.pgd_step_size, seed=config.seed)
    result.update({"retention": core.retention_rate(scores), "kept": core.count_kept(scores),
                   "n_entries": core.num_entries(scores), "enforce_masks": config.enforce_masks,
                   "dropout": config.dropout, "step3": s3, "run_dir": str(run_dir) if run_dir is not None else None})
    summary.update(result)
    if run_dir is not None:
        run_dir.write_json("defect.json", summary)
    return FinetuneResult(model=tuned, summary=summary, run_dir=run_dir)
