"""Index tables, the decomposed head as a mask, MI closed form, CSG ordering — no shared data."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.methods.decompose import head as H
from jaxnets.methods.decompose.csg import csg_indices
from jaxnets.methods.decompose.essential import noise_keys, noised
from jaxnets.methods.decompose.extract import rank_channels
from jaxnets.methods.decompose.indices import (
    IndexFileError,
    full_table,
    load_indices,
    overlap,
    write_indices,
)
from jaxnets.methods.decompose.mutual_info import mi_contingency, mi_from_overlap, mi_score, pairwise_mi


def _write(tmp_path, data, name="i.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_roundtrip_and_numeric_key_order(tmp_path):
    rng = np.random.default_rng(0)
    table = np.stack([rng.permutation(64)[:5] for _ in range(12)])
    p = write_indices(tmp_path / "t.json", table)
    data = json.loads(p.read_text())
    assert list(data) == [str(c) for c in range(12)]
    # keys in string order ("0","1","10","11","2",…) still map class c to row c
    shuffled = {k: data[k] for k in sorted(data)}
    again = load_indices(_write(tmp_path, shuffled, "s.json"), num_classes=12, num_features=64)
    np.testing.assert_array_equal(again, table)
    assert again.dtype == np.int32


@pytest.mark.parametrize(("data", "message"), [
    ("{not json", "not valid JSON"),
    ([1, 2, 3], "expected a JSON object"),
    ({"0": [1, 2], "2": [3, 4]}, "missing 1"),
    ({"0": [1, 2], "1": [3]}, "unequal lengths"),
    ({"0": [1, 1], "1": [3, 4]}, "more than once"),
    ({"0": [1, 64], "1": [3, 4]}, "out of range"),
    ({"0": [1, -1], "1": [3, 4]}, "negative"),
    ({"0": [1, "a"], "1": [3, 4]}, "not an integer"),
    ({"a": [1, 2], "1": [3, 4]}, "not an integer"),
    ({"0": [], "1": []}, "non-empty"),
    ({"00": [1, 2], "1": [3, 4]}, "decimal"),
])
def test_bad_index_files(tmp_path, data, message):
    with pytest.raises(IndexFileError, match=message):
        load_indices(_write(tmp_path, data), num_features=64)


def test_class_count_mismatch_and_missing_file(tmp_path):
    p = write_indices(tmp_path / "t.json", full_table(1000, 50))
    with pytest.raises(IndexFileError, match="1000 classes but the model has 10"):
        load_indices(p, num_classes=10, num_features=64)
    with pytest.raises(IndexFileError, match="not found"):
        load_indices(tmp_path / "nope.json")


def _head_params(d=64, c=10, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"backbone": {"w": jnp.ones(3)},
            "linear": {"kernel": jax.random.normal(k1, (d, c)), "bias": jax.random.normal(k2, (c,))}}


def _dense(params, f):
    return f @ params["linear"]["kernel"] + params["linear"]["bias"]


def test_all_channels_equals_full_head():
    params = _head_params()
    f = jax.random.uniform(jax.random.key(1), (7, 64))
    mask = H.mask_tree(params, "linear", full_table(10, 64))
    masked = H.apply_head_mask(params, mask)
    np.testing.assert_array_equal(np.asarray(_dense(masked, f)), np.asarray(_dense(params, f)))
    assert masked["backbone"] is params["backbone"]
    v, b = H.final_weights(params, "linear", full_table(10, 64))
    np.testing.assert_allclose(np.asarray(H.decomposed_logits(f, v, b, full_table(10, 64))),
                               np.asarray(_dense(params, f)), atol=1e-5)


def test_mask_gather_recompose_and_permutation():
    params = _head_params()
    rng = np.random.default_rng(3)
    table = np.stack([rng.permutation(64)[:5] for _ in range(10)]).astype(np.int32)
    f = jax.random.uniform(jax.random.key(2), (6, 64))
    masked = H.bake(params, "linear", table)
    v, b = H.final_weights(params, "linear", table)
    gathered = H.decomposed_logits(f, v, b, table)
    np.testing.assert_allclose(np.asarray(_dense(masked, f)), np.asarray(gathered), atol=1e-5)
    kernel = np.asarray(params["linear"]["kernel"])
    rec = H.recompose(v, table, 64)
    keep = H.head_mask(table, 64, 10)
    np.testing.assert_array_equal(rec[keep], kernel[keep])
    assert not rec[~keep].any()
    np.testing.assert_array_equal(np.asarray(masked["linear"]["kernel"]), rec)
    perm = np.stack([rng.permutation(5) for _ in range(10)])
    t2, v2 = np.take_along_axis(table, perm, 1), np.take_along_axis(v, perm, 1)
    np.testing.assert_allclose(np.asarray(H.decomposed_logits(f, v2, b, t2)), np.asarray(gathered),
                               atol=1e-5)


def test_masked_entries_get_zero_gradient():
    params = _head_params()
    table = full_table(10, 64)[:, :3]
    mask = H.mask_tree(params, "linear", table)
    f = jax.random.uniform(jax.random.key(4), (5, 64))
    g = jax.grad(lambda p: jnp.sum(_dense(H.apply_head_mask(p, mask), f) ** 2))(params)
    keep = H.head_mask(table, 64, 10)
    assert not np.asarray(g["linear"]["kernel"])[~keep].any()
    assert np.asarray(g["linear"]["kernel"])[keep].all()


def test_head_mask_on_nested_head():
    params = {"classifier": {"fc": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}}, "x": {"k": 1.0}}
    mask = H.mask_tree(params, "classifier/fc", np.array([[0], [1], [3]]))
    out = H.apply_head_mask(params, mask)
    np.testing.assert_array_equal(np.asarray(out["classifier"]["fc"]["kernel"]),
                                  np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]))


def test_mi_closed_form_matches_contingency():
    rng = np.random.default_rng(5)
    for _ in range(50):
        ka, kb = rng.integers(1, 40, size=2)
        a = np.zeros(64, int)
        b = np.zeros(64, int)
        a[rng.permutation(64)[:ka]] = 1
        b[rng.permutation(64)[:kb]] = 1
        m = int((a & b).sum())
        assert abs(float(mi_from_overlap(m, ka, kb, 64)) - mi_contingency(a, b)) < 1e-12


def test_mi_diagonal_is_entropy():
    table = full_table(10, 64)[:, :5] + np.arange(10)[:, None] * 5
    mat = pairwise_mi(table % 64, 64)
    p = 5 / 64
    np.testing.assert_allclose(np.diag(mat), -(p * np.log(p) + (1 - p) * np.log(1 - p)))
    s = mi_score(table % 64, 64)
    assert s["score"] == pytest.approx(mat.mean())


def test_csg_orders_and_rank_ties():
    gates = np.array([[0.3, -0.1, 0.8, 0.5], [0.0, 0.2, 0.1, 0.9]])
    np.testing.assert_array_equal(csg_indices(gates, 2, "ascending"), [[1, 0], [0, 2]])
    np.testing.assert_array_equal(csg_indices(gates, 2, "descending"), [[2, 3], [3, 1]])
    with pytest.raises(Exception, match="csg-order"):
        csg_indices(gates, 2, "sideways")
    counts = np.array([[3, 5, 5, 1, 5], [0, 0, 0, 0, 1]])
    np.testing.assert_array_equal(rank_channels(counts, 3), [[1, 2, 4], [4, 0, 1]])
    assert overlap([[1, 2, 3]], [[3, 2, 9]]) == 2


def test_noise_touches_only_selected_columns():
    f = jax.random.uniform(jax.random.key(6), (9, 64))
    sel = np.zeros(64, bool)
    sel[[3, 17, 40]] = True
    keys = noise_keys(0, 0, 2, 9, 0)
    x = np.asarray(noised(f, jnp.asarray(sel), keys))
    np.testing.assert_array_equal(x[:, ~sel], np.asarray(f)[:, ~sel])
    assert not np.any(x[:, sel] == np.asarray(f)[:, sel])
    np.testing.assert_array_equal(x, np.asarray(noised(f, jnp.asarray(sel), noise_keys(0, 0, 2, 9, 0))))
    y = np.asarray(noised(f, jnp.asarray(sel), noise_keys(1, 0, 2, 9, 0)))
    assert not np.array_equal(x, y)
    added = np.asarray(noised(f, jnp.asarray(sel), keys, mode="add"))
    np.testing.assert_allclose(added[:, sel] - np.asarray(f)[:, sel], x[:, sel], atol=1e-6)
