"""Spec §9 checks 1–6 (projection maths), 10 (random-init null model), 11 (distances), and the
§5 initialisers of the paper's architectures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxnets.methods.hyperplanes.stats import (
    binomial_p_value,
    mass,
    null_band,
    rel_distances,
    summarize,
    torch_unit_projection,
    unit_projection,
)


def test_all_ones_and_constant_kernels():  # checks 1, 2
    k = np.ones((3, 3, 3, 4), np.float32)  # HWIO, n = 27
    np.testing.assert_allclose(unit_projection(k, True), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit_projection(k, False), 27.0)
    np.testing.assert_allclose(unit_projection(0.37 * k, True), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit_projection(-0.37 * k, True), -1.0, atol=1e-6)
    onehot = np.zeros((3, 3, 3, 1), np.float32)
    onehot[1, 2, 0, 0] = 2.5
    assert unit_projection(onehot, True)[0] == pytest.approx(1 / math.sqrt(27), abs=1e-6)
    assert unit_projection(onehot, True)[0] == pytest.approx(0.19245, abs=1e-5)
    dense = np.ones((7, 3), np.float32)  # (in, out)
    np.testing.assert_allclose(unit_projection(dense, True), 1.0, atol=1e-6)


def test_zero_sum_and_zero_kernels_count_toward_mass():  # checks 3, 4
    k = np.zeros((3, 3, 2, 2), np.float32)
    k[0, 0, 0, 0], k[1, 1, 1, 0] = 1.0, -1.0  # unit 0: zero sum; unit 1: all zero
    p = unit_projection(k, True)
    assert abs(p[0]) < 1e-6
    assert p[1] == 0.0 and not np.isnan(p).any()
    assert mass(p) == 1.0
    assert unit_projection(k, False).tolist() == [0.0, 0.0]


def test_layout_equivalence_with_torch():  # check 5
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 16, 3, 3, generator=g)  # OIHW
    flat = w.reshape(64, -1)
    ref_raw = flat.sum(1).numpy()
    ref_norm = (flat.sum(1) / (flat.norm(dim=1) * math.sqrt(flat.shape[1]))).numpy()
    hwio = w.numpy().transpose(2, 3, 1, 0)
    np.testing.assert_allclose(unit_projection(hwio, False), ref_raw, atol=1e-5)
    np.testing.assert_allclose(unit_projection(hwio, True), ref_norm, atol=1e-6)
    np.testing.assert_allclose(torch_unit_projection(w.numpy(), True), ref_norm, atol=1e-6)
    lin = torch.randn(10, 50, generator=g)  # (out, in)
    ref = (lin.sum(1) / (lin.norm(dim=1) * math.sqrt(50))).numpy()
    np.testing.assert_allclose(unit_projection(lin.numpy().T, True), ref, atol=1e-6)


def test_ecdf_ties_included():  # check 6
    p = [-0.5, 0.0, 0.0, 0.3, 1.0]
    assert mass(p) == pytest.approx(0.6, abs=1e-12)
    s = summarize(np.asarray([0.25], np.float32))
    assert s["projections"] == [0.25] and s["mass"] == 0.0 and s["mean"] == 0.25  # one unit: a list


def test_null_band_and_binomial_test():
    lo, hi = null_band(64)
    assert (lo, hi) == pytest.approx((0.25, 0.75))
    assert binomial_p_value(32, 64) == pytest.approx(1.0)
    assert binomial_p_value(0, 20) == pytest.approx(2 / 2**20)


def _old_exact_p_value(negatives: int, units: int) -> float:
    """The formula before issue 15: exact integer tail over a float 2**units (overflows at 1024)."""
    k = min(negatives, units - negatives)
    return min(1.0, 2 * sum(math.comb(units, i) for i in range(k + 1)) / 2.0**units)


def test_binomial_p_value_small_units_unchanged():
    for units in (1, 2, 7, 20, 64, 255, 512, 1000, 1023):
        for negatives in sorted({0, 1, units // 3, units // 2, units - 1, units}):
            assert binomial_p_value(negatives, units) == pytest.approx(
                _old_exact_p_value(negatives, units), rel=1e-12, abs=1e-300), (negatives, units)


@pytest.mark.parametrize("units", [1024, 4096, 65_536])
def test_binomial_p_value_wide_layers_are_finite(units):
    """Every VGG/AlexNet/MLP classifier layer has ≥ 1024 units: 2.0**units used to overflow."""
    assert binomial_p_value(units // 2, units) == pytest.approx(1.0)
    p = binomial_p_value(units // 2 - int(math.sqrt(units)), units)  # 2σ below the mean
    assert 0.03 < p < 0.07  # two-sided normal tail at 2σ: 0.0455
    assert 0.0 <= binomial_p_value(0, units) < 1e-300  # 2·2^-units (may underflow to 0), no raise
    assert binomial_p_value(units, units) == binomial_p_value(0, units)


def test_layer_table_with_a_4096_unit_linear_layer():
    from jaxnets.methods.hyperplanes.registry import LayerInfo
    from jaxnets.methods.hyperplanes.stats import layer_table, projections_report

    rng = np.random.default_rng(0)
    params = {"fc": {"kernel": rng.standard_normal((1024, 4096)).astype(np.float32)}}
    layers = [LayerInfo(path="fc", kind="linear", kernel_shape=(1024, 4096), stage="3", block="0")]
    report = projections_report(params, layers, with_linear=True)
    (row,) = layer_table(report, layers)
    assert math.isfinite(row["p_value"]) and 0 <= row["p_value"] <= 1


def test_distances():  # check 11
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 3, 64, 128)).astype(np.float32)
    assert rel_distances(w0, w0) == (0.0, 0.0)
    w = w0 + 0.1 * rng.standard_normal(w0.shape).astype(np.float32)
    l2, linf = rel_distances(w, w0)
    assert l2 == pytest.approx(0.10, abs=0.01)
    assert 0 < linf < 1


def _init(name: str, seed: int = 0):
    from jaxnets.models.api import init_variables, resolve

    spec = resolve(name)
    module = spec.create(10)
    size = 64 if name == "alexnet" else 32  # adaptive pools: shapes do not depend on the size
    return spec, module, init_variables(spec, module, seed, size=size)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg19", "alexnet", "lenet", "vgg19_orig"])
def test_random_init_is_the_null_model(name):  # check 10
    from jaxnets.methods.hyperplanes.registry import registry_for
    from jaxnets.methods.hyperplanes.stats import projections_report

    spec, module, variables = _init(name, seed=3)
    layers = registry_for(spec, module, variables)
    report = projections_report(variables["params"], layers, normalize=True)
    for layer in layers:
        entry = report[layer.stage][layer.block]
        assert abs(entry["mass"] - 0.5) <= 4 * 0.5 / math.sqrt(layer.units), layer
        if layer.units >= 256:  # E[p²] = 1/n: RMS across filters within 15 % of 1/√n
            rms = math.sqrt(np.mean(np.square(entry["projections"])))
            assert rms == pytest.approx(1 / math.sqrt(layer.fan_in), rel=0.15), layer
    if name.startswith("vgg19"):
        assert len(report["net"]["projections"]) == 5504
        assert abs(report["net"]["mass"] - 0.5) <= 0.027


def test_original_initialisers():
    """Spec §5 / §8.4: kaiming-normal fan-out (VGG), N(0, 0.01²) (vgg19_orig, VGG linears),
    PyTorch default (AlexNet), Xavier-uniform gain √2 (lenet); biases as the original."""
    _, _, v = _init("vgg11")
    p = v["params"]
    k = np.asarray(p["features_3"]["kernel"])  # 3×3, 64 → 128: std √(2/(128·9))
    assert k.std() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.03)
    assert np.abs(k).max() / k.std() > 3.5  # not truncated (jax's he_normal is)
    assert not np.asarray(p["features_3"]["bias"]).any()
    fc = np.asarray(p["classifier_3"]["kernel"])
    assert fc.std() == pytest.approx(0.01, rel=0.02) and not np.asarray(p["classifier_3"]["bias"]).any()
    _, _, v = _init("vgg19_orig")
    assert np.asarray(v["params"]["features_0"]["kernel"]).std() == pytest.approx(0.01, rel=0.1)
    assert np.asarray(v["params"]["features_34"]["kernel"]).std() == pytest.approx(0.01, rel=0.02)
    _, _, v = _init("alexnet")
    c = v["params"]["features_3"]  # 5×5, 64 in: bound 1/√1600
    bound = 1 / math.sqrt(5 * 5 * 64)
    for leaf in ("kernel", "bias"):
        arr = np.asarray(c[leaf])
        assert np.abs(arr).max() <= bound and np.abs(arr).max() > 0.95 * bound
    _, _, v = _init("lenet")
    c = np.asarray(v["params"]["features_7"]["kernel"])  # 3×3, 16 → 16
    bound = math.sqrt(12 / (9 * 16 + 9 * 16))
    assert np.abs(c).max() <= bound and np.abs(c).max() > 0.95 * bound
    assert not np.asarray(v["params"]["features_7"]["bias"]).any()
    d = np.asarray(v["params"]["classifier_0"]["kernel"])  # 576 → 120
    assert np.abs(d).max() <= math.sqrt(12 / (576 + 120))


def test_projections_with_linear_on_mlp(tmp_path, capsys, monkeypatch):
    """`jaxnets projections mlp --with-linear` (4096/1024-unit layers) used to crash in the p-value."""
    import json

    from cli_helpers import run_cli

    code, _, err = run_cli(["projections", "mlp", "--with-linear", "--no-plots", "--out", tmp_path / "run", "-q"],
                           capsys, monkeypatch)
    assert code == 0, err
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["layers"]
    assert {r["units"] for r in rows} == {4096, 1024, 10}
    assert all(math.isfinite(r["p_value"]) and 0 <= r["p_value"] <= 1 for r in rows)
