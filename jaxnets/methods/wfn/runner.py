"""The WFN schedule (spec §2.2): fine-tune → test → cluster → write back → checkpoint, per round.

``run(model, data, WFNConfig(...), run_dir=None, *, test_data)`` is the library entry point
(``jaxnets wfn run`` is a thin adapter over it; the demo too). It returns a :class:`WFNResult`
whose ``model`` is the weight-fixed network (a :class:`jaxnets.Model`, ready to probe or
evaluate). With a ``run_dir`` the folder holds ``config.json``, ``metrics.jsonl`` (+ csv,
TensorBoard), ``results.json``, ``rounds/round_XX`` (one jaxnets checkpoint per round: params,
batch_stats, codebook values and the flat assignment; ``resume`` continues at the next round
exactly), ``final_model`` (jaxnets), ``final_model.pth`` (PyTorch state_dict),
``final_model.wfn.npz`` (compact), PNG plots and ``Results.csv`` (the original's columns, one
row); without one nothing is written. ``run_deltas`` runs one WFN per δ of a list (the original's
list-valued ``--distance_allowed``), each in its own sub-folder ``delta_<δ>/``.

Data (spec §2.6): ``config.val_split`` holds out that many training images (seeded by
``config.seed``; the original's 45k/5k CIFAR-10 split was unseeded) and validates on them after
every fine-tuning epoch (``val_loss``, ``val_acc`` in the epoch rows); the test set gives top-1
and top-5 before and after every round's clustering.

Training: each round's fine-tuning is ``jaxnets.train.loop.fit`` (the one engine: donated
jitted step, ``precision``, ``devices``, checkpoints in ``checkpoints/round_XX`` at every epoch
end and every ``checkpoint_every`` steps, dropped once the round's own checkpoint is saved).

Determinism: round t trains with a fresh optimiser and the PRNG key ``fold_in(key(seed), t)``;
the step counter and the loader's epoch index are global (earlier rounds' come first), so a run
resumed from any round — or, with ``resume="auto"``, from inside a round after a kill — reproduces
the uninterrupted one bit for bit.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxnets.api import Data, Model
from jaxnets.errors import ConfigError, JaxnetsError
from jaxnets.methods.wfn.clustering import cluster, threshold_schedule
from jaxnets.methods.wfn.config import WFNConfig, parse_deltas

if TYPE_CHECKING:
    from jaxnets.data.sources import Source
    from jaxnets.rundir import RunDir

RESULTS_SCHEMA = "jaxnets.wfn/1"
RESULTS_CSV = "Results.csv"
# The original's Results.csv columns in its order (spec §3.4); the values are results.json's
# (orig_entropy one number: the original wrote a (full, "non-zero") pair by accident, P11).
RESULTS_CSV_COLUMNS = ("data_name", "experiment_name", "model_name", "BN", "regularisation_ratio",
                       "distance_allowed", "fixing_epochs", "orig_acc", "orig_entropy", "orig_params",
                       "compressed_acc", "compressed_entropy", "compressed_entropy_non_zero", "unique_params",
                       "zero_distance")


@dataclass
class WFNResult:
    """The weight-fixed model and the numbers of every round (``to_json()`` is results.json)."""

    model: Model
    results: dict[str, Any]
    run_dir: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.results["compressed_acc"])

    @property
    def baseline_accuracy(self) -> float:
        return float(self.results["orig_acc"])

    @property
    def unique_values(self) -> int:
        return int(self.results["unique_params"])

    def to_json(self) -> dict[str, Any]:
        return self.results

    def plot(self, path: str | Path) -> Path:
        """Accuracy, fixed fraction and codebook size per round (rounds.png)."""
        from jaxnets.methods.wfn import metrics as M

        M.plot_rounds(self.results["rounds"], Path(path))
        return Path(path)


def write_results_csv(path: str | Path, results: Iterable[Mapping[str, Any]]) -> Path:
    """``Results.csv``: a header of the original's columns, then one row per finished run."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULTS_CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(results)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")  # atomic, as results.json
    tmp.write_text(buffer.getvalue())
    tmp.replace(path)
    return path


