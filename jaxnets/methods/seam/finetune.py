"""Indirect reuse (specs/seam.md §2.10, step 3) and the defect inheritance rate (§3.5).

Scope of this version: masks come from ``--masks`` (a ``seam reengineer`` run folder or an
original mask-dict ``.pth``); steps 1–2 of the original pipeline (fit a new fc, re-engineer
with the fc as head and a prune threshold) are not implemented here. Step 3: the pretrained
model with ``W ⊙ 1[s > 0]`` and a fresh output layer is fine-tuned (SGD, momentum 0, weight
decay 1e-4, the output layer at 10× the backbone lr, BN in train mode). As in the original the
masks only initialise (pruned weights may regrow) unless ``--enforce-masks``. Then PGD on the
public pretrained feature extractor and DIR of the fine-tuned model on the test set.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError


def _load_masks(path: Path, template: Any, keymap: Any) -> Any:
    from jaxnets.methods.seam import maskdict

    if path.is_dir():
        return maskdict.load_tree(path / "scores.msgpack", template)
    return maskdict.import_mask_dict(path, template, keymap)[0]


def run_finetune(opts: Mapping[str, Any]) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from jaxnets.data.loader import Loader
    from jaxnets.data.pipeline import adapt_to_data
    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalization_for
    from jaxnets.methods.seam import core, defect
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.runtime import create_run_dir, write_json
    from jaxnets.train.state import TrainState
    from jaxnets.train.steps import make_train_step, normalize_images
    from jaxnets.transforms import masks as mask_ops

    if opts.get("masks") is None:
        raise JaxnetsError("seam finetune needs --masks (a `jaxnets seam reengineer` run folder or an "
                           "original mask-dict .pth); steps 1-2 of the original pipeline are not built in")
    for key in ("alpha", "lr", "pgd_eps"):
        if float(opts.get(key, 0)) < 0:
            raise JaxnetsError(f"--{key.replace('_', '-')} must be ≥ 0")
    spec = resolve(opts["model"])
    limit = opts.get("limit")
    train = open_source(opts["data"], "train", limit=limit, cache=False if limit else None)
    test = open_source(opts["data"], "test", limit=limit, cache=False if limit else None)
    k = train.num_classes
    spec = adapt_to_data(spec, test, spec.num_classes)
    orig_module = spec.create(spec.num_classes)
    orig = (load_weights(spec, orig_module, opts["weights"]) if opts.get("weights")
            else init_variables(spec, orig_module, int(opts.get("seed", 0))))
    head_path = spec.head
    scores = _load_masks(Path(opts["masks"]), core.init_scores(orig["params"]), spec.keymap)
    module = spec.create(k)
    fresh = init_variables(spec, module, int(opts.get("seed", 0)) + 1)
    pruned = core.pruned_params(orig["params"], scores)
    params = dict(pruned)
    params[head_path] = fresh["params"][head_path]  # new output layer, default init
    variables = {"params": params}
    if orig.get("batch_stats"):
        variables["batch_stats"] = orig["batch_stats"]
    norm = normalization_for(spec, opts.get("normalize"))
    lr = float(opts["lr"])
    labels_fn = lambda p: {n: ("head" if n == head_path else "body") for n in p}  # noqa: E731
    tx = optax.multi_transform({"body": optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(lr)),
                                "head": optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(10 * lr))},
                               labels_fn)
    keep = core.binary_masks(scores)
    keep = {n: (None if n == head_path else v) for n, v in keep.items()}
    transform = (lambda p, _: mask_ops.apply_mask(p, keep)) if opts.get("enforce_masks") else None
    state = TrainState.create(module, variables, tx, seed=int(opts.get("seed", 0)))
    step = make_train_step(module, normalize=norm, param_transform=transform)
    batch = int(opts.get("batch_size", 64))
    loader = Loader(train, batch, shuffle=True, seed=int(opts.get("seed", 0)), drop_last=False, pad_last=True)
    for epoch in range(int(opts["epochs"])):
        for b in loader.epoch(epoch):
            state, _ = step(state, b.images, b.labels, b.mask)
    final = state.params if transform is None else transform(state.params, None)
    ft_vars = {"params": final, **({"batch_stats": state.batch_stats} if state.batch_stats else {})}

    def features(x: jax.Array) -> jax.Array:
        _, st = orig_module.apply(orig, x, train=False, mutable=["intermediates"])
        return st["intermediates"]["features"][0]

    attack = jax.jit(lambda x, key: defect.pgd_attack(features, x, key, eps=float(opts["pgd_eps"]),
                                                      steps=int(opts["pgd_steps"])))
    predict = jax.jit(lambda x: jnp.argmax(module.apply(ft_vars, x, train=False), -1))
    clean, adv, labels = [], [], []
    test_loader = Loader(test, batch, shuffle=False, pad_last=True)
    for i, b in enumerate(test_loader.epoch(0)):
        x = normalize_images(b.images, norm)
        xa = attack(x, jax.random.key(i))
        clean.append(np.asarray(predict(x))[b.mask])
        adv.append(np.asarray(predict(xa))[b.mask])
        labels.append(b.labels[b.mask])
    result = defect.defect_inheritance_rate(np.concatenate(clean), np.concatenate(adv), np.concatenate(labels))
    result.update({"retention": core.retention_rate(scores), "enforce_masks": bool(opts.get("enforce_masks"))})
    run_dir = create_run_dir(opts.get("out"), "seam-finetune", spec.name)
    write_json(run_dir / "defect.json", result)
    print(f"Clean Top-1: {result['clean_top1']:.2f} | Attack Success Rate: {result['dir']:.2f}")
    return result
