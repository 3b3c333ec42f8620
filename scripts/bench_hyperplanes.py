"""Benchmark: one full layer re-initialisation grid — resnet20, 19 conv layers × (3 snapshots +
rand), 846 exact CIFAR-10 test images — jaxnets (one jitted evaluation, swapped params as traced
arguments) vs a PyTorch reference loop (swap in place, evaluate, restore) on the same machine.

The three "snapshots" are fresh random inits with seeds 1–3 (the published checkpoint ships no
training snapshots; the cost of a grid does not depend on the donor's values). Both sides use
the same trained weights and test images; the baseline accuracies must agree.

    python scripts/bench_hyperplanes.py [--threads 2] [--record] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import bench_common as bc  # also puts the package and tests/reference on sys.path

ROOT, SHARED = bc.ROOT, bc.SHARED
WEIGHTS = SHARED / "weights" / "resnet20-12fca82f.th"
DATA = SHARED / "cifar10-exact-subset" / "cifar-10-batches-bin"


def jax_grid(args: argparse.Namespace) -> dict:
    import jax

    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalization_for
    from jaxnets.methods.hyperplanes.registry import conv_layers, registry_for
    from jaxnets.methods.hyperplanes.reinit import Evaluator, load_eval_data, swap
    from jaxnets.models.api import init_variables, load_weights, resolve

    spec = resolve("resnet20")
    module = spec.create(10)
    variables = jax.device_put(load_weights(spec, module, args.weights))
    source = open_source(f"cifar10:{args.data}", "test", limit=args.limit)
    mean, std = normalization_for(spec)
    data = load_eval_data(spec, source, mean, std, args.batch)
    layers = conv_layers(registry_for(spec, module, variables))
    donors = [jax.device_put(init_variables(spec, module, s)) for s in (1, 2, 3, 4)]  # 4 = rand
    ev = Evaluator(module, data, 10)
    t = time.perf_counter()
    base = ev.top1_top5(variables)[0]  # includes the one compilation
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    rows = [[ev.top1_top5(swap(variables, layer, d))[0] for layer in layers] for d in donors]
    grid_s = time.perf_counter() - t
    return {"baseline": base, "grid_s": grid_s, "first_eval_s": compile_s, "n": data.n,
            "layers": len(layers), "evaluations": len(rows) * len(layers),
            "compilations": ev.compiled_versions(), "rows": rows}


def torch_grid(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file
    from reference.torch_cifar_resnet import resnet20

    from jaxnets.data.spec import open_source

    bc.set_torch_threads(args.threads_used)
    model = resnet20()
    state = {k.replace("module.", ""): torch.as_tensor(np.asarray(v))
             for k, v in extract_state_dict(load_torch_file(args.weights)).items()}
    model.load_state_dict(state, strict=False)
    model.eval()
    source = open_source(f"cifar10:{args.data}", "test", limit=args.limit)
    x = source.get_batch(np.arange(len(source))).astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    images = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(np.asarray(source.labels))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]

    def top1() -> float:
        correct = 0
        with torch.no_grad():
            for i in range(0, len(images), args.batch):
                correct += int((model(images[i:i + args.batch]).argmax(1) == labels[i:i + args.batch]).sum())
        return 100.0 * correct / len(images)

    donors = []
    for seed in (1, 2, 3, 4):
        torch.manual_seed(seed)
        donors.append([m.weight.detach().clone() for m in
                       resnet20().modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)])
    t = time.perf_counter()
    base = top1()
    first = time.perf_counter() - t
    t = time.perf_counter()
    rows = []
    for donor in donors:  # the original's loop: copy in, evaluate, restore
        row = []
        for conv, w in zip(convs, donor, strict=True):
            saved = conv.weight.data.clone()
            conv.weight.data.copy_(w)
            row.append(top1())
            conv.weight.data.copy_(saved)
        rows.append(row)
    grid_s = time.perf_counter() - t
    return {"baseline": base, "grid_s": grid_s, "first_eval_s": first, "layers": len(convs),
            "evaluations": len(rows) * len(convs)}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=WEIGHTS)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--limit", type=int, default=None, help="test images (default all 846)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--record", action="store_true", help="append the table to --doc")
    p.add_argument("--doc", type=Path, default=bc.DEFAULT_DOC)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.weights.is_file() or not args.data.is_dir():
        print(f"needs {args.weights} and {args.data} (../shared/data)", file=sys.stderr)
        return 2
    args.threads_used = bc.pin_threads(args.threads)
    load_before = bc.load_average()
    with bc.OtherLoad() as other_j:
        j = jax_grid(args)
    t = None
    other_t = bc.OtherLoad()
    if not args.no_torch:
        with other_t:
            t = torch_grid(args)
    load_after = bc.load_average()
    workload = f"resnet20, {j['layers']} layers × 4 rows, {j['n']} img"
    notes = [f"jaxnets: {j['evaluations']} swapped evaluations, {j['compilations']} compilation(s); "
             f"first (compiling) evaluation {j['first_eval_s']:.1f} s, not in the grid time. "
             f"Baseline top-1 jaxnets {j['baseline']:.2f} %"
             + (f", PyTorch {t['baseline']:.2f} %" if t else "") + ".",
             f"Other processes used {other_j.cores or 0:.2f} cores during the jaxnets run"
             + (f" and {other_t.cores or 0:.2f} during the PyTorch run" if t else "") + "."]
    row = bc.MethodRow("hyperplanes", "reinit grid", workload, j["grid_s"], t["grid_s"] if t else None,
                       notes="rows: 3 snapshots (random stand-ins) + rand")
    table = bc.markdown_table(bc.METHOD_HEADERS, [row.cells()], bc.METHOD_ALIGN)
    print(table)
    print("\n".join(notes))
    if args.json:
        args.json.write_text(json.dumps({"jax": {k: v for k, v in j.items() if k != "rows"},
                                         "torch": t}, indent=2))
    if args.record:
        header = bc.header_lines(args.threads_used, load_before=load_before, load_after=load_after)
        bc.append_method_table("hyperplanes: re-initialisation grid", [row], header=header,
                               notes=notes, path=args.doc)
        print(f"recorded in {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
