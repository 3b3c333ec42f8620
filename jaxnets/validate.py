"""Accuracy of a model (top-1, top-5, per class, optionally the decomposed head) → RUN/results.json."""

from __future__ import annotations

from jaxnets.data.classes import parse_classes

SCHEMA = "jaxnets.validate/1"


def run_validate(opts: dict) -> dict:
    import numpy as np

    from jaxnets.data.pipeline import adapt_to_data, eval_loader
    from jaxnets.data.spec import open_source
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.models.weights import input_normalization
    from jaxnets.rundir import RunDir
    from jaxnets.runtime import parse_devices, setup_jax
    from jaxnets.ui import info, warn

    spec = resolve(opts["model"])
    n_devices = parse_devices(opts["devices"])
    if n_devices and opts["batch_size"] % n_devices:
        from jaxnets.errors import JaxnetsError

        raise JaxnetsError(f"--batch-size {opts['batch_size']} is not divisible by --devices "
                           f"{n_devices}")
    source = open_source(opts["data"], opts["split"], limit=opts["limit"],
                         classes=parse_classes(opts["classes"]))
    num_classes = opts["num_classes"] or spec.num_classes
    spec = adapt_to_data(spec, source, num_classes)
    run_dir = RunDir.create(opts["out"], "validate", spec.name)
    setup_jax(n_devices)
    mean, std = input_normalization(spec, opts["weights"], opts["normalize"])
    module = spec.create(num_classes)
    if opts["weights"] is None:
        warn(f"no --weights given: evaluating a randomly initialised {spec.name} (seed {opts['seed']})")
        variables = init_variables(spec, module, opts["seed"])
    else:
        variables = load_weights(spec, module, opts["weights"])
    table = mask = None
    if opts.get("indices"):
        from jaxnets.methods.decompose.head import head_shape, mask_tree
        from jaxnets.methods.decompose.indices import load_indices

        d, c = head_shape(variables["params"], spec.head)
        table = load_indices(opts["indices"], num_classes=c, num_features=d)
        mask = mask_tree(variables["params"], spec.head, table)
    run_dir.write_config(opts)
    mesh = _mesh(n_devices)
    loader = eval_loader(spec, source, opts["batch_size"], eval_resize=opts.get("eval_resize", "crop"))
    from jaxnets.train.evaluate import evaluate

    result = evaluate(module, variables, loader, mean, std, num_classes,
                      keep_logits=opts["save_logits"], mesh=mesh, description="validate")
    report = {
        "schema": SCHEMA, "model": spec.name, "weights": str(opts["weights"] or ""),
        "data": opts["data"], "split": opts["split"], "normalization": {"mean": mean, "std": std},
        **result.to_json(),
    }
    if mask is not None:
        from jaxnets.methods.decompose.head import apply_head_mask

        dec = evaluate(module, variables, loader, mean, std, num_classes,
                       param_transform=apply_head_mask, transform_args=mask,
                       keep_logits=opts["save_logits"], mesh=mesh, description="decomposed")
        report["decomposed"] = {"indices": str(opts["indices"]), "k": int(table.shape[1]),
                                **dec.to_json()}
        report["full_top1"], report["decomposed_top1"] = result.top1, dec.top1
    run_dir.write_json("results.json", report)
    if mask is not None and opts["save_logits"]:
        np.savez(run_dir / "logits_decomposed.npz", logits=dec.logits, labels=dec.labels,
                 indices=dec.indices)
    if opts["save_logits"]:
        np.savez(run_dir / "logits.npz", logits=result.logits, labels=result.labels,
                 indices=result.indices)
    top5 = f", top-5 {100 * result.top5:.2f} %" if result.top5 is not None else ""
    print(f"{spec.name}: top-1 {100 * result.top1:.2f} % ({result.correct}/{result.n}){top5}")
    if mask is not None:
        print(f"{spec.name} decomposed (k={table.shape[1]}): top-1 {100 * dec.top1:.2f} % "
              f"({dec.correct}/{dec.n}) — full {100 * result.top1:.2f} %")
    info("per class: " + "  ".join(f"{i}:{100 * a:.1f}" for i, a in
                                   enumerate(result.per_class_accuracy()) if a is not None))
    info(f"wrote {run_dir / 'results.json'}")
    return report


def _mesh(n_devices: int | None):
    if not n_devices or n_devices == 1:
        return None
    from jaxnets.train.parallel import make_mesh

    return make_mesh(n_devices)
