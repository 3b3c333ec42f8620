"""Sparsity Probe: the plain runner the demo calls (digits_cnn on digits, all its layers)."""

from __future__ import annotations


def test_probe_plain_runner_digits_cnn_all_layers() -> None:
    """What the demo calls: every default layer of digits_cnn on digits, alpha per layer."""
    from jaxnets.methods.probe import probe

    result = probe("digits_cnn", "digits")
    by_layer = result["alpha_by_layer"]
    assert list(by_layer) == ["input", "conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "features"]
    assert all(isinstance(a, float) and 0 < a < 2.9 for a in by_layer.values()), by_layer
    assert result["sizes"] == list(range(-1, 7))
    assert result["config"]["n_samples"] == 1437
    assert "run_dir" not in result  # no files without out=
    assert result["config"]["svd"] == "exact"
