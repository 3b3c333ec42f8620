"""Sparsity Probe: the plain runner the demo calls (digits_cnn on digits, all its layers)."""

from __future__ import annotations

import pytest


def test_probe_plain_runner_digits_cnn_all_layers() -> None:
    """What the demo calls: every default layer of digits_cnn on digits, alpha per layer."""
    from jaxnets.methods.probe import probe

    result = probe("digits_cnn", "digits")
    by_layer = result["alpha_by_layer"]
    assert list(by_layer) == ["input", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "features"]
    assert all(isinstance(a, float) for a in by_layer.values()), by_layer
    # Reproduced values (seeded init, sklearn 1.9.1; identical over repeated runs). rel 1e-6, not
    # bitwise: the features come from XLA convolutions whose float sums may change with the CPU
    # thread split, which can move a forest threshold's last bits.
    expected = {"input": 0.4728044488564153, "conv1": 0.3994561789009759, "bn1": 0.3963293484975248,
                "conv2": 0.4051856795724714, "bn2": 0.4051856795724714, "conv3": 0.4051856795724714,
                "bn3": 0.4051856795724714, "features": 0.4354472219114884}
    assert by_layer == pytest.approx(expected, rel=1e-6), by_layer
    assert result["sizes"] == list(range(-1, 7))
    assert result["config"]["n_samples"] == 1437
    assert "run_dir" not in result  # no files without out=
    assert result["config"]["svd"] == "exact"
