"""Hyperplane arrangements of trained ConvNets (specs/hyperplane-arrangements.md).

- :mod:`.registry` — the ordered layer registry (stage/block ids; pool rule and the ResNet rule);
- :mod:`.stats` — projection statistics, mass/mean, distances from init, null band;
- :mod:`.labels` — snapshot epoch labels (fixed and legacy rules);
- :mod:`.reinit` — the layer re-initialisation grid with one jitted evaluation;
- :mod:`.plots` — histograms, mass per layer, heatmap (PNG);
- :mod:`.runner` — ``run_projections``, ``run_reinit``, ``run_study`` (the demo's entry point).
"""
