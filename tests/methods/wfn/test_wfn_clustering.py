"""WFN candidate sets and the clustering step against the spec's acceptance vectors (§9.1–9.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxnets.errors import JaxnetsError
from jaxnets.methods.wfn.candidates import candidates
from jaxnets.methods.wfn.clustering import (
    ClusteringError,
    admitted_prefix,
    check_percentages,
    cluster,
    distances_to,
    run_schedule,
    threshold_schedule,
    vote,
    vote_sorted,
    vote_thresholds,
)
from jaxnets.methods.wfn.metrics import entropy_bits, value_stats

G0 = 2.0 ** -7
P10 = [0.3, 0.6, 0.8, 0.9, 0.95, 0.975, 0.99, 0.9975, 0.999, 1.0]


@pytest.mark.parametrize("a,k,size", [
    (0.01, 0, 17), (0.01, 1, 129), (0.01, 2, 355), (0.1, 1, 53), (0.1, 2, 53),
    (0.0075, 1, 135), (0.0075, 2, 415), (0.015, 1, 115), (0.015, 2, 277),
    (0.075, 1, 65), (0.075, 2, 69), (0.15, 1, 35), (0.15, 2, 35),
    (0.75, 0, 7), (0.75, 1, 7), (0.75, 5, 7)])
def test_candidate_set_sizes(a, k, size):
    assert candidates(1.2, a, k).size == size


def test_candidate_growth_and_listed_values():
    assert [candidates(1.2, 0.01, k).size for k in range(9)] == [17, 129, 355, 459, 497, 505, 505, 505, 505]
    assert [candidates(1.2, 0.1, k).size for k in range(4)] == [17, 53, 53, 53]
    assert candidates(1.2, 0.0075, 5).size == 673
    pos = candidates(1.2, 0.1, 1)
    expected = [2 ** -7, 0.009765625, 0.01171875, 2 ** -6, 0.017578125, 0.0234375, 0.02734375,
                2 ** -5, 0.0390625, 0.046875, 2 ** -4, 0.0703125, 0.09375, 0.109375, 2 ** -3,
                0.15625, 0.1875, 2 ** -2, 0.28125, 0.375, 0.4375, 2 ** -1, 0.625, 0.75, 1, 1.25]
    assert pos[pos > 0].tolist() == expected
    np.testing.assert_array_equal(candidates(1.2, 0.01, 0),
                                  np.array(sorted({0.0} | {s * 2.0 ** e for s in (1, -1)
                                                           for e in range(-7, 1)}), np.float32))
    assert candidates(1.2, 0.75, 3).tolist() == [-0.5, -0.0625, -G0, 0.0, G0, 0.0625, 0.5]


@pytest.mark.parametrize("a,k", [(0.01, 1), (0.01, 2), (0.0075, 3), (0.1, 2)])
def test_candidates_are_short_sums_of_powers_of_two(a, k):
    floor = math.log2(G0) - k - 1
    for c in candidates(1.2, a, k):
        scaled = abs(float(c)) / 2.0 ** floor  # every exponent ≥ floor → an integer
        assert scaled == int(scaled)
        assert _naf_weight(int(scaled)) <= k + 1  # minimal number of signed powers of two
    c = candidates(1.2, a, k)
    assert np.all(c == -c[::-1]) and 0.0 in c and not np.signbit(c[c == 0]).any()


def _naf_weight(n: int) -> int:
    """Non-zero digits of the non-adjacent form (the fewest signed powers of two summing to n)."""
    w = 0
    while n:
        if n & 1:
            n -= 2 - (n & 3)  # digit ±1
            w += 1
        n >>= 1
    return w


def test_candidates_bound_below_gamma0():
    assert candidates(G0, 0.01, 2).tolist() == [0.0]
    assert candidates(0.001, 0.01, 0).tolist() == [0.0]


def _regression_vector() -> np.ndarray:
    j = np.arange(20000, dtype=np.float64)
    u = np.modf((j + 1) * 0.6180339887498949)[0]
    return (0.02 * np.log(u / (1 - u))).astype(np.float32)


def test_regression_vector_itself():
    w = _regression_vector()
    assert w.min() == np.float32(-0.20210814) and w.max() == np.float32(0.2117327)
    assert round(100 * np.mean(np.abs(w) < G0), 2) == 19.29


def _replay(results, w):
    rows = []
    for r in results:
        w = np.where(r.fixed, r.values, w)
        rows.append((int(r.fixed.sum()), int(r.codebook.size), int((w == 0).sum()),
                     {i: int(x) for i, x in enumerate(r.order_hist) if x}))
    return w, rows


@pytest.mark.parametrize("windowed", [True, False])
def test_regression_vector_relative(windowed):
    w0 = _regression_vector()
    results = run_schedule(w0, P10, 0.01, mode="relative", windowed=windowed)
    w, rows = _replay(results, w0)
    r0 = results[0]
    v, c = np.unique(r0.values[r0.fixed], return_counts=True)
    counts = dict(zip(v.tolist(), c.tolist(), strict=True))
    assert counts == {-2 ** -5: 1791, -2 ** -6: 1052, 2 ** -6: 1365, 2 ** -5: 1792}
    assert rows[0][:3] == (6000, 4, 0)
    assert rows[1] == (12000, 8, 3858, {0: 11652, 1: 348})
    assert [r[0] for r in rows[2:9]] == [16000, 18000, 19000, 19500, 19800, 19950, 19980]
    assert [r[1] for r in rows[2:9]] == [12, 15, 19, 21, 24, 30, 34]
    assert rows[9][:2] == (20000, 49)
    assert rows[9][3] == {0: 10755, 1: 9152, 2: 73, 3: 4, 4: 10, 14: 6}
    s = value_stats(w)
    assert (s["unique_all"], s["unique_nonzero"]) == (47, 46)
    assert s["entropy_all"] == pytest.approx(4.090604, abs=1e-6)
    assert s["entropy_nonzero"] == pytest.approx(4.191680, abs=1e-6)
    assert (w.max(), w.min()) == (np.float32(0.20703125), np.float32(-0.203125))
    small = np.abs(w0) < G0
    assert np.all(w[small] == 0) and not np.any(w[~small] == 0)
    # every fixed entry is one of the returned centres
    assert np.isin(w, results[-1].codebook).all()


@pytest.mark.parametrize("windowed", [True, False])
def test_regression_vector_euclidean(windowed):
    w0 = _regression_vector()
    results = run_schedule(w0, P10, 0.0005, mode="euclidean", windowed=windowed)
    w, rows = _replay(results, w0)
    assert [r[0] for r in rows] == [6000, 12000, 16000, 18000, 19000, 19500, 19800, 19950, 19980, 20000]
    assert [r[1] for r in rows] == [3, 4, 6, 9, 12, 18, 23, 36, 46, 67]
    assert all(r[2] == 3419 for r in rows[2:])
    assert rows[9][3] == {0: 16000, 1: 3452, 2: 528, 3: 2, 4: 18}
    s = value_stats(w)
    assert (s["unique_all"], s["unique_nonzero"]) == (65, 64)
    assert s["entropy_all"] == pytest.approx(3.416935, abs=1e-6)
    assert s["entropy_nonzero"] == pytest.approx(3.325568, abs=1e-6)


def test_quota_and_membership_on_random_vectors():
    rng = np.random.default_rng(1)
    w = rng.laplace(0, 0.05, 5003).astype(np.float32)
    for p in (0.1, 0.37, 0.999, 1.0):
        r = cluster(w, p, 0.02)
        assert r.fixed.sum() == math.floor(w.size * p)
        assert np.isin(r.values[r.fixed], r.codebook).all()
        np.testing.assert_array_equal(r.values[~r.fixed], w[~r.fixed])


def test_delta_zero_example():
    w = np.array([0.5, 0.25, 0.25, 0.3, 0.001, -0.002], np.float32)
    r = cluster(w, 0.7, 0.0)
    assert r.fixed.tolist() == [False, True, True, False, True, True]
    assert r.values[r.fixed].tolist() == [0.25, 0.25, 0.0, 0.0]
    assert r.centres[:2] == [0.25, 0.0]
    with pytest.raises(ClusteringError, match="zero distance threshold"):
        cluster(w, 1.0, 0.0)  # 0.3 is never an exact match: a clear error, not a hang


def test_bad_input():
    w = np.ones(10, np.float32)
    with pytest.raises(JaxnetsError, match="≥ 0"):
        cluster(w, 0.5, -0.01)
    with pytest.raises(JaxnetsError, match="calculation type"):
        cluster(w, 0.5, 0.01, mode="manhattan")
    with pytest.raises(JaxnetsError, match="must be ≥ 0"):
        run_schedule(w, [0.5, 1.0], -1.0)
    with pytest.raises(JaxnetsError, match="end at 1.0"):
        check_percentages([0.3, 0.6])
    with pytest.raises(JaxnetsError, match="increasing"):
        check_percentages([0.6, 0.3, 1.0])
    with pytest.raises(JaxnetsError, match="NaN"):
        cluster(np.array([np.nan, 1.0], np.float32), 0.5, 0.01)


def test_threshold_schedule_table():
    assert threshold_schedule(0.01, 10) == pytest.approx([0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01])
    assert threshold_schedule(0.0075, 10)[:3] == pytest.approx([0.075, 0.0675, 0.06])
    assert threshold_schedule(0.015, 10)[-1] == 0.015
    assert threshold_schedule(0.01, 3, "constant") == [0.01] * 3


def test_distance_rules():
    w = np.array([0.0, 0.001, 0.5, -0.25], np.float32)
    d = distances_to(w, 0.25, "relative", G0)
    assert d[0] == np.inf and d[2] == 0.5 and d[3] == 2.0
    d0 = distances_to(w, 0.0, "relative", G0)
    assert d0.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert distances_to(w, 0.25, "euclidean", G0).tolist() == [0.25, np.float32(0.249), 0.25, 0.5]


def _brute_prefix(d: np.ndarray, a: float) -> int:
    # Independent: mean of each prefix from scratch (fractions in float64), zero-block rule.
    d = np.sort(d, kind="stable")
    z = sum(1 for x in d if x <= 0)
    f = z if z > 1 else 0
    best = 0
    for i in range(1, d.size + 1):
        m = math.fsum(d[:i].tolist()) / max(1, i - f)
        if m <= a:
            best = i
    return best


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(0, 3, width=32)), min_size=1, max_size=40),
       st.floats(0.0, 1.5))
def test_prefix_rule_brute_force(ds, a):
    d = np.asarray(ds, np.float32)
    assert admitted_prefix(np.sort(d, kind="stable"), a) == _brute_prefix(d, a)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.25, 0.25, width=32), min_size=2, max_size=60),
       st.sampled_from([0.3, 0.5, 0.9, 1.0]), st.sampled_from([0.005, 0.02, 0.1]),
       st.sampled_from(["relative", "euclidean"]))
def test_cluster_inner_steps_brute_force(ws, p, a_t, mode):
    """Replay the greedy loop with a literal (dense, per-weight) implementation: same result."""
    w = np.asarray(ws, np.float32)
    r = cluster(w, p, a_t, mode=mode)
    r_full = cluster(w, p, a_t, mode=mode, windowed=False)
    np.testing.assert_array_equal(r.fixed, r_full.fixed)
    ref_fixed, ref_vals, ref_centres = _literal_cluster(w, p, a_t, mode)
    np.testing.assert_array_equal(r.fixed, ref_fixed)
    np.testing.assert_array_equal(r.values, ref_vals)
    assert r.centres == ref_centres


def _literal_cluster(w, p, a_t, mode):
    """A literal, unvectorised port of the pseudocode in spec §2.4 (small inputs only)."""
    n = w.size
    n_take = math.floor(n * p)
    free = [True] * n
    out = w.copy()
    taken, k, a, centres = 0, 0, a_t, []
    while taken < n_take:
        U = [j for j in range(n) if free[j]]
        wu = [w[j] for j in U]
        B = max(abs(min(wu)), max(wu))
        V = candidates(B, a_t, k).tolist()
        votes = [0] * len(V)
        for x in wu:
            dists = [abs(np.float32(x) - np.float32(v)) for v in V]
            votes[int(np.argmin(dists))] += 1
        c = V[int(np.argmax(votes))] + 0.0
        ds = []
        for j in U:
            x = np.float32(w[j])
            if mode == "relative":
                diff = abs(x - np.float32(c))
                if x == 0:
                    dj = np.float32(1.0) if diff == 0 else np.float32(np.inf)
                else:
                    dj = np.float32(diff / abs(x))
            else:
                dj = abs(x - np.float32(c))
            if c == 0 and abs(x) < G0:
                dj = np.float32(0.0)
            ds.append((float(dj), j))
        ds.sort()
        L = _brute_prefix(np.array([d for d, _ in ds], np.float32), a)
        take = min(L, n_take - taken)
        for _, j in ds[:take]:
            out[j] = np.float32(c)
            free[j] = False
        taken += take
        centres.append(c)
        if take == 0:
            k += 1
            if k > 20:
                a *= 2
        else:
            a = a_t
    return ~np.array(free), out, centres


@pytest.mark.parametrize("seed", range(20))
def test_sorted_votes_equal_per_weight_votes(seed):
    """The binary-search votes (one switch point per candidate pair) give the per-weight rule's
    counts, also for weights on and next to the float32 midpoints, the candidates, ±0."""
    rng = np.random.default_rng(seed)
    w = (rng.laplace(0, 0.02, 3000) * rng.choice([1e-3, 1.0, 10.0])).astype(np.float32)
    cand = candidates(float(np.abs(w).max()), float(rng.choice([0.005, 0.01, 0.05])), int(rng.integers(0, 4)))
    mids = ((cand[:-1].astype(np.float64) + cand[1:]) / 2).astype(np.float32)
    w = np.concatenate([w, cand, mids, np.nextafter(mids, np.float32(np.inf)),
                        np.nextafter(mids, np.float32(-np.inf)), [-0.0, 0.0, 1e3, -1e3]]).astype(np.float32)
    np.testing.assert_array_equal(vote_sorted(np.sort(w), vote_thresholds(cand)), vote(w, cand))


def test_entropy_toy():
    s = value_stats(np.array([0, 0, 0, 0, 1, 1, 2, 3], np.float32))
    assert (s["unique_all"], s["entropy_all"]) == (4, 1.75)
    assert (s["unique_nonzero"], s["entropy_nonzero"]) == (3, 1.5)
    assert entropy_bits(np.array([5])) == 0.0