def _holdout(source: Source, n_val: int, seed: int) -> tuple[Source, Source | None]:
    """The training images and the ``n_val`` held out for validation (None when 0), by the one
    split of ``jaxnets.data.splits`` (shuffled with ``RandomState(seed)``)."""
    from jaxnets.data.sources import Subset
    from jaxnets.data.splits import holdout_split

    if not n_val:
        return source, None
    if n_val >= len(source):
        raise ConfigError("val_split", f"{n_val} holds out all {len(source)} training images")
    train_idx, val_idx = holdout_split(len(source), n_val, shuffle=True, seed=seed)
    return Subset(source, train_idx), Subset(source, val_idx)


def _k_max(k: int) -> int:
    # Padding to a power of two keeps the jitted step's shapes fixed while the codebook grows.
    return max(64, 1 << max(0, k - 1).bit_length())


def _round_dir(run_dir: Path, t: int) -> Path:
    return run_dir / "rounds" / f"round_{t:02d}"


def _train_checkpoints(run_dir: Path, t: int) -> Path:
    """The fine-tuning checkpoints of round ``t`` (kept until the round's own checkpoint is saved)."""
    return Path(run_dir) / "checkpoints" / f"round_{t:02d}"


def _latest_train_step(run_dir: Path, t: int) -> int | None:
    from jaxnets.train.checkpoint import Checkpointer

    path = _train_checkpoints(run_dir, t)
    if not path.is_dir():
        return None
    with Checkpointer(path, read_only=True) as ck:
        return ck.latest_step()


def _drop_train_checkpoints(run_dir: Path, keep: int | None = None) -> None:
    folder = Path(run_dir) / "checkpoints"
    if folder.is_dir():
        kept = f"round_{keep:02d}" if keep is not None else None
        for path in folder.glob("round_*"):
            if path.name != kept:
                shutil.rmtree(path)


def _find_resume_round(run_dir: Path, resume: Any, percentages: list[float]) -> int | None:
    rounds = sorted(int(p.name.split("_")[1]) for p in (run_dir / "rounds").glob("round_*")
                    if (p / "jaxnets.json").is_file()) if (run_dir / "rounds").is_dir() else []
    if resume in (None, "", False):
        return None
    if str(resume) == "auto":
        return rounds[-1] if rounds else None
    text = str(resume)
    try:
        t = int(text)
    except ValueError:
        try:
            p = float(text)
        except ValueError:
            raise JaxnetsError(f"--resume must be 'auto', a round index or a percentage, got {resume!r}") from None
        if p not in percentages:
            raise JaxnetsError(f"--resume {p}: not one of the percentages {percentages}") from None
        t = percentages.index(p)
    if t not in rounds:
        raise JaxnetsError(f"--resume {resume}: no checkpoint of round {t} in {run_dir / 'rounds'} "
                           f"(found {rounds or 'none'})")
    return t


