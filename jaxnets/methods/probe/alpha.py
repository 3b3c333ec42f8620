"""Alpha-score from pooled wavelet norms (spec §2.10–2.11).

D(τ) = (1/J) · (Σ nᵢ^τ)^(1/τ − 1) · Σ nᵢ^(τ−1) on the τ grid ``np.arange(0.3, 2.0, 0.01)``,
θ(τ) = degrees(arctan(−D)), and for each ε of ``np.arange(ε₁, 4ε₁, 3ε₁/10)`` the critical τ is
the *largest* grid τ with |θ + 90| ≤ ε; α_ε = 1/τ − 1/2. All in float64 numpy (P28).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from jaxnets.errors import JaxnetsError

P_NORM = 2  # the wavelet norms are L2 norms: α = 1/τ − 1/p
VARIANTS = ("original", "fixed")
# Variant "fixed" drops norms this small relative to the largest before D(τ) (P10).
FIXED_ZERO_RTOL = 1e-12


class NoTauQualifiesError(JaxnetsError):
    """No τ of the grid satisfies |θ(τ) + 90| ≤ ε (the original calls ``exit()`` here, P11)."""


def tau_grid() -> np.ndarray:
    # The float arange itself, never 0.3 + 0.01·k: the values differ in the last bits (P27).
    return np.arange(0.3, 2.0, 0.01)


def epsilon_grid(epsilon_1: float) -> np.ndarray:
    """The 10 ε values (degrees) of the original: ``np.arange(ε₁, ε₂, (ε₂ − ε₁)/10)``, ε₂ = 4ε₁."""
    if not epsilon_1 > 0:
        raise JaxnetsError(f"--epsilon-1 must be positive (got {epsilon_1})")
    epsilon_2 = 4 * epsilon_1
    grid = np.arange(epsilon_1, epsilon_2, (epsilon_2 - epsilon_1) / 10)
    if len(grid) != 10:  # float arange may overshoot by one in principle (P26)
        from jaxnets.ui import warn

        warn(f"ε grid for ε₁={epsilon_1} has {len(grid)} values; keeping the first 10")
        grid = grid[:10]
    return grid


def sparsity_curve(norms: np.ndarray, n_trees: int, taus: np.ndarray | None = None) -> np.ndarray:
    """D(τ) for every τ of the grid (float64). Exact zeros give D = inf for τ < 1 (as the original)."""
    n = np.asarray(norms, dtype=np.float64)
    taus = tau_grid() if taus is None else taus
    out = np.empty(len(taus), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for k, tau in enumerate(taus):
            out[k] = (1.0 / n_trees) * np.power(np.power(n, tau).sum(), 1.0 / tau - 1.0) \
                * np.power(n, tau - 1.0).sum()
    return out


def angles_of(d: np.ndarray) -> np.ndarray:
    return np.rad2deg(np.arctan(-d))


@dataclass
class AlphaResult:
    alphas: list[float]  # one per ε, ε order
    mean: float
    epsilons: list[float]
    critical_taus: list[float]
    n_wavelets: int
    dropped_small: int = 0
    d_curve: list[float] = field(default_factory=list)


def alpha_from_norms(norms: np.ndarray, n_trees: int, epsilon_1: float = 0.1,
                     variant: str = "original", keep_curve: bool = False) -> AlphaResult:
    """The ten α_ε and their mean; :class:`NoTauQualifiesError` when some ε has no qualifying τ."""
    if variant not in VARIANTS:
        raise JaxnetsError(f"unknown variant '{variant}'; use one of {', '.join(VARIANTS)}")
    if n_trees < 1:
        raise JaxnetsError(f"the number of trees must be at least 1 (got {n_trees})")
    n = np.asarray(norms, dtype=np.float64).ravel()
    dropped = 0
    if variant == "fixed" and n.size:
        keep = n > FIXED_ZERO_RTOL * n.max()
        dropped = int(n.size - keep.sum())
        n = n[keep]
    if n.size == 0:
        raise NoTauQualifiesError("no wavelet norms to score (every tree is a single leaf); "
                                  "use more samples or a deeper forest")
    taus = tau_grid()
    d = sparsity_curve(n, n_trees, taus)
    gap = np.abs(angles_of(d) + 90.0)
    epsilons = epsilon_grid(epsilon_1)
    alphas: list[float] = []
    crit: list[float] = []
    for eps in epsilons:
        hits = np.flatnonzero(gap <= eps)
        if hits.size == 0:
            raise NoTauQualifiesError(
                f"no τ in [0.3, 2) satisfies |θ(τ)+90| ≤ {eps:g}° (only {n.size} wavelets over "
                f"{n_trees} tree(s)); use a larger --epsilon-1, more samples or deeper trees")
        tau = taus[hits[-1]]  # the *largest* qualifying τ
        crit.append(float(tau))
        alphas.append(float(1.0 / tau - 1.0 / P_NORM))
    return AlphaResult(alphas=alphas, mean=float(np.mean(alphas)), epsilons=[float(e) for e in epsilons],
                       critical_taus=crit, n_wavelets=int(n.size), dropped_small=dropped,
                       d_curve=[float(x) for x in d] if keep_curve else [])
