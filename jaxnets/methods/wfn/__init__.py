"""Weight Fixing Networks (Subia-Waud & Dasmahapatra, ECCV 2022): see specs/weight-fixing-networks.md.

- :mod:`.candidates` — candidate centres (powers of two and their short sums);
- :mod:`.clustering` — the exact greedy clustering step, vectorised;
- :mod:`.regulariser` — L_reg, the λ-scaled loss and the clip → mask → Adam chain;
- :mod:`.layout` — quantisable leaves and the canonical (PyTorch-order) flat vector;
- :mod:`.metrics` — unique counts and entropies (code and paper variants), plots;
- :mod:`.export` — PyTorch state_dict and compact codebook + indices file;
- :mod:`.runner` — the round schedule, resume, results (``run_wfn``).
"""

from jaxnets.methods.wfn.candidates import ZERO_DISTANCE, candidates
from jaxnets.methods.wfn.clustering import ClusteringError, ClusterResult, cluster, run_schedule

__all__ = ["ZERO_DISTANCE", "ClusterResult", "ClusteringError", "candidates", "cluster",
           "run_schedule"]
