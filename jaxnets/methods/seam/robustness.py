"""The defect inheritance rate of any fine-tuned model (the original's ``eval_robustness.py``,
specs/seam.md §3.5, §4.8): ``eval_robustness(public, finetuned, test_data, RobustnessConfig(...),
run_dir=None, *, method) -> RobustnessResult``.

PGD runs on the *public pretrained* model's pooled features (its output layer unused), the
adversarial test images go to the *fine-tuned* model, both in eval mode; DIR = 100 ·
#(clean-correct ∧ adversarially wrong) / #(clean-correct), printed as the original does
(``Clean Top-1: xx.xx | Attack Success Rate: xx.xx``). :func:`defect_inheritance` is the
measurement itself, shared with ``seam finetune``.

The fine-tuned model: a ``seam finetune`` / ``seam standard-finetune`` / ``seam retrain`` run
folder (its ``step_3_seam_ft.msgpack`` / ``model_ft.msgpack`` / ``model_rt.msgpack``: ``method``
``seam`` / ``standard`` / ``retrain``, the original's ``--eval_method``; found from the folder's
files when not given), one of those files, a jaxnets checkpoint folder, or a PyTorch state_dict of
the K-way network (the original's ``model_ft.pth``). Run folder (``run_dir``): ``config.json``,
``results.json``; without one nothing is written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnets.api import Data, Model
from jaxnets.errors import JaxnetsError
from jaxnets.io import is_jaxnets_checkpoint
from jaxnets.methods.seam import defect, maskdict
from jaxnets.methods.seam.config import RobustnessConfig
from jaxnets.methods.seam.loaders import test_loader
from jaxnets.rundir import RunDir
from jaxnets.train.steps import normalize_images

SCHEMA = "jaxnets.seam.robustness/1"
# --eval-method → the fine-tuned model's file in its run folder (the original's remos is not offered).
FINETUNED_FILES = {"seam": "step_3_seam_ft.msgpack", "standard": "model_ft.msgpack", "retrain": "model_rt.msgpack"}
EVAL_METHODS = tuple(FINETUNED_FILES)


def defect_inheritance(public: Model, module: Any, variables: Mapping, loader: Any, *, eps: float, steps: int,
                       step_size: float, seed: int) -> dict[str, Any]:
    """PGD on ``public``'s features, predictions of the fine-tuned ``module``/``variables`` on
    the clean and adversarial images of ``loader`` (pixel images, normalised as ``public``'s);
    the counts and rates of :func:`.defect.defect_inheritance_rate` plus the attack's settings."""
    norm = (public.mean, public.std)

    def features(v: Mapping, x: jax.Array) -> jax.Array:
        _, state = public.module.apply(v, x, train=False, mutable=["intermediates"])
        return state["intermediates"]["features"][0]

    # Both models' variables are jit arguments, not constants baked into the programs.
    attack = jax.jit(lambda v, x, key: defect.pgd_attack(lambda z: features(v, z), x, key, eps=eps, steps=steps,
                                                         step_size=step_size))
    predict = jax.jit(lambda v, x: jnp.argmax(module.apply(v, x, train=False), -1))
    base = jax.random.key(seed)
    variables = jax.device_put(dict(variables))  # once, not with every batch
    clean, adv, labels = [], [], []
    for i, b in enumerate(loader.epoch(0)):
        x = normalize_images(b.images, norm)
        x_adv = attack(public.variables, x, jax.random.fold_in(base, i))
        clean.append(np.asarray(predict(variables, x))[b.mask])
        adv.append(np.asarray(predict(variables, x_adv))[b.mask])
        labels.append(np.asarray(b.labels)[b.mask])
    out = defect.defect_inheritance_rate(np.concatenate(clean), np.concatenate(adv), np.concatenate(labels))
    out["attack_success_rate"] = out["dir"]  # the original's name for the same number
    out["pgd"] = {"eps": eps, "steps": steps, "step_size": step_size, "clip": [-2.2, 2.2], "seed": seed,
                  "attacked": public.name, "random_start": True}
    return out


def finetuned_file(path: str | Path, method: str | None = None) -> tuple[Path, str | None]:
    """The fine-tuned model's file and its method: a run folder's file for ``method`` (or the only
    one of the three it holds), else ``path`` itself (``method`` as given)."""
    path = Path(path)
    if method is not None and method not in FINETUNED_FILES:
        raise JaxnetsError(f"--eval-method must be one of {', '.join(EVAL_METHODS)} (got '{method}'; the "
                           "original's remos is not supported)")
    if not path.exists():
        raise JaxnetsError(f"fine-tuned model not found: {path}")
    if path.is_dir() and not is_jaxnets_checkpoint(path):
        present = [m for m, f in FINETUNED_FILES.items() if (path / f).is_file()]
        if method is None:
            if len(present) != 1:
                raise JaxnetsError(f"{path} holds {'no' if not present else 'several'} fine-tuned model(s) "
                                   f"({', '.join(FINETUNED_FILES.values())}); say which with --eval-method")
            method = present[0]
        if method not in present:
            raise JaxnetsError(f"{path} has no {FINETUNED_FILES[method]} (--eval-method {method}); it holds "
                               f"{', '.join(FINETUNED_FILES[m] for m in present) or 'none of them'}")
        return path / FINETUNED_FILES[method], method
    return path, method


def load_finetuned(public: Model, path: str | Path, num_classes: int,
                   method: str | None = None) -> tuple[Model, str | None]:
    """The fine-tuned K-way network (``public``'s architecture and normalisation) and its method."""
    from jaxnets.converters.convert import check_variables_fit
    from jaxnets.models.api import abstract_variables, load_weights

    file, method = finetuned_file(path, method)
    module = public.spec.create(num_classes)
    if file.suffix == ".msgpack":
        variables = maskdict.load_tree(file)
        check_variables_fit(variables, abstract_variables(public.spec, module), model_name=public.name)
    else:
        variables = load_weights(public.spec, module, file)
    variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    tuned = dataclasses.replace(public, module=module, variables=variables, num_classes=num_classes, weights=file)
    return tuned, method


@dataclass
class RobustnessResult:
    """Clean top-1 and the DIR of one fine-tuned model (``to_json()`` is results.json)."""

    summary: dict[str, Any]
    run_dir: RunDir | None = None

    @property
    def clean_top1(self) -> float:
        return float(self.summary["clean_top1"])

    @property
    def defect_inheritance_rate(self) -> float:
        return float(self.summary["dir"])

    def to_json(self) -> dict[str, Any]:
        return self.summary

    def describe(self) -> str:
        """The original's line."""
        return f"Clean Top-1: {self.clean_top1:.2f} | Attack Success Rate: {self.defect_inheritance_rate:.2f}"


def eval_robustness(public: Model, finetuned: Model | str | Path, test_data: Data,
                    config: RobustnessConfig | None = None, run_dir: str | Path | RunDir | None = None, *,
                    method: str | None = None, provenance: Mapping[str, Any] | None = None) -> RobustnessResult:
    """The DIR of ``finetuned`` (a :class:`Model` or a path, see the module docstring) on
    ``test_data`` against PGD on ``public`` (the pretrained model it was fine-tuned from)."""
    config = config or RobustnessConfig()
    if isinstance(finetuned, Model):
        tuned, source = finetuned, None
    else:
        tuned, method = load_finetuned(public, finetuned, test_data.num_classes, method)
        source = str(tuned.weights)
    if tuned.num_classes != test_data.num_classes:
        raise JaxnetsError(f"the fine-tuned model has {tuned.num_classes} outputs, the test data "
                           f"{test_data.num_classes} classes")
    run_dir = RunDir.of(run_dir, "seam eval-robustness", public.name)
    recorded = {"model": public.name, "weights": public.weights, "finetuned": source, "eval_method": method,
                "data": test_data.text, **(provenance or {}), **dataclasses.asdict(config)}
    if run_dir is not None:
        run_dir.write_config(recorded)
    loader = test_loader(public.spec, test_data.source, config.batch_size)
    out = defect_inheritance(public, tuned.module, tuned.variables, loader, eps=config.pgd_eps,
                             steps=config.pgd_steps, step_size=config.pgd_step_size, seed=config.seed)
    summary = {"schema": SCHEMA, "eval_method": method, "model": public.name,
               "public_weights": str(public.weights) if public.weights else None, "finetuned": source,
               "data": test_data.text, "num_classes": test_data.num_classes, **out,
               "run_dir": str(run_dir) if run_dir is not None else None}
    if run_dir is not None:
        run_dir.write_json("results.json", summary)
    return RobustnessResult(summary=summary, run_dir=run_dir)
