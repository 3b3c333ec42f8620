"""The Sparsity Probe end to end: layer outputs → SVD → min–max → forest → wavelets → alpha.

- :func:`probe_matrix` scores one (N, D) matrix (no model involved; the §8B tests use it);
- :func:`run` probes a :class:`jaxnets.Model` on :class:`jaxnets.Data` with a
  :class:`ProbeConfig` → :class:`ProbeResult` (files only when ``run_dir`` is given);
  ``jaxnets probe run`` is a thin adapter over it;
- :func:`probe` is the shortcut by names (the demo: ``probe("digits_cnn", "digits", weights=...)``).

Per-layer failures (e.g. no τ qualifies) keep the layer with ``alpha: null`` and the reason;
the run continues (the original exited or silently dropped the layer, P11/P15).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxnets.api import Data, Model
from jaxnets.errors import JaxnetsError
from jaxnets.methods.probe.alpha import NoTauQualifiesError, alpha_from_norms
from jaxnets.methods.probe.config import ProbeConfig
from jaxnets.methods.probe.forest import fit_forest, minmax_scale
from jaxnets.methods.probe.reduce import check_feature_dimension, reduce_features
from jaxnets.methods.probe.wavelets import forest_norms
from jaxnets.rundir import RunDir

SCHEMA = "jaxnets.probe/1"
# Above this many bytes of layer outputs, each layer gets its own forward pass.
ONE_PASS_BYTES = 4 << 30


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


def probe_matrix(X: np.ndarray, y: np.ndarray, settings: ProbeConfig, *, name: str = "x", index: int = 0,
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


def layer_indices(names: Sequence[str]) -> list[int]:
    """The original's layer numbering: −1 for the input, then 0, 1, … in order."""
    start = -1 if names and names[0] == "input" else 0
    return list(range(start, start + len(names)))


@dataclass
class ProbeResult:
    """Alpha per layer of one model on one data split (``to_json()`` is ``result.json``)."""

    model: str
    layers: list[LayerResult]
    config: ProbeConfig
    n_samples: int
    normalization: dict[str, list[float]]
    provenance: dict[str, Any] = field(default_factory=dict)  # weights, data, split, limit, classes
    test_top1: float | None = None
    features_seconds: float = 0.0

    @property
    def alpha_by_layer(self) -> dict[str, float | None]:
        return {r.name: r.alpha_mean for r in self.layers}

    def to_json(self) -> dict[str, Any]:
        ok = [r for r in self.layers if r.alphas is not None]
        cfg = self.config
        return {
            "alphas": [r.alphas for r in ok],
            "sizes": [r.index for r in ok],
            "test_stats": None if self.test_top1 is None else {"top_1_accuracy": self.test_top1},
            "clustering_stats": {str(r.index): r.clustering for r in self.layers if r.clustering is not None},
            "schema": SCHEMA,
            "model": self.model,
            "alpha_mean": [r.alpha_mean for r in ok],
            "alpha_by_layer": self.alpha_by_layer,
            "epsilons": _epsilons(cfg.epsilon_1),
            "variant": cfg.variant,
            "layers": [r.to_json() for r in self.layers],
            "config": {**{k: getattr(cfg, k) for k in PROBE_SETTINGS}, **self.provenance, "model": self.model,
                       "n_samples": self.n_samples, "normalization": self.normalization,
                       "batch_size": cfg.batch_size, "layers": [r.name for r in self.layers],
                       "only_umap": cfg.only_umap, "use_clustering": cfg.use_clustering},
            "features_seconds": self.features_seconds,
        }

    def plot(self, path: str | Path) -> Path:
        """The alpha-per-layer figure (result.png)."""
        from jaxnets.methods.probe import plots

        plots.plot_alphas(self.to_json(), Path(path))
        return Path(path)


# The forest/wavelet settings recorded under result.json's "config" (with the preset's name).
PROBE_SETTINGS = ("trees", "depth", "seed", "epsilon_1", "feature_dimension", "variant", "svd", "n_jobs")


