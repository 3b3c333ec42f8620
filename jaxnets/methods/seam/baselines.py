"""The two baselines SeaM's indirect reuse is compared with (specs/seam.md §2.10, §4.8): the
original's ``defect_inherit/standard_finetune.py`` and ``defect_inherit/retrain.py``.

* ``standard_finetune(model, data, StandardFinetuneConfig(...), run_dir=None, *, test_data)``:
  the pretrained model with a new K-way output layer, every layer trained (SGD ``lr``, the output
  layer ``10 × lr``, ``momentum``, ``weight_decay``; train mode; ``Dropout2d(dropout)`` after each
  ResNet stage), the best test accuracy kept, no early stop. The training of step 3 of
  ``seam finetune`` without the masks (:func:`.finetuning.train_keep_best`; the same new output
  layer for the same seed).
* ``retrain(model, data, RetrainConfig(...), ...)``: the same architecture from a random
  initialisation (``model``'s weights are not used), one SGD (``lr`` 0.1, momentum 0.5).

Both return a :class:`BaselineResult` (the fine-tuned K-way model, ``to_json()``); the DIR of
either is ``seam eval-robustness`` / :func:`.robustness.eval_robustness`. Training runs in
``jaxnets.train.loop.fit``. Run folder: ``config.json``, ``metrics.jsonl``/``.csv``,
``checkpoints/`` (every epoch end; ``resume="auto"`` continues a killed run exactly),
``model_ft.msgpack`` / ``model_rt.msgpack`` (the best variables), ``results.json``; without a
``run_dir`` nothing is written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxnets.api import Data, Model
from jaxnets.errors import JaxnetsError
from jaxnets.methods.seam import maskdict
from jaxnets.methods.seam.config import RetrainConfig, StandardFinetuneConfig
from jaxnets.methods.seam.dropout import with_stage_dropout
from jaxnets.methods.seam.finetuning import FitPlace, output_layer_sgd, sgd, train_keep_best, with_new_output_layer
from jaxnets.methods.seam.loaders import check_same_classes, open_split, target_loaders
from jaxnets.models.api import init_variables
from jaxnets.rundir import RunDir
from jaxnets.ui import info

SCHEMA = "jaxnets.seam.baseline/1"
MODEL_FILES = {"standard": "model_ft.msgpack", "retrain": "model_rt.msgpack"}  # the original's model_ft/rt.pth
# The new output layer's init seed (seed + this): step 3 of `seam finetune` uses the same offset, so
# for one seed the standard baseline and SeaM's fine-tuning start from the same output layer.
OUTPUT_LAYER_SEED_OFFSET = 2


@dataclass
class BaselineResult:
    """A fine-tuned (or retrained) K-way model and the numbers of results.json (``to_json()``)."""

    model: Model
    summary: dict[str, Any]
    run_dir: RunDir | None = None

    @property
    def accuracy(self) -> float:
        """The kept (best) test accuracy."""
        return float(self.summary["acc"])

    def to_json(self) -> dict[str, Any]:
        return self.summary

    def describe(self) -> str:
        s = self.summary
        return (f"{s['method']} {s['model']} on {s['data']}: best test acc {100 * s['acc']:.2f} % at epoch "
                f"{s['epoch']} ({s['epochs_run']} epochs run)")


def _train(method: str, model: Model, data: Data, variables: Mapping, tx: Any, config: Any,
           run_dir: str | Path | RunDir | None, test_data: Data | None, provenance: Mapping[str, Any] | None,
           resume: str | Path | None) -> BaselineResult:
    """The one training of both baselines: K-way module, loaders, dropout, fit, files."""
    from jaxnets.train.checkpoint import find_resume, resumed_run_folder

    spec, k = model.spec, data.num_classes
    if "/" in spec.head:
        raise JaxnetsError(f"seam {method} needs a top-level output layer; {spec.name}'s is {spec.head}")
    if test_data is None:
        test_data = open_split(data.text, "test", limit=data.limit, partial=bool(data.limit))
    check_same_classes(data, test_data)
    module = spec.create(k)
    trained = with_stage_dropout(module, variables["params"], config.dropout, spec.name)  # before any file
    command = "seam standard-finetune" if method == "standard" else "seam retrain"
    run_dir = RunDir.of(run_dir, command, spec.name, resume=resume)
    resume_dir = find_resume(resume, run_dir) if resume is not None else None
    norm = (model.mean, model.std)
    loaders = target_loaders(spec, data.source, test_data.source, batch_size=config.batch_size, seed=config.seed,
                             augment=config.augment)
    recorded = {"model": spec.name, "weights": model.weights if method == "standard" else None, "data": data.text,
                "limit": data.limit, "out": run_dir, **(provenance or {}), **dataclasses.asdict(config)}
    recorded = json.loads(json.dumps(recorded, default=str))
    if run_dir is not None:
        run_dir.write_config(recorded, resume_from=resumed_run_folder(resume, run_dir))
    place = FitPlace(run_dir=run_dir.path if run_dir is not None else None, resume=resume_dir,
                     model_name=spec.name, config=recorded)
    best, s = train_keep_best(trained, module, variables, tx, loaders.train, loaders.test, norm, epochs=config.epochs,
                              early_stop=config.early_stop, seed=config.seed, name=method, place=place, log=info)
    summary = {"schema": SCHEMA, "method": method, "model": spec.name, "data": data.text, "num_classes": k,
               "seed": config.seed, **s, "train_images": len(data), "test_images": len(test_data),
               "run_dir": str(run_dir) if run_dir is not None else None, "options": recorded}
    if run_dir is not None:
        maskdict.save_tree(run_dir / MODEL_FILES[method], best)
        run_dir.write_json("results.json", summary)
    tuned = dataclasses.replace(model, module=module, variables=best, num_classes=k, weights=None)
    return BaselineResult(model=tuned, summary=summary, run_dir=run_dir)


def standard_finetune(model: Model, data: Data, config: StandardFinetuneConfig | None = None,
                      run_dir: str | Path | RunDir | None = None, *, test_data: Data | None = None,
                      provenance: Mapping[str, Any] | None = None,
                      resume: str | Path | None = None) -> BaselineResult:
    """Fine-tune the pretrained ``model`` with a new ``data.num_classes``-way output layer (see the
    module docstring); ``test_data`` defaults to the test split of the same data."""
    config = config or StandardFinetuneConfig()
    module = model.spec.create(data.num_classes)
    start = with_new_output_layer(model.spec, module, model.variables, config.seed + OUTPUT_LAYER_SEED_OFFSET)
    tx = output_layer_sgd(model.spec.head, config.lr, 10 * config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    return _train("standard", model, data, start, tx, config, run_dir, test_data, provenance, resume)


def retrain(model: Model, data: Data, config: RetrainConfig | None = None, run_dir: str | Path | RunDir | None = None,
            *, test_data: Data | None = None, provenance: Mapping[str, Any] | None = None,
            resume: str | Path | None = None) -> BaselineResult:
    """Train ``model``'s architecture from scratch (seeded initialisation; its weights are not
    used) on ``data`` (see the module docstring)."""
    config = config or RetrainConfig()
    start = init_variables(model.spec, model.spec.create(data.num_classes), config.seed)
    tx = sgd(config.lr, config.momentum, config.weight_decay)
    return _train("retrain", model, data, start, tx, config, run_dir, test_data, provenance, resume)
