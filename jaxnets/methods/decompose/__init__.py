""""Decomposing the Deep" (Badola et al.): class-specific filters of the penultimate layer.

- :mod:`.indices` — index tables (C, k): load / validate / write the shipped JSON format;
- :mod:`.head` — the decomposed head as a mask over the final Dense kernel;
- :mod:`.extract` — influential-channel extraction (per-image top-k frequency histograms);
- :mod:`.essential` — the Gaussian-noise "essential features" experiment;
- :mod:`.mutual_info` — pairwise MI of binary membership vectors;
- :mod:`.csg` — CSG gates and the indices derived from them;
- :mod:`.runners` — plain ``run_*`` functions behind the CLI and the demo.

Specification: ``specs/decomposing-the-deep.md``.
"""