def run(model: Model, data: Data, config: WFNConfig | None = None, run_dir: str | Path | RunDir | None = None, *,
        test_data: Data, resume: str | int | float | None = None, devices: int | None = None,
        provenance: dict[str, Any] | None = None) -> WFNResult:
    """Weight Fixing Networks on ``model``: fine-tune on ``data``, test on ``test_data``, one
    round per percentage; the result's ``model`` holds the fixed weights.

    ``resume`` ('auto', a round index or one of the percentages) continues a ``run_dir`` after
    that round's checkpoint. ``provenance`` (weights, data texts, limits) is recorded in
    config.json next to the config.
    """
    import jax
    import jax.numpy as jnp

    from jaxnets.converters.convert import variables_to_state_dict
    from jaxnets.data.pipeline import eval_loader, train_loader
    from jaxnets.io import load_variables, read_metadata, save_variables
    from jaxnets.methods.wfn import metrics as M
    from jaxnets.methods.wfn.export import export_compact, export_torch
    from jaxnets.methods.wfn.layout import Layout
    from jaxnets.methods.wfn.regulariser import (
        make_loss_fn,
        make_optimizer,
        trainable_mask,
        wfn_args,
    )
    from jaxnets.models.api import abstract_variables
    from jaxnets.rundir import RunDir
    from jaxnets.runtime import setup_jax
    from jaxnets.train.evaluate import evaluate
    from jaxnets.train.loop import fit
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step
    from jaxnets.transforms.codebook import Codebook
    from jaxnets.ui import info, warn

    t_start = time.perf_counter()
    o = config or WFNConfig()
    spec, module, mean, std, n_classes = model.spec, model.module, model.mean, model.std, model.num_classes
    mesh = None
    if devices:
        from jaxnets.train.parallel import check_divisible, make_mesh

        mesh = make_mesh(devices)
        check_divisible(int(o.batch_size), mesh)
    train_src, val_src = _holdout(data.source, int(o.val_split), int(o.seed))
    test_src = test_data.source
    if run_dir is not None:
        run_dir = RunDir.of(run_dir, "wfn run", spec.name, resume=resume)
    elif resume is not None:
        raise JaxnetsError("resume needs the run_dir of the run to continue")
    setup_jax(devices)
    percentages = list(o.percentages)
    rounds = len(percentages)
    thresholds = threshold_schedule(o.distance_allowed, rounds, o.distance_schedule)
    epochs = [int(o.first_epoch)] + [int(o.fixing_epochs)] * (rounds - 1)
    mode, gamma0 = o.calculation_type, float(o.zero_distance)
    resume_t = _find_resume_round(run_dir, resume, percentages) if run_dir is not None else None
    # 'auto' also continues inside the next round, from its fine-tuning checkpoint (kill -9).
    inside_round, inside_step = None, None
    if run_dir is not None and resume is not None:
        next_round = resume_t + 1 if resume_t is not None else 0
        if str(resume) == "auto" and next_round < rounds:
            inside_step = _latest_train_step(run_dir, next_round)
            inside_round = next_round if inside_step is not None else None

    def test_eval(variables: Any) -> Any:  # top-1 and top-5 on the test set
        return evaluate(module, variables, eval_loader(spec, test_src, int(o.batch_size)),
                        mean, std, n_classes, mesh=mesh, description="test")

    def validate(state: Any) -> dict[str, float]:  # fit's eval_fn: after every fine-tuning epoch
        r = evaluate(module, state.variables, eval_loader(spec, val_src, int(o.batch_size)),
                     mean, std, n_classes, mesh=mesh, description="validation")
        return {"val_loss": r.loss, "val_acc": r.top1}

    loss_fn = make_loss_fn(mode=mode, gamma0=gamma0)
    step_fn = make_train_step(module, loss_fn, normalize=(mean, std), mesh=mesh,
                              trainable_mask=trainable_mask, mask_gradients=False,
                              precision=o.precision)
    loader = train_loader(spec, train_src, int(o.batch_size), seed=int(o.seed),
                          augment=bool(o.augment), shuffle=True)
    if loader.steps_per_epoch < 1:
        raise JaxnetsError(f"--batch-size {o.batch_size} is larger than the training set "
                           f"({len(train_src)})")

    recorded = json.loads(json.dumps({"model": spec.name, **(provenance or {}), **dataclasses.asdict(o)},
                                     default=str))
    if run_dir is not None:
        run_dir.write_config({**recorded, "resume": resume, "devices": devices}, model=spec.name)

    # ---- start: pretrained (or pretrained here) weights, or a round checkpoint
    if resume_t is not None:
        rdir = _round_dir(run_dir, resume_t)
        meta = read_metadata(rdir)
        template = dict(abstract_variables(spec, module))
        k_pad, n_q = int(meta["k_max"]), int(meta["quantised"])
        template["wfn"] = {"values": jax.ShapeDtypeStruct((k_pad,), jnp.float32),
                           "valid": jax.ShapeDtypeStruct((k_pad,), jnp.bool_),
                           "assign": jax.ShapeDtypeStruct((n_q,), jnp.int32)}
        restored = load_variables(rdir, template, model_name=spec.name)
        wfn_state = restored.pop("wfn")
        variables = {k: v for k, v in restored.items()}
        layout = Layout.for_model(spec, module, variables, bn_inc=bool(o.bn_inc))
        k_real = int(np.sum(np.asarray(wfn_state["valid"])))
        assign_flat = np.asarray(wfn_state["assign"])
        codebook = Codebook.create(np.asarray(wfn_state["values"])[:k_real],
                                   layout.tree(assign_flat, variables["params"]), k_max=k_pad)
        rows, baseline = list(meta["rounds"]), dict(meta["baseline"])
        global_step, start = int(meta["global_step"]), resume_t + 1
        for later in (run_dir / "rounds").glob("round_*"):
            if int(later.name.split("_")[1]) > resume_t:
                shutil.rmtree(later)
        info(f"resuming after round {resume_t} (p = {percentages[resume_t]})")
    else:
        variables = dict(model.variables)
        if int(o.pretrain_epochs) > 0:
            variables = _pretrain(module, variables, spec, train_src, o, (mean, std), mesh)
        layout = Layout.for_model(spec, module, variables, bn_inc=bool(o.bn_inc))
        codebook = Codebook.empty(variables["params"], lambda n, _: n in set(layout.paths),
                                  k_max=64)
        base_vec = layout.flatten(variables["params"])
        base = test_eval(variables)
        sd = variables_to_state_dict(jax.device_get(variables), spec.keymap)
        baseline = {"accuracy": base.top1, "top5": base.top5, **M.value_stats(base_vec), **M.paper_stats(sd)}
        rows, global_step, start = [], 0, 0
        info(f"baseline: test top-1 {100 * base.top1:.2f} %, {baseline['unique_all']} unique values")

    if run_dir is not None and resume is not None:
        _drop_train_checkpoints(run_dir, keep=inside_round)
    if inside_round is not None:
        info(f"resuming inside round {inside_round} at step {inside_step}")
    resume_step = inside_step if inside_round is not None else (global_step if resume_t is not None else None)
    writer = (run_dir.metrics(resume_step=resume_step, tensorboard=bool(o.tensorboard))
              if run_dir is not None else None)
    try:
        for t in range(start, rounds):
            p, a_t, n_ep = percentages[t], thresholds[t], epochs[t]
            t0 = time.perf_counter()
            # 1. fine-tune the free weights with a fresh optimiser (Adam moments reset)
            reg_on = float(o.regularisation_ratio) > 0 and t > 0  # no codebook before round 0's step
            args = wfn_args(codebook, float(o.regularisation_ratio), reg_on)
            # once per round onto the device(s), not at every step
            if mesh is not None:
                from jaxnets.train.parallel import replicate

                args = replicate(mesh, args)
            else:
                args = jax.device_put(args)
            tx = make_optimizer(o.optimizer, float(o.lr))
            # The step counter runs on over the rounds (metrics rows and checkpoints are keyed
            # by it); the PRNG key is the round's.
            state = TrainState.create(module, variables, tx,
                                      rng=jax.random.fold_in(jax.random.key(int(o.seed)), t)
                                      ).replace(step=jnp.asarray(global_step, jnp.int32))
            if n_ep:
                ckpts = _train_checkpoints(run_dir, t) if run_dir is not None else None
                fitted = fit(state, step_fn, _RoundEpochs(loader, sum(epochs[:t])), epochs=n_ep,
                             eval_fn=validate if val_src is not None else None,
                             checkpoints=ckpts, metrics=writer,
                             resume=ckpts if t == inside_round else None,
                             checkpoint_every=int(o.checkpoint_every) or None,
                             row_fields={"round": t}, transform_args=args, model_name=spec.name,
                             config=recorded, mesh=mesh, log_every=0, progress=False)
                state = fitted.state
                global_step = int(jax.device_get(state.step))
                variables = dict(jax.device_get(state.variables))
            # 2. test (before this round's clustering, as the original); without training since
            # the last write-back the weights are those the last round's test after fixing saw
            if n_ep or t == 0:
                before = test_eval(variables)
                acc_before, top5_before = before.top1, before.top5
            else:
                acc_before, top5_before = rows[-1]["accuracy_after_fix"], rows[-1].get("top5_after_fix")
            # 3. cluster the current weights from scratch
            w = layout.flatten(variables["params"])
            prev_fixed = layout.flatten(codebook.fixed, dtype=bool)
            frozen_ok = bool(np.array_equal(
                w[prev_fixed].view(np.uint32),
                np.asarray(codebook.values, np.float32)[layout.flatten(codebook.assign, np.int64)
                                                         [prev_fixed]].view(np.uint32)))
            if not frozen_ok:
                warn(f"round {t}: fixed weights moved during fine-tuning (should never happen)")
            tc = time.perf_counter()
            r = cluster(w, p, a_t, mode=mode, gamma0=gamma0, windowed=bool(o.windowed))
            cluster_s = time.perf_counter() - tc
            # 4. write back, new codebook
            new_w = np.where(r.fixed, r.values, w).astype(np.float32)
            values = r.codebook
            assign_flat = np.where(r.fixed, np.searchsorted(values, r.values + np.float32(0.0)),
                                   -1).astype(np.int32)
            variables["params"] = layout.unflatten(new_w, variables["params"])
            codebook = Codebook.create(values, layout.tree(assign_flat, variables["params"]),
                                       k_max=_k_max(values.size))
            newly = r.fixed & ~prev_fixed
            dn = r.distances[newly].astype(np.float64)
            after = test_eval(variables)
            acc_after = after.top1
            sd = variables_to_state_dict(jax.device_get(variables), spec.keymap)
            stats = M.value_stats(new_w)
            row = {"phase": "round", "round": t, "step": global_step, "percentage": p, "a_t": a_t,
                   "distance_allowed": o.distance_allowed, "epochs": n_ep,
                   "accuracy": acc_before, "accuracy_after_fix": acc_after,
                   "top5": top5_before, "top5_after_fix": after.top5,
                   "fixed": int(r.fixed.sum()), "fixed_fraction": float(r.fixed.mean()),
                   "number_of_clusters": int(values.size), "centres_used": int(np.unique(r.values[r.fixed]).size),
                   **{f"order_{i}": int(x) for i, x in enumerate(r.order_hist)},
                   "empty_attempts": r.empty_attempts, "max_a": r.max_a,
                   "max_distance": float(dn.max()) if dn.size else 0.0,
                   "median_distance": float(np.median(dn)) if dn.size else 0.0,
                   "mean_distance": float(dn.mean()) if dn.size else 0.0,
                   "std_distance": float(dn.std()) if dn.size else 0.0,
                   "entropy_before_fix": M.value_stats(w)["entropy_all"],
                   **stats, **M.paper_stats(sd), "frozen_ok": frozen_ok,
                   "cluster_seconds": cluster_s, "round_seconds": time.perf_counter() - t0}
            row["mean_dist+std"] = row["mean_distance"] + row["std_distance"]
            if writer is not None:
                writer.write(row)
            rows.append(row)
            info(f"round {t}: p={p} a_t={a_t:.4g} fixed {row['fixed']}/{layout.size}, "
                 f"{values.size} centres, test top-1 {100 * acc_after:.2f} %")
            # 5. checkpoint the round
            if run_dir is None:
                continue
            rdir = _round_dir(run_dir, t)
            if rdir.exists():
                shutil.rmtree(rdir)
            save_variables(rdir, {**variables, "wfn": {
                "values": np.asarray(codebook.values), "valid": np.asarray(codebook.valid),
                "assign": assign_flat}},
                {"model": spec.name, "schema": "jaxnets.wfn.round/1", "round": t,
                 "percentage": p, "a_t": a_t, "global_step": global_step,
                 "k_max": codebook.k_max, "quantised": layout.size, "rounds": rows,
                 "baseline": baseline, "config": recorded})
            _drop_train_checkpoints(run_dir)  # the round's checkpoint supersedes them
    finally:
        if writer is not None:
            writer.close()

    # ---- final model: metrics, exports, plots, results
    final_vec = layout.flatten(variables["params"])
    sd = variables_to_state_dict(jax.device_get(variables), spec.keymap)
    final = {"accuracy": rows[-1]["accuracy_after_fix"], "top5": rows[-1].get("top5_after_fix"),
             **M.value_stats(final_vec),
             **M.paper_stats(sd), "fixed_fraction": rows[-1]["fixed_fraction"],
             "codebook_size": int(np.sum(np.asarray(codebook.valid))),
             "per_tensor_unique": M.per_tensor_unique(layout, final_vec)}
    exports: dict[str, Any] = {}
    if o.export and run_dir is not None:
        final_dir = run_dir / "final_model"
        if final_dir.exists():
            shutil.rmtree(final_dir)
        save_variables(final_dir, variables, {"model": spec.name, "schema": "jaxnets.wfn.final/1",
                                              "bn_inc": bool(o.bn_inc), "num_classes": n_classes,
                                              "normalization": {"mean": list(mean), "std": list(std)}})
        exports["jaxnets"] = str(final_dir)
        exports["torch"] = str(export_torch(run_dir / "final_model.pth", variables, spec.keymap))
        if rows[-1]["fixed_fraction"] == 1.0:
            exports["compact"] = export_compact(run_dir / "final_model.wfn.npz", variables,
                                                spec.keymap, layout, np.asarray(codebook.values)
                                                [np.asarray(codebook.valid)])
    if o.plots and run_dir is not None:
        M.plot_histogram(final_vec, run_dir / "codebook_histogram.png",
                         f"{spec.name} δ={o.distance_allowed}")
        M.plot_rounds(rows, run_dir / "rounds.png")
    results = {
        "schema": RESULTS_SCHEMA, "data_name": data.text, "experiment_name": o.experiment_name,
        "model_name": spec.name, "BN": bool(o.bn_inc),
        "regularisation_ratio": o.regularisation_ratio, "distance_allowed": o.distance_allowed,
        "fixing_epochs": o.fixing_epochs, "zero_distance": gamma0,
        "calculation_type": mode, "orig_acc": baseline["accuracy"],
        "orig_entropy": baseline["entropy_all"], "orig_params": baseline["unique_all"],
        "compressed_acc": final["accuracy"], "compressed_entropy": final["entropy_all"],
        "compressed_entropy_non_zero": final["entropy_nonzero"],
        "unique_params": final["unique_all"], "orig_acc5": baseline.get("top5"), "compressed_acc5": final["top5"],
        "images": {"train": len(train_src), "validation": len(val_src) if val_src is not None else 0,
                   "test": len(test_src)},
        "baseline": baseline, "final": final,
        "quantised_values": layout.size, "rounds": rows, "exports": exports,
        "seconds": time.perf_counter() - t_start, "resumed_from_round": resume_t,
    }
    if run_dir is not None:
        run_dir.write_json("results.json", results)
        write_results_csv(run_dir / RESULTS_CSV, [results])
    summary = {
        "model": spec.name, "run_dir": str(run_dir) if run_dir is not None else None,
        "baseline_accuracy": baseline["accuracy"],
        "final_accuracy": final["accuracy"], "unique_all": final["unique_all"],
        "entropy_all": final["entropy_all"], "unique_nonzero_paper": final["unique_nonzero_paper"],
        "entropy_nonzero_paper": final["entropy_nonzero_paper"],
        "codebook_size": final["codebook_size"], "fixed_fraction": final["fixed_fraction"],
        "quantised_values": layout.size, "rounds": rounds,
        "compact_bytes": exports.get("compact", {}).get("bytes"),
        "float32_bytes": exports.get("compact", {}).get("float32_bytes"),
        "seconds": results["seconds"],
    }
    info(f"{spec.name}: WFN δ={o.distance_allowed} → test top-1 {100 * final['accuracy']:.2f} % "
         f"(baseline {100 * baseline['accuracy']:.2f} %), {final['unique_all']} unique values, "
         f"{final['entropy_all']:.3f} bits")
    fixed = model.replace(jax.device_get(variables))
    return WFNResult(model=fixed, results=results, run_dir=run_dir, summary=summary)