def run(model: Model, data: Data, config: ProbeConfig | None = None, run_dir: str | Path | RunDir | None = None, *,
        test_data: Data | None = None, preset: str = "notebook") -> ProbeResult:
    """Alpha of each layer of ``model`` on ``data`` (the method uses the training split).

    Nothing is written unless ``run_dir`` is given; then it gets config.json, result.json,
    result.png, clustering.png and the UMAP pictures: ``<index>.png`` per layer (the original's
    file names, e.g. ``-1.png``, ``6.png``; written as each layer is done) and the grid umap.png.
    With ``only_umap`` only the pictures (and config.json), as the original.
    ``test_data`` adds the model's top-1 there (the original's ``--calc-test``).
    """
    from jaxnets.api import evaluate
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.methods.probe.features import extract_layers, layer_dims, resolve_layers
    from jaxnets.ui import info, warn

    config = config or ProbeConfig()
    y_all = np.asarray(data.labels, dtype=np.int64)
    check_labels(y_all, data.num_classes)
    spec, module, variables, mean, std = model.spec, model.module, model.variables, model.mean, model.std
    names = resolve_layers(spec, module, list(config.layers) if config.layers else None)
    dims = layer_dims(spec, module, names, mean, std)
    n = len(data)
    if not config.only_umap:
        for name in names:  # fail before any work, not at layer 5 (bad input)
            check_feature_dimension(config.feature_dimension, n, dims[name], name)
    provenance = {"preset": preset, "weights": str(model.weights or ""), "data": data.text, "split": data.split,
                  "limit": data.limit, "classes": data.classes}
    run_dir = RunDir.of(run_dir, "probe", spec.name)
    if run_dir is not None:
        run_dir.write_config({"model": spec.name, **provenance, **dataclasses.asdict(config), "layers": names})
    loader = eval_loader(spec, data.source, config.batch_size)
    indices = layer_indices(names)
    use_umap = config.only_umap or config.use_clustering
    rows = None
    if use_umap:
        from jaxnets.methods.probe.clustering import umap_sample

        rows = umap_sample(n, config.umap_points, seed=config.seed, faithful=config.umap_faithful)
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
            if config.only_umap:
                res = LayerResult(name=name, index=index, dim=dims[name])
                Xr = reduce_features(feats[name], config.feature_dimension, seed=config.seed,
                                     method=config.svd) if dims[name] > config.feature_dimension \
                    and config.feature_dimension < n else feats[name]
                reduced.append(Xr)
            else:
                res = probe_matrix(feats[name], y, config, name=name, index=index,
                                   clustering=config.use_clustering, keep_reduced=reduced)
                if res.alpha_mean is not None:
                    info(f"  alpha {res.alpha_mean:.4f}  ({res.n_wavelets} wavelets)")
            if use_umap and reduced:
                from jaxnets.methods.probe.clustering import umap_embed

                t = time.perf_counter()
                emb = umap_embed(reduced[0][rows])
                res.timings["umap"] = time.perf_counter() - t
                if emb is not None:
                    panels.append((f"{index}: {name}", emb, y[rows]))
                    if run_dir is not None:  # one picture per layer, named as the original's
                        from jaxnets.methods.probe import plots

                        plots.plot_umap_grid(panels[-1:], run_dir / f"{index}.png")
            layers.append(res)
            del feats[name]
    for res in layers:
        res.timings["features_pass_share"] = feature_time / len(layers)
    test_top1 = None
    if test_data is not None:
        test_top1 = float(evaluate(model, test_data, batch_size=config.batch_size)["top1"])
        info(f"test top-1 {test_top1:.4f}")
    result = ProbeResult(model=spec.name, layers=layers, config=config, n_samples=n,
                         normalization={"mean": list(mean), "std": list(std)}, provenance=provenance,
                         test_top1=test_top1, features_seconds=feature_time)
    failed = [r.name for r in layers if r.alphas is None and not config.only_umap]
    if failed:
        warn(f"no alpha for layer(s): {', '.join(failed)} (see 'error' in result.json)")
    if run_dir is not None:
        from jaxnets.methods.probe import plots
        from jaxnets.runtime import versions

        if panels:
            plots.plot_umap_grid(panels, run_dir / "umap.png")
        if not config.only_umap:  # as the original: --only-umap writes pictures, no JSON
            doc = {**result.to_json(), "versions": versions()}
            run_dir.write_json("result.json", doc)
            if any(r.alphas is not None for r in layers):
                plots.plot_alphas(doc, run_dir / "result.png")
            plots.plot_clustering(doc, run_dir / "clustering.png")
        info(f"wrote {run_dir}")
    return result


def _epsilons(epsilon_1: float) -> list[float]:
    from jaxnets.methods.probe.alpha import epsilon_grid

    return [float(e) for e in epsilon_grid(epsilon_1)]


def probe(model: str = "digits_cnn", data: str = "digits", *, weights: str | Path | None = None,
          layers: Sequence[str] | None = None, split: str = "train", limit: int | None = None,
          out: str | Path | None = None, svd: str = "exact", **settings: Any) -> dict:
    """Shortcut by names: alpha per layer of ``model`` on ``data`` → the result.json dict.

    Unlike the CLI (``sklearn`` for parity), the SVD defaults to ``exact``: for the small data
    sets this shortcut is meant for (the digits demo) the Gram eigendecomposition is several times
    faster than sklearn's randomized SVD to 1000 components. ``settings`` are
    :class:`ProbeConfig` fields. Files are written only when ``out`` is given.
    """
    from jaxnets.api import load, open_data

    dataset = open_data(data, split, limit=limit)
    net = load(model, weights, data=dataset)
    config = ProbeConfig(layers=tuple(layers) if layers else None, svd=svd, **settings)
    result = run(net, dataset, config, run_dir=out)
    doc = result.to_json()
    if out is not None:
        doc["run_dir"] = str(Path(out).absolute())
    return doc
