"""Sparsity Probe (Ben-Shaul & Dekel): alpha-scores per layer from random-forest wavelets.

See docs/probe.md and ../shared/specs/sparsity-probe.md.
"""

from jaxnets.methods.probe.alpha import NoTauQualifiesError, alpha_from_norms, epsilon_grid, tau_grid
from jaxnets.methods.probe.runner import PRESETS, ProbeSettings, probe, probe_matrix, run_probe

__all__ = ["PRESETS", "NoTauQualifiesError", "ProbeSettings", "alpha_from_norms", "epsilon_grid", "probe",
           "probe_matrix", "run_probe", "tau_grid"]