def delta_folder(delta: float) -> str:
    """The sub-folder of one δ's run in a run over several (``delta_0.0075``)."""
    return f"delta_{float(delta)!r}"


def run_deltas(model: Model, data: Data, config: WFNConfig | None = None, deltas: Sequence[float] | str = (),
               run_dir: str | Path | RunDir | None = None, *, test_data: Data, resume: str | None = None,
               devices: int | None = None, provenance: dict[str, Any] | None = None) -> list[WFNResult]:
    """One WFN run per δ of ``deltas`` (the original's list-valued ``--distance_allowed``), each
    from ``model``'s own weights with ``config``'s other settings; the results in that order.

    With a ``run_dir``, δ's run goes to ``<run_dir>/delta_<δ>/`` (a whole WFN run folder) and
    ``<run_dir>/Results.csv`` gains a row as each run finishes (the original's file collected one
    row per run the same way); ``resume='auto'`` continues every δ's folder.
    """
    from jaxnets.rundir import RunDir

    o = config or WFNConfig()
    deltas = parse_deltas(deltas if deltas else o.distance_allowed)
    configs = [dataclasses.replace(o, distance_allowed=d) for d in deltas]  # every δ checked before any run
    _holdout(data.source, int(o.val_split), int(o.seed))  # and the split, before a folder is made
    if resume not in (None, "auto"):
        raise JaxnetsError(f"--resume {resume}: a run over several δ resumes with 'auto' only")
    parent = RunDir.of(run_dir, "wfn run", model.spec.name, resume=resume)
    if parent is None and resume is not None:
        raise JaxnetsError("resume needs the run_dir of the run to continue")
    if parent is not None:
        recorded = {"model": model.spec.name, **(provenance or {}), **dataclasses.asdict(o),
                    "distance_allowed": list(deltas)}
        parent.write_config({**json.loads(json.dumps(recorded, default=str)), "resume": resume, "devices": devices},
                            model=model.spec.name)
    results: list[WFNResult] = []
    for c in configs:
        folder = parent / delta_folder(c.distance_allowed) if parent is not None else None
        results.append(run(model, data, c, folder, test_data=test_data, resume=resume if folder else None,
                           devices=devices, provenance=provenance))
        if parent is not None:
            write_results_csv(parent / RESULTS_CSV, [r.results for r in results])
    return results


