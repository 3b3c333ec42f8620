"""One WFN clustering step (spec §2.4), exact and vectorised over every selected weight.

The greedy loop over *centres* stays in Python (a few dozen to a few hundred iterations per
step), but every iteration is whole-array NumPy: votes by ``searchsorted`` against the sorted
candidate set plus a ``bincount``; distances to the chosen centre in one pass; the admitted
prefix from a stable sort of the distances, a float64 ``cumsum`` and the running-mean rule.
No Python loop ever visits single weights.

``windowed=True`` (default) sorts only the weights whose distance is ≤ τ (τ = 2a, doubled
until the running mean crosses a inside the window, spec §8.3 step 4): every weight outside
the window has a larger distance, and the running mean of an ascending sequence only grows
once past the mean, so the answer is the same as sorting everything (tests check both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from jaxnets.errors import JaxnetsError
from jaxnets.methods.wfn.candidates import MAX_ORDER_GROWTH, ZERO_DISTANCE, candidates

CALCULATION_TYPES = ("relative", "euclidean")
ORDER_BINS = 15


class ClusteringError(JaxnetsError):
    """The clustering step cannot meet its quota (e.g. δ = 0 without enough exact matches)."""


@dataclass
class ClusterResult:
    values: np.ndarray  # float32 (N,): the centre where fixed, the input elsewhere
    fixed: np.ndarray  # bool (N,)
    centres: list[float]  # chosen centres in order (with the stuck ones, spec P9)
    order_hist: np.ndarray  # int64 (15,): weights fixed at order k (k ≥ 14 → bin 14)
    distances: np.ndarray  # float32 (N,): distance to the centre each fixed weight took
    empty_attempts: int = 0
    max_a: float = 0.0
    inner_steps: int = 0
    log: list[dict] = field(default_factory=list)

    @property
    def codebook(self) -> np.ndarray:
        """The distinct chosen centres, sorted (what the next round's regulariser uses)."""
        return np.unique(np.asarray(self.centres, np.float32) + np.float32(0.0))


def threshold_schedule(delta: float, rounds: int, kind: str = "linear") -> list[float]:
    """a_t = max(δ, δ·(R − t)) (faithful, ``linear``) or δ every round (``constant``)."""
    if kind == "linear":
        return [max(delta, delta * (rounds - t)) for t in range(rounds)]
    if kind == "constant":
        return [float(delta)] * rounds
    raise JaxnetsError(f"unknown distance schedule {kind!r} (choose linear or constant)")


def check_percentages(percentages: list[float] | tuple[float, ...]) -> list[float]:
    p = [float(x) for x in percentages]
    if not p:
        raise JaxnetsError("--percentages is empty; give an increasing list ending at 1.0")
    if any(not 0 < x <= 1 for x in p):
        raise JaxnetsError(f"--percentages must lie in (0, 1], got {p}")
    if any(b <= a for a, b in zip(p, p[1:], strict=False)):
        raise JaxnetsError(f"--percentages must be strictly increasing, got {p}")
    if p[-1] != 1.0:
        raise JaxnetsError(f"--percentages must end at 1.0 (the last round fixes every weight), got {p}")
    return p


def distances_to(w: np.ndarray, c: float, mode: str, gamma0: float) -> np.ndarray:
    """d_j of spec §2.4 (float32): relative |w−c|/|w| (0/0 → 1, x/0 → inf) or |w−c|;
    for c = 0 every |w| < γ0 is at distance 0."""
    c32 = np.float32(c)
    diff = np.abs(w - c32)
    if mode == "relative":
        with np.errstate(divide="ignore", invalid="ignore"):
            d = diff / np.abs(w)
        d = np.where(np.isnan(d), np.float32(1.0), d)
    else:
        d = diff
    if c32 == 0:
        d = np.where(np.abs(w) < np.float32(gamma0), np.float32(0.0), d)
    return d.astype(np.float32, copy=False)


def admitted_prefix(d_sorted: np.ndarray, a: float) -> int:
    """L: the largest i with running mean m_i ≤ a (0 if none). The leading zero block is left
    out of the denominator when it holds ≥ 2 entries (spec §2.4)."""
    n = d_sorted.size
    if n == 0:
        return 0
    z = int(np.count_nonzero(d_sorted <= 0))
    f = z if z > 1 else 0
    cs = np.cumsum(d_sorted, dtype=np.float64)
    denom = np.maximum(1, np.arange(1, n + 1, dtype=np.int64) - f)
    ok = (cs / denom) <= a
    if not ok.any():
        return 0
    return int(n - np.argmax(ok[::-1]))


def vote(w_free: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Votes per candidate: each weight's nearest candidate by absolute distance (computed in
    float32; on a tie the lower one)."""
    idx = np.searchsorted(cand, w_free, side="left")
    hi = np.minimum(idx, cand.size - 1)
    lo = np.maximum(idx - 1, 0)
    d_lo = np.abs(w_free - cand[lo])
    d_hi = np.abs(cand[hi] - w_free)
    nearest = np.where(d_lo <= d_hi, lo, hi)
    return np.bincount(nearest, minlength=cand.size)


def _ordered_keys(x: np.ndarray) -> np.ndarray:
    """float32 → uint32 keys in the same order as the values (IEEE bit trick)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    return np.where(u >> 31, ~u, u | np.uint32(0x80000000)).astype(np.uint32)


def _from_keys(k: np.ndarray) -> np.ndarray:
    u = np.where(k >> 31, k ^ np.uint32(0x80000000), ~k).astype(np.uint32)
    return u.view(np.float32)


def vote_thresholds(cand: np.ndarray) -> np.ndarray:
    """t_i (i = 1 … C−1): the smallest float32 w that :func:`vote` gives to cand[i] rather than
    cand[i−1]. The rule (``|w − lo| <= |hi − w|`` in float32 → lo) is monotone in w, because
    float32 rounding is, so each boundary is one switch point, found by bisection over the
    float32 values between the two candidates."""
    cand = np.asarray(cand, np.float32)
    lo_c, hi_c = cand[:-1], cand[1:]
    lo, hi = _ordered_keys(lo_c).astype(np.int64), _ordered_keys(hi_c).astype(np.int64)
    # invariant: the rule says lo_c at key lo, hi_c at key hi (hi > lo)
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        w = _from_keys(mid.astype(np.uint32))
        to_lo = np.abs(w - lo_c) <= np.abs(hi_c - w)
        lo, hi = np.where(to_lo, mid, lo), np.where(to_lo, hi, mid)
    return _from_keys(hi.astype(np.uint32))


def vote_sorted(w_sorted: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """:func:`vote` for ascending ``w_sorted``: each candidate's voters are one run of it."""
    edges = np.searchsorted(w_sorted, thresholds, side="left")
    return np.diff(edges, prepend=0, append=w_sorted.size)


def _remove_sorted(w_sorted: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``w_sorted`` without one occurrence of each of ``values`` (a sub-multiset of it)."""
    values = np.sort(values)
    first = np.searchsorted(w_sorted, values, side="left")
    repeat = np.arange(values.size) - np.searchsorted(values, values, side="left")
    keep = np.ones(w_sorted.size, bool)
    keep[first + repeat] = False
    return w_sorted[keep]


def _prefix_windowed(d: np.ndarray, a: float, quota: int) -> np.ndarray:
    """Positions (into ``d``) of the admitted prefix, in sorted (distance, index) order."""
    n = d.size
    tau = max(2.0 * a, 1e-30)
    while True:
        inside = np.flatnonzero(d <= tau)
        if inside.size == n or not math.isfinite(tau):
            order = inside[np.argsort(d[inside], kind="stable")]
            return order[: min(admitted_prefix(d[order], a), quota)]
        order = inside[np.argsort(d[inside], kind="stable")]
        L = admitted_prefix(d[order], a)
        if order.size > L or quota <= L:  # the mean crossed a inside the window: exact
            return order[: min(L, quota)]
        tau = tau * 4.0 if tau < 1e37 else math.inf  # stay within float32


def _prefix_full(d: np.ndarray, a: float, quota: int) -> np.ndarray:
    order = np.argsort(d, kind="stable")
    return order[: min(admitted_prefix(d[order], a), quota)]


def cluster(w: np.ndarray, p: float, a_t: float, *, mode: str = "relative",
            gamma0: float = ZERO_DISTANCE, windowed: bool = True,
            max_inner_steps: int = 1_000_000) -> ClusterResult:
    """Fix ⌊N·p⌋ entries of the flat vector ``w`` to greedily chosen centres (spec §2.4).

    Starts from scratch (every weight free). Raises :class:`ClusteringError` when the quota
    cannot be met (a_t = 0 with too few exact matches) instead of looping forever.
    """
    if mode not in CALCULATION_TYPES:
        raise JaxnetsError(f"unknown calculation type {mode!r} (choose relative or euclidean)")
    if not (a_t >= 0 and math.isfinite(a_t)):
        raise JaxnetsError(f"distance threshold must be a finite number ≥ 0, got {a_t}")
    if not 0 <= p <= 1:
        raise JaxnetsError(f"fraction to fix must lie in [0, 1], got {p}")
    w = np.ascontiguousarray(w, np.float32).reshape(-1)
    if not np.all(np.isfinite(w)):
        raise JaxnetsError("weights hold NaN or inf; cannot cluster them")
    n = w.size
    n_take = int(math.floor(n * p))
    out = w.copy()
    fixed = np.zeros(n, bool)
    dist = np.zeros(n, np.float32)
    free_idx = np.arange(n, dtype=np.int64)
    w_free = w.copy()
    taken, k, a = 0, 0, float(a_t)
    centres: list[float] = []
    order_hist = np.zeros(ORDER_BINS, np.int64)
    empty, max_a, steps = 0, float(a_t), 0
    log: list[dict] = []
    pick = _prefix_windowed if windowed else _prefix_full
    # Votes read a sorted copy of the free weights (binary searches per candidate instead of
    # one per weight); the selection itself works in index order, as the original's ties need.
    w_sorted = np.sort(w_free)
    thresholds_for: tuple[np.ndarray, np.ndarray] | None = None
    while taken < n_take:
        steps += 1
        if steps > max_inner_steps:
            raise ClusteringError(f"clustering did not converge in {max_inner_steps} inner steps")
        bound = max(abs(float(w_sorted[0])), float(w_sorted[-1]))
        cand = candidates(bound, a_t, k, gamma0)
        if thresholds_for is None or not np.array_equal(thresholds_for[0], cand):
            thresholds_for = (cand, vote_thresholds(cand))
        counts = vote_sorted(w_sorted, thresholds_for[1])
        c = float(cand[int(np.argmax(counts))]) + 0.0  # first maximum = lower candidate; -0 → +0
        d = distances_to(w_free, c, mode, gamma0)
        sel = pick(d, a, n_take - taken)
        take = int(sel.size)
        centres.append(c)
        if take == 0:
            empty += 1
            if a_t == 0:
                raise ClusteringError(
                    f"cannot fix {n_take} of {n} weights with a zero distance threshold: only "
                    f"{taken} match a candidate exactly (use --distance-allowed > 0)")
            k += 1
            if k > MAX_ORDER_GROWTH:
                a *= 2.0
                max_a = max(max_a, a)
                if not math.isfinite(a):
                    raise ClusteringError("clustering threshold overflowed without fixing a weight")
            continue
        gidx = free_idx[sel]
        out[gidx] = np.float32(c)
        fixed[gidx] = True
        dist[gidx] = d[sel]
        order_hist[min(k, ORDER_BINS - 1)] += take
        log.append({"centre": c, "taken": take, "order": k, "a": a})
        taken += take
        a = float(a_t)
        w_sorted = _remove_sorted(w_sorted, w_free[sel])
        keep = np.ones(w_free.size, bool)
        keep[sel] = False
        free_idx = free_idx[keep]
        w_free = w_free[keep]
    return ClusterResult(values=out, fixed=fixed, centres=centres, order_hist=order_hist,
                         distances=dist, empty_attempts=empty, max_a=max_a, inner_steps=steps,
                         log=log)


def run_schedule(w: np.ndarray, percentages: list[float], delta: float, *,
                 mode: str = "relative", gamma0: float = ZERO_DISTANCE,
                 schedule: str = "linear", windowed: bool = True) -> list[ClusterResult]:
    """The clustering rounds with no training in between (spec §9.2): after each step
    w ← where(fixed, values, w)."""
    if delta < 0:
        raise JaxnetsError(f"--distance-allowed must be ≥ 0, got {delta}")
    percentages = check_percentages(percentages)
    thresholds = threshold_schedule(delta, len(percentages), schedule)
    w = np.asarray(w, np.float32).copy()
    results = []
    for p, a_t in zip(percentages, thresholds, strict=True):
        r = cluster(w, p, a_t, mode=mode, gamma0=gamma0, windowed=windowed)
        w = np.where(r.fixed, r.values, w)
        results.append(r)
    return results
