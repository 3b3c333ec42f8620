"""Benchmark of the Sparsity Probe: per-layer time split for resnet20 on CIFAR-10 JPEG test images.

Stages per layer: features (one jitted forward pass capturing all eight layers, its time shared
equally), SVD, forest fit, wavelet norms (vectorised: ``apply`` + bottom-up sums), alpha. The
wavelet stage is also timed with a literal port of the original recursive traversal with dense
``decision_path`` matrices, on the *same* fitted forests; the norms are checked equal.

    python scripts/bench_probe.py --limit 2000 --feature-dimension 500 [--svd sklearn] [--record]

Without ``--limit`` all 10,000 test images are used (SVD and forests then take many minutes on
a 2-core CPU). ``--record`` appends the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tarfile
import time
from pathlib import Path

import bench_common as bc

ROOT, SHARED = bc.ROOT, bc.SHARED


def jpeg_folder() -> Path:
    """The extracted JPEG CIFAR-10 (same cache folder as the test fixture)."""
    final = ROOT / ".cache" / "test-data" / "cifar10-jpeg"
    if (final / ".complete").exists():
        return final
    archive = SHARED / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        raise SystemExit(f"{archive} not found")
    import tempfile

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    root = tmp if (tmp / "test").is_dir() else next(p.parent for p in tmp.glob("*/test"))
    (root / ".complete").touch()
    root.rename(final)
    return final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="test images (default: all 10,000)")
    ap.add_argument("--feature-dimension", type=int, default=1000)
    ap.add_argument("--svd", default="sklearn", choices=("sklearn", "jax", "exact"))
    ap.add_argument("--trees", type=int, default=5)
    ap.add_argument("--depth", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="CPUs to pin (0 = all available)")
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()
    threads = bc.pin_threads(args.threads or None)
    load_before = bc.load_average()

    import numpy as np

    from jaxnets.data.pipeline import eval_loader
    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalization_for
    from jaxnets.methods.probe.alpha import alpha_from_norms
    from jaxnets.methods.probe.features import CIFAR_RESNET_LAYERS, extract_layers
    from jaxnets.methods.probe.forest import fit_forest, minmax_scale
    from jaxnets.methods.probe.reduce import reduce_features
    from jaxnets.methods.probe.runner import layer_indices
    from jaxnets.methods.probe.wavelets import forest_norms, recursive_norms_reference
    from jaxnets.models.api import load_weights, resolve

    spec = resolve("resnet20")
    module = spec.create(10)
    variables = load_weights(spec, module, SHARED / "weights" / "resnet20-12fca82f.th")
    source = open_source(f"imagefolder:{jpeg_folder()}", "test", limit=args.limit)
    n = len(source)
    mean, std = normalization_for(spec)
    names = list(CIFAR_RESNET_LAYERS)
    loader = eval_loader(spec, source, args.batch_size)
    t = time.perf_counter()
    feats, y, _ = extract_layers(module, variables, loader, names, mean, std)
    t_features = time.perf_counter() - t
    rows, method_rows = [], []
    tot = {"ours": 0.0, "orig": 0.0}
    for index, name in zip(layer_indices(names), names, strict=True):
        t0 = time.perf_counter()
        X = reduce_features(feats.pop(name), args.feature_dimension, seed=1079, method=args.svd)
        t1 = time.perf_counter()
        Xs, _ = minmax_scale(X)
        forest = fit_forest(Xs, y, trees=args.trees, depth=args.depth, seed=1079)
        t2 = time.perf_counter()
        norms, n_nodes = forest_norms(forest, Xs, "original")
        t3 = time.perf_counter()
        res = alpha_from_norms(norms, args.trees, 0.1, "original")
        t4 = time.perf_counter()
        reference = recursive_norms_reference(forest, Xs)
        t5 = time.perf_counter()
        assert np.array_equal(norms.shape, reference.shape) and np.max(np.abs(norms - reference)) <= 1e-15
        ours, orig = t3 - t2, t5 - t4
        tot["ours"] += ours
        tot["orig"] += orig
        rows.append([index, name, f"{t_features / len(names):.2f}", f"{t1 - t0:.2f}", f"{t2 - t1:.2f}",
                     f"{ours:.3f}", f"{t4 - t3:.3f}", f"{orig:.3f}", bc.fmt_ratio(orig / ours),
                     sum(n_nodes), f"{res.mean:.4f}"])
        print(" | ".join(map(str, rows[-1])), flush=True)
        method_rows.append(bc.MethodRow("probe", f"wavelet norms, layer {index} ({name})",
                                        f"resnet20, {n} JPEG test images, {args.trees} trees depth {args.depth}",
                                        ours, orig, notes=f"{sum(n_nodes)} nodes"))
    headers = ["layer", "name", "features s (share)", "SVD s", "forest s", "wavelets s", "alpha s",
               "original wavelets s", "speed-up", "nodes", "alpha"]
    table = bc.markdown_table(headers, rows, ["r", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r"])
    summary = (f"Wavelet stage over all layers: jaxnets {tot['ours']:.2f} s vs the original's recursion "
               f"{tot['orig']:.2f} s ({bc.fmt_ratio(tot['orig'] / tot['ours'])}); features pass "
               f"{t_features:.1f} s for {n} images and all {len(names)} layers.")
    print(table)
    print(summary)
    if args.record:
        header = bc.header_lines(threads, load_before=load_before, load_after=bc.load_average(),
                                 extra={"Workload": f"resnet20-12fca82f.th, {n} CIFAR-10 JPEG test images, "
                                        f"--svd {args.svd} to {args.feature_dimension}, trees {args.trees}, "
                                        f"depth {args.depth}, seed 1079"})
        bc.append_table("Sparsity Probe — per-layer time split (scripts/bench_probe.py)", headers, rows,
                        align=["r", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r"], header=header,
                        notes=[summary])
        bc.append_method_table("Sparsity Probe — wavelet norms vs the original recursion", method_rows,
                               header=[f"- Same forests; norms equal to ≤ 1e-15; {n} images."])


if __name__ == "__main__":
    main()