def _pretrain(module: Any, variables: dict, spec: Any, train_src: Any, o: WFNConfig,
              normalize: tuple, mesh: Any) -> dict:
    """A short plain Adam training from scratch (for demos without --weights)."""
    import jax
    import optax

    from jaxnets.data.pipeline import train_loader
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step

    loader = train_loader(spec, train_src, int(o.batch_size), seed=int(o.seed) + 7919,
                          augment=bool(o.augment), shuffle=True)
    state = TrainState.create(module, variables, optax.adam(float(o.pretrain_lr)),
                              seed=int(o.seed))
    step = make_train_step(module, normalize=normalize, mesh=mesh)
    for e in range(int(o.pretrain_epochs)):
        for batch in loader.epoch(e):
            state, _ = step(state, batch.images, batch.labels, batch.mask)
    return dict(jax.device_get(state.variables))


class _RoundEpochs:
    """The loader seen from inside one round: epoch e of the round is the loader's global epoch
    ``first + e`` (the data order does not depend on where a run was resumed)."""

    def __init__(self, loader: Any, first: int):
        self.loader, self.first = loader, first
        self.steps_per_epoch = loader.steps_per_epoch

    def epoch(self, epoch: int, start_step: int = 0) -> Any:
        return self.loader.epoch(self.first + epoch, start_step)
