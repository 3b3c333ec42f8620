"""The Sparsity Probe end to end: layer outputs → SVD → min–max → forest → wavelets → alpha.

- :func:`probe_matrix` scores one (N, D) matrix (no model involved; the §8B tests use it);
- :func:`run_probe` is the command's runner (options dict in, result dict out, run folder with
  ``result.json`` and PNG plots when ``opts["write"]``);
- :func:`probe` is the plain-Python runner (e.g. the demo: ``probe("digits_cnn", "digits",
  weights=...)``) returning the result with ``alpha_by_layer``.

Per-layer failures (e.g. no τ qualifies) keep the layer with ``alpha: null`` and the reason;
the run continues (the original exited or silently dropped the layer, P11/P15).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.methods.probe.alpha import VARIANTS, NoTauQualifiesError, alpha_from_norms
from jaxnets.methods.probe.forest import fit_forest, minmax_scale
from jaxnets.methods.probe.reduce import SVD_METHODS, check_feature_dimension, reduce_features
from jaxnets.methods.probe.wavelets import forest_norms

SCHEMA = "jaxnets.probe/1"
# The example notebook's settings (default, for parity with the paper's figures) and the
# original CLI's own defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "notebook": {"trees": 5, "depth": 20, "seed": 1079, "feature_dimension": 1000, "epsilon_1": 0.1},
    "original-cli": {"trees": 1, "depth": 15, "seed": 2, "feature_dimension": 2500, "epsilon_1": 0.1},
}
# Above this many bytes of layer outputs, each layer gets its own forward pass.
ONE_PASS_BYTES = 4 << 30


@dataclass(frozen=True)
class ProbeSettings:
    trees: int = 5
    depth: int | None = 20  # 0 / −1 / None: unlimited
    seed: int = 1079
    epsilon_1: float = 0.1
    feature_dimension: int = 1000
    variant: str = "original"
    svd: str = "sklearn"
    n_jobs: int = -1

    def check(self) -> ProbeSettings:
        if self.variant not in VARIANTS:
            raise JaxnetsError(f"unknown --variant '{self.variant}'; use one of {', '.join(VARIANTS)}")
        if self.svd not in SVD_METHODS:
            raise JaxnetsError(f"unknown --svd '{self.svd}'; use one of {', '.join(SVD_METHODS)}")
        if self.trees < 1:
            raise JaxnetsError(f"--trees must be at least 1 (got {self.trees})")
        if self.depth is not None and self.depth < -1:
            raise JaxnetsError(f"--depth must be positive, or 0 / -1 for unlimited (got {self.depth})")
        if not self.epsilon_1 > 0:
            raise JaxnetsError(f"--epsilon-1 must be positive (got {self.epsilon_1})")
        if self.feature_dimension < 1:
            raise JaxnetsError(f"--feature-dimension must be at least 1 (got {self.feature_dimension})")
        return self


def settings_from(opts: Mapping[str, Any]) -> ProbeSettings:
    """Preset values under the options given explicitly (None = take the preset's)."""
    preset = opts.get("preset") or "notebook"
    if preset not in PRESETS:
        raise JaxnetsError(f"unknown --preset '{preset}'; use one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    for key in ("trees", "depth", "seed", "feature_dimension", "epsilon_1", "variant", "svd", "n_jobs"):
        if opts.get(key) is not None:
            values[key] = opts[key]
    return ProbeSettings(**values).check()


def check_labels(y: np.ndarray, num_classes: int = 0) -> int:
    """Number of classes C = max(y) + 1 (at least the data set's); bad-input errors for unusable
    label sets."""
    y = np.asarray(y)
    if y.size == 0:
        raise JaxnetsError("no samples to probe")
    n_classes = max(int(y.max()) + 1, int(num_classes or 0))
    if len(np.unique(y)) < 2:
        raise JaxnetsError("the probe needs samples of at least 2 classes")
    if len(y) < n_classes:
        raise JaxnetsError(f"fewer samples ({len(y)}) than classes ({n_classes}); use more data "
                           "(--limit) or fewer classes (--classes)")
    return n_classes


@dataclass
class LayerResult:
    name: str
    index: int
    dim: int
    reduced_dim: int = 0
    alphas: list[float] | None = None
    alpha_mean: float | None = None
    critical_taus: list[float] | None = None
    n_wavelets: int | None = None
    n_nodes: list[int] | None = None
    constant_columns: int = 0
    dropped_small_norms: int = 0
    clustering: dict[str, float] | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def probe_matrix(X: np.ndarray, y: np.ndarray, settings: ProbeSettings, *, name: str = "x", index: int = 0,
                 clustering: bool = False, cluster_seed: int = 0,
                 keep_reduced: list | None = None) -> LayerResult:
    """Alpha of one layer's outputs X (N, D) for labels y. Failures land in ``error``."""
    from jaxnets.ui import warn

    X = np.asarray(X)
    y = np.asarray(y, dtype=np.int64).ravel()
    res = LayerResult(name=name, index=index, dim=int(X.shape[1]))
    t = time.perf_counter()
    try:
        Xr = reduce_features(X, settings.feature_dimension, seed=settings.seed, method=settings.svd)
        res.reduced_dim = int(Xr.shape[1])
        res.timings["svd"] = time.perf_counter() - t
        if keep_reduced is not None:
            keep_reduced.append(Xr)
        if clustering:
            from jaxnets.methods.probe.clustering import kmeans_metrics

            t = time.perf_counter()
            res.clustering = kmeans_metrics(Xr, y, seed=cluster_seed)
            res.timings["clustering"] = time.perf_counter() - t
        t = time.perf_counter()
        Xs, res.constant_columns = minmax_scale(Xr)
        if res.constant_columns:
            warn(f"layer {name}: {res.constant_columns} constant column(s) set to 0 after min-max "
                 "scaling")
        forest = fit_forest(Xs, y, trees=settings.trees, depth=settings.depth, seed=settings.seed,
                            n_jobs=settings.n_jobs)
        res.timings["forest"] = time.perf_counter() - t
        t = time.perf_counter()
        norms, res.n_nodes = forest_norms(forest, Xs, settings.variant)
        res.timings["wavelets"] = time.perf_counter() - t
        t = time.perf_counter()
        a = alpha_from_norms(norms, settings.trees, settings.epsilon_1, settings.variant)
        res.timings["alpha"] = time.perf_counter() - t
        res.alphas, res.alpha_mean, res.critical_taus = a.alphas, a.mean, a.critical_taus
        res.n_wavelets, res.dropped_small_norms = a.n_wavelets, a.dropped_small
    except NoTauQualifiesError as exc:
        res.error = str(exc)
        warn(f"layer {name}: alpha is null: {exc}")
    except JaxnetsError:
        raise
    except Exception as exc:  # keep the layer, say why, go on (P15)
        res.error = f"{type(exc).__name__}: {exc}"
        warn(f"layer {name} failed: {res.error}")
    return res


# --------------------------------------------------------------------------- model runner


def _model_and_variables(opts: Mapping[str, Any], source: Any, variables: Any) -> tuple[Any, Any, Any]:
    from jaxnets.data.pipeline import adapt_to_data
    from jaxnets.models.api import init_variables, load_weights, resolve
    from jaxnets.ui import warn

    spec = resolve(opts["model"])
    num_classes = opts.get("num_classes") or spec.num_classes
    spec = adapt_to_data(spec, source, num_classes)
    module = spec.create(num_classes)
    if variables is None:
        if opts.get("weights") is None:
            warn(f"no --weights given: probing a randomly initialised {spec.name} (seed 0)")
            variables = init_variables(spec, module, 0)
        else:
            variables = load_weights(spec, module, opts["weights"])
    return spec, module, variables


def layer_indices(names: Sequence[str]) -> list[int]:
    """The original's layer numbering: −1 for the input, then 0, 1, … in order."""
    start = -1 if names and names[0] == "input" else 0
    return list(range(start, start + len(names)))


def run_probe(opts: Mapping[str, Any], variables: Any = None) -> dict:
    """The probe command. ``opts`` keys: model, weights, data, split, limit, classes, normalize,
    layers, batch_size, preset, trees, depth, seed, epsilon_1, feature_dimension, variant, svd,
    use_clustering, only_umap, calc_test, umap_points, umap_faithful, out, write."""
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.data.spec import open_source
    from jaxnets.data.transforms import normalization_for
    from jaxnets.methods.probe.features import extract_layers, layer_dims, resolve_layers
    from jaxnets.ui import info, warn

    opts = dict(opts)
    settings = settings_from(opts)
    write = opts.get("write", True)
    classes = opts.get("classes")
    if isinstance(classes, str):
        from jaxnets.data.classes import parse_classes

        classes = parse_classes(classes)
    source = open_source(opts.get("data", "digits"), opts.get("split", "train"), limit=opts.get("limit"),
                         classes=classes)
    y_all = np.asarray(source.labels, dtype=np.int64)
    check_labels(y_all, getattr(source, "num_classes", 0))
    spec, module, variables = _model_and_variables(opts, source, variables)
    mean, std = normalization_for(spec, opts.get("normalize"))
    names = resolve_layers(spec, module, opts.get("layers"))
    dims = layer_dims(spec, module, names, mean, std)
    n = len(source)
    only_umap = bool(opts.get("only_umap"))
    if not only_umap:
        for name in names:  # fail before any work, not at layer 5 (bad input)
            check_feature_dimension(settings.feature_dimension, n, dims[name], name)
    run_dir = None
    if write:
        from jaxnets.runtime import create_run_dir
        from jaxnets.train.logging import write_config

        run_dir = create_run_dir(opts.get("out"), "probe", spec.name)
        write_config(run_dir, {**opts, **dataclasses.asdict(settings), "layers": names}, "probe")
    batch_size = int(opts.get("batch_size") or 256)
    loader = eval_loader(spec, source, batch_size)
    indices = layer_indices(names)
    use_umap = only_umap or bool(opts.get("use_clustering"))
    rows = None
    if use_umap:
        from jaxnets.methods.probe.clustering import umap_sample

        rows = umap_sample(n, int(opts.get("umap_points") or 2500), seed=settings.seed,
                           faithful=bool(opts.get("umap_faithful")))
    total_bytes = 4 * n * sum(dims.values())
    groups = [list(names)] if total_bytes <= ONE_PASS_BYTES else [[name] for name in names]
    layers: list[LayerResult] = []
    panels: list[tuple[str, np.ndarray, np.ndarray]] = []
    feature_time = 0.0
    for group in groups:
        t = time.perf_counter()
        feats, y, _ = extract_layers(module, variables, loader, group, mean, std)
        feature_time += time.perf_counter() - t
        for name in group:
            index = indices[names.index(name)]
            info(f"layer {index} ({name}): {feats[name].shape[1]} features")
            reduced: list[np.ndarray] = []
            if only_umap:
                res = LayerResult(name=name, index=index, dim=dims[name])
                Xr = reduce_features(feats[name], settings.feature_dimension, seed=settings.seed,
                                     method=settings.svd) if dims[name] > settings.feature_dimension \
                    and settings.feature_dimension < n else feats[name]
                reduced.append(Xr)
            else:
                res = probe_matrix(feats[name], y, settings, name=name, index=index,
                                   clustering=bool(opts.get("use_clustering")), keep_reduced=reduced)
                if res.alpha_mean is not None:
                    info(f"  alpha {res.alpha_mean:.4f}  ({res.n_wavelets} wavelets)")
            if use_umap and reduced:
                from jaxnets.methods.probe.clustering import umap_embed

                t = time.perf_counter()
                emb = umap_embed(reduced[0][rows])
                res.timings["umap"] = time.perf_counter() - t
                if emb is not None:
                    panels.append((f"{index}: {name}", emb, y[rows]))
            layers.append(res)
            del feats[name]
    for res in layers:
        res.timings["features_pass_share"] = feature_time / len(layers)
    test_stats = None
    if opts.get("calc_test"):
        test_stats = {"top_1_accuracy": _test_accuracy(opts, spec, module, variables, mean, std, batch_size)}
        info(f"test top-1 {test_stats['top_1_accuracy']:.4f}")
    ok = [r for r in layers if r.alphas is not None]
    result = {
        "alphas": [r.alphas for r in ok],
        "sizes": [r.index for r in ok],
        "test_stats": test_stats,
        "clustering_stats": {str(r.index): r.clustering for r in layers if r.clustering is not None},
        "schema": SCHEMA,
        "model": spec.name,
        "alpha_mean": [r.alpha_mean for r in ok],
        "alpha_by_layer": {r.name: r.alpha_mean for r in layers},
        "epsilons": _epsilons(settings.epsilon_1),
        "variant": settings.variant,
        "layers": [r.to_json() for r in layers],
        "config": {**dataclasses.asdict(settings), "preset": opts.get("preset") or "notebook",
                   "model": spec.name, "weights": str(opts.get("weights") or ""),
                   "data": opts.get("data", "digits"), "split": opts.get("split", "train"),
                   "limit": opts.get("limit"), "classes": classes, "n_samples": n,
                   "normalization": {"mean": list(mean), "std": list(std)}, "batch_size": batch_size,
                   "layers": names, "only_umap": only_umap,
                   "use_clustering": bool(opts.get("use_clustering"))},
        "features_seconds": feature_time,
    }
    failed = [r.name for r in layers if r.alphas is None and not only_umap]
    if failed:
        warn(f"no alpha for layer(s): {', '.join(failed)} (see 'error' in result.json)")
    if write and run_dir is not None:
        from jaxnets.methods.probe import plots
        from jaxnets.runtime import versions, write_json

        result["versions"] = versions()
        if panels:
            plots.plot_umap_grid(panels, run_dir / "umap.png")
        if not only_umap:  # as the original: --only-umap writes pictures, no JSON
            write_json(run_dir / "result.json", result)
            if ok:
                plots.plot_alphas(result, run_dir / "result.png")
            plots.plot_clustering(result, run_dir / "clustering.png")
        result["run_dir"] = str(run_dir)
        info(f"wrote {run_dir}")
    return result


def _epsilons(epsilon_1: float) -> list[float]:
    from jaxnets.methods.probe.alpha import epsilon_grid

    return [float(e) for e in epsilon_grid(epsilon_1)]


def _test_accuracy(opts: Mapping[str, Any], spec: Any, module: Any, variables: Any, mean: Any, std: Any,
                   batch_size: int) -> float:
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.data.spec import open_source
    from jaxnets.train.evaluate import evaluate

    test = open_source(opts.get("data", "digits"), "test", classes=None)
    num_classes = opts.get("num_classes") or spec.num_classes
    result = evaluate(module, variables, eval_loader(spec, test, batch_size), mean, std, num_classes,
                      description="test")
    return float(result.top1)


def probe(model: str = "digits_cnn", data: str = "digits", *, weights: str | Path | None = None,
          variables: Any = None, layers: Sequence[str] | None = None, split: str = "train",
          limit: int | None = None, out: str | Path | None = None, svd: str = "exact",
          **settings: Any) -> dict:
    """Plain runner: alpha per layer of ``model`` on ``data`` (all default layers).

    Unlike the CLI (``sklearn`` for parity), the SVD defaults to ``exact``: for the small data
    sets this runner is meant for (the digits demo) the Gram eigendecomposition is several times
    faster than sklearn's randomized SVD to 1000 components.

    ``settings`` are any of :class:`ProbeSettings`' fields or ``preset``, ``batch_size``,
    ``use_clustering``, ``calc_test``. Files are written only when ``out`` is given. The result
    holds ``alpha_by_layer`` ({layer name: mean alpha or None}).
    """
    opts = {"model": model, "data": data, "weights": weights, "layers": list(layers) if layers else None,
            "split": split, "limit": limit, "out": out, "write": out is not None, "svd": svd, **settings}
    return run_probe(opts, variables=variables)
