"""Convert a checkpoint strictly (every tensor used, every leaf filled) and report parity."""

from __future__ import annotations

SCHEMA = "jaxnets.convert/1"
FORMATS = ("jaxnets", "torch", "npz", "safetensors")


def _preprocessing(spec, opts: dict, num_classes: int):
    """What the written checkpoint records: --normalize given now, else the source's own record,
    else the registry's default for the model (said so)."""
    from dataclasses import replace

    from jaxnets.data.transforms import normalization_for
    from jaxnets.models.weights import Preprocessing, weights_preprocessing

    if opts.get("normalize"):
        mean, std = normalization_for(spec, opts["normalize"])
        return Preprocessing(mean, std, input_size=spec.input_size, num_classes=num_classes,
                             source=f"--normalize {opts['normalize']}")
    found = weights_preprocessing(opts["checkpoint"])
    if found is not None:
        return replace(found, num_classes=num_classes)
    mean, std = normalization_for(spec, None)
    return Preprocessing(mean, std, input_size=spec.input_size, num_classes=num_classes,
                         source=f"{spec.name}'s registry default ({spec.normalization})")


def run_convert(opts: dict) -> dict:
    import json

    import jax
    import numpy as np

    from jaxnets.converters.convert import compare_variables, flatten_tree, variables_to_state_dict
    from jaxnets.converters.namings import from_native, naming_names
    from jaxnets.errors import JaxnetsError
    from jaxnets.io import save_variables
    from jaxnets.models.api import count_params, load_weights_from, resolve
    from jaxnets.rundir import RunDir

    if opts["to"] not in FORMATS:
        raise JaxnetsError(f"--to must be one of {', '.join(FORMATS)}, got {opts['to']!r}")
    spec = resolve(opts["model"])
    keys = opts.get("keys") or spec.keymap.native
    names = naming_names(spec.keymap.namings, spec.keymap.native)
    if keys not in names:
        raise JaxnetsError(f"--keys must be {' or '.join(names)} for {spec.name}, got {keys!r}")
    if keys != spec.keymap.native and opts["to"] not in ("torch", "safetensors"):
        raise JaxnetsError(f"--keys {keys} applies to --to torch or safetensors")
    module = spec.create(opts["num_classes"] or spec.num_classes)
    variables, source = load_weights_from(spec, module, opts["checkpoint"])
    run_dir = RunDir.create(opts["out"], "convert", spec.name)
    target = {"jaxnets": run_dir / "checkpoint", "torch": run_dir / f"{spec.name}.pth",
              "npz": run_dir / f"{spec.name}.npz",
              "safetensors": run_dir / f"{spec.name}.safetensors"}[opts["to"]]

    state = from_native(variables_to_state_dict(variables, spec.keymap), spec.keymap.namings, spec.keymap.native,
                        keys)
    reloaded = _round_trip(spec, module, state)
    flat_a = flatten_tree(variables)
    parity = compare_variables(variables, reloaded)
    round_trip = parity["max_abs_diff"]
    probe = _probe_input(spec)
    logits = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, probe))

    recorded = _preprocessing(spec, opts, int(opts["num_classes"] or spec.num_classes))
    if opts["to"] == "jaxnets":
        save_variables(target, variables, {"model": spec.name, "source": str(opts["checkpoint"]),
                                           "num_classes": recorded.num_classes,
                                           "preprocessing": recorded.to_json()})
    elif opts["to"] == "torch":
        from jaxnets.converters.torch_writer import save_torch_state_dict

        save_torch_state_dict(target, state)
    elif opts["to"] == "safetensors":
        from jaxnets.converters.safetensors_io import save_safetensors_state

        save_safetensors_state(target, state, {"jaxnets.model": spec.name,
                                               "jaxnets.preprocessing": json.dumps(recorded.to_json())})
    else:
        from jaxnets.converters.npz import save_npz_state

        save_npz_state(target, state)
    report = {
        "schema": SCHEMA, "model": spec.name, "source": str(opts["checkpoint"]),
        "output": str(target), "format": opts["to"], "keys": keys,
        "source_format": source.format, "source_keys": source.naming,
        "tensors": len(flat_a), "params": count_params(variables),
        "batch_stats": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(
            variables.get("batch_stats", {})))),
        "round_trip_max_abs_diff": round_trip,
        "round_trip_nan": parity["nan"], "round_trip_inf": parity["inf"],
        "round_trip_nonfinite_mismatches": parity["nonfinite_mismatches"],
        "probe_logits_first_row": logits[0, :10].tolist(),
        "preprocessing": recorded.to_json(),
    }
    run_dir.write_json("conversion.json", report)
    print(f"read {source.format} ({source.naming} names) → writing {opts['to']}"
          + (f" ({keys} names)" if opts["to"] in ("torch", "safetensors", "npz") else ""))
    print(f"preprocessing: {recorded.describe()}")
    print(f"{spec.name}: {report['tensors']} tensors, {report['params']:,} parameters → {target}")
    nonfinite = f" ({parity['nan']} NaN, {parity['inf']} inf in the weights)" if parity["nan"] or parity["inf"] else ""
    print(f"round trip max |Δ| = {round_trip:.3g}{nonfinite}; probe logits[0,:5] = "
          f"{np.round(logits[0, :5], 5).tolist()}")
    return report


def _round_trip(spec, module, state):
    """The written state read back the way a checkpoint is (naming detected)."""
    from jaxnets.converters.convert import state_dict_to_variables
    from jaxnets.converters.namings import to_native
    from jaxnets.models.api import abstract_variables

    native, _ = to_native(state, spec.keymap.namings, spec.keymap.native)
    return state_dict_to_variables(native, abstract_variables(spec, module), spec.keymap,
                                   model_name=spec.name)


def _probe_input(spec):
    """The deterministic probe of specs/decomposing-the-deep.md §8 A2: sin over NCHW positions."""
    import numpy as np

    n, s, c = 2, spec.input_size, spec.in_channels
    idx = np.arange(n * c * s * s, dtype=np.float64).reshape(n, c, s, s)
    return np.sin(0.1 * idx).astype(np.float32).transpose(0, 2, 3, 1)
