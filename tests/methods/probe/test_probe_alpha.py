"""Sparsity Probe, spec §8A: deterministic checks to 1e-12 (no sklearn involved)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxnets.errors import JaxnetsError
from jaxnets.methods.probe.alpha import (
    NoTauQualifiesError,
    alpha_from_norms,
    epsilon_grid,
    sparsity_curve,
    tau_grid,
)
from jaxnets.methods.probe.wavelets import (
    node_values,
    parents_of,
    root_drop_indices,
    routed_counts_from_leaves,
    wavelet_vectors,
)

TOL = 1e-12


def test_probe_tau_grid() -> None:
    taus = tau_grid()
    assert len(taus) == 170
    assert taus[0] == 0.3
    assert taus[70] == 1.0000000000000007
    assert 1 / taus[70] - 0.5 == 0.49999999999999933


def test_probe_epsilon_grid() -> None:
    expected = [0.1, 0.13, 0.16, 0.19, 0.22, 0.25, 0.28, 0.31, 0.33999999999999997, 0.37]
    grid = epsilon_grid(0.1)
    assert len(grid) == 10
    np.testing.assert_allclose(grid, expected, rtol=0, atol=TOL)
    for eps in (0.01, 0.02, 0.05, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0):
        assert len(epsilon_grid(eps)) == 10


ALPHA_CASES = [
    # (norms, J, alphas or None, mean)
    (np.full(10000, 0.01), 1,
     [0.1896551724, 0.1622516556, 0.1410256410, 0.1211180124, 0.1060606061, 0.0917159763,
      0.0780346821, 0.0681818182, 0.0586592179, 0.0494505495], 0.10661533314732834),
    (np.full(300, 0.01), 1,
     [0.6235955056179767, 0.5752688172043003, 0.5416666666666661, 0.5101010101010095,
      0.4803921568627444, 0.4615384615384609, 0.4345794392523358, 0.41743119266054984,
      0.40090090090090025, 0.38495575221238876], 0.48304299030173337),
    (np.full(10000, 0.01), 5, None, 0.28438304653220453),
    (np.full(2000, 0.01), 2, None, 0.3279064640971704),
    (0.05 / np.arange(1, 2001), 1,
     [0.36956521739130377, 0.34033613445378097, 0.31967213114754045, 0.2999999999999994,
      0.2874015748031491, 0.2751937984496119, 0.2692307692307687, 0.257575757575757,
      0.2518796992481197, 0.24074074074074026], 0.29115958230407707),
    (0.02 * np.arange(1, 20001) ** -0.75, 5,
     [0.326446280991735, 0.2999999999999994, 0.28124999999999944, 0.2692307692307687,
      0.257575757575757, 0.2462686567164174, 0.23529411764705832, 0.22992700729926951,
      0.2194244604316542, 0.21428571428571375], 0.2579702764178373),
]


@pytest.mark.parametrize("norms,trees,alphas,mean", ALPHA_CASES)
def test_probe_alpha_from_norms(norms: np.ndarray, trees: int, alphas: list | None, mean: float) -> None:
    res = alpha_from_norms(norms, trees, 0.1, "original")
    # The spec prints the first vector to 10 decimals; the others in full.
    atol = 1e-10 if alphas and alphas[0] == 0.1896551724 else TOL
    if alphas is not None:
        np.testing.assert_allclose(res.alphas, alphas, rtol=0, atol=atol)
    assert abs(res.mean - mean) <= TOL
    # The fixed variant differs only in zero handling and root bookkeeping: same here.
    assert abs(alpha_from_norms(norms, trees, 0.1, "fixed").mean - mean) <= TOL


def test_probe_scale_invariance_and_d_at_one() -> None:
    norms = 0.02 * np.arange(1, 20001) ** -0.75
    base = alpha_from_norms(norms, 5).mean
    for c in (0.2, 5.0):
        assert abs(alpha_from_norms(norms * c, 5).mean - base) <= TOL
    d = sparsity_curve(0.05 / np.arange(1, 2001), 1)
    assert abs(d[70] - 1999.9999999999884) <= 1e-9  # D(1) = M/J, at τ_70 = 1.0000000000000007
    assert abs(d[70] - 2000) < 1e-8


def test_probe_zero_norm_handling() -> None:
    norms = 0.05 / np.arange(1, 201)
    assert abs(alpha_from_norms(norms, 1).mean - 0.5526699795347341) <= TOL
    with_zero = np.append(norms, 0.0)
    assert abs(alpha_from_norms(with_zero, 1, variant="original").mean - 0.500273669900926) <= TOL
    fixed = alpha_from_norms(with_zero, 1, variant="fixed")
    assert abs(fixed.mean - 0.5526699795347341) <= TOL
    assert fixed.dropped_small == 1


def test_probe_no_tau_qualifies_is_typed() -> None:
    with pytest.raises(NoTauQualifiesError, match="larger --epsilon-1"):
        alpha_from_norms(np.full(2, 0.1), 1)
    assert issubclass(NoTauQualifiesError, JaxnetsError)


# Hand-built tree of spec §8A-4 (C = 3, N = 20, sklearn depth-first ids).
LEFT = np.array([1, 2, -1, -1, 5, -1, -1])
RIGHT = np.array([4, 3, -1, -1, 6, -1, -1])
P = np.array([[.5, .3, .2], [.8, .2, 0], [1, 0, 0], [.5, .5, 0], [.2, .4, .4], [0, .5, .5], [.4, .3, .3]])
COUNTS = np.array([20, 9, 5, 4, 11, 6, 5])


def _hand_norms(variant: str) -> np.ndarray:
    # sklearn ≥ 1.4 stores per-output fractions: value[ν, c] = (1 − p_c, p_c).
    value = np.stack([1 - P, P], axis=2)
    parent = parents_of(LEFT, RIGHT)
    psi = wavelet_vectors(node_values(value), parent, variant)
    return np.sqrt((psi**2).sum(1)) * np.sqrt(COUNTS / 20)


def test_probe_hand_built_tree_norms() -> None:
    np.testing.assert_allclose(
        _hand_norms("original")[1:],
        [0.1483239697, 0.0942809042, 0.1264911064, 0.3242084378, 0.0894427191, 0.0816496581],
        rtol=0, atol=1e-10)  # the spec gives 10 decimals
    np.testing.assert_allclose(
        _hand_norms("fixed")[1:],
        [0.1673320053, 0.0942809042, 0.1264911064, 0.1849924923, 0.0894427191, 0.0816496581],
        rtol=0, atol=1e-10)
    # Counts-vs-fractions storage does not matter (P8): counts give the same values.
    value_counts = np.stack([1 - P, P], axis=2) * COUNTS[:, None, None]
    np.testing.assert_allclose(node_values(value_counts), node_values(np.stack([1 - P, P], axis=2)),
                               rtol=0, atol=TOL)


def test_probe_routed_counts_bottom_up() -> None:
    parent = parents_of(LEFT, RIGHT)
    leaves = np.repeat([2, 3, 5, 6], [5, 4, 6, 5])
    np.testing.assert_array_equal(routed_counts_from_leaves(leaves, parent), COUNTS)


def test_probe_root_drop_indices() -> None:
    counts = [45, 39, 49, 41, 35]
    assert set(root_drop_indices(counts, "original").tolist()) == {0, 39, 88, 129, 164}
    assert set(root_drop_indices(counts, "fixed").tolist()) == {0, 45, 84, 133, 174}
    assert root_drop_indices([7], "original").tolist() == [0]
