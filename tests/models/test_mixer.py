"""MLP-Mixer: official .npz layout in and out, parameter counts, parity with a torch reference."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jaxnets.converters.convert import flatten_tree, variables_to_state_dict  # noqa: E402
from jaxnets.converters.npz import load_npz_state, save_npz_state  # noqa: E402
from parity import randomize_bn_stats  # noqa: E402
from reference.torch_mixer import MixerRef, mixer_tiny_ref, official_state  # noqa: E402

from jaxnets.errors import CheckpointError  # noqa: E402
from jaxnets.models.api import (  # noqa: E402
    abstract_variables,
    apply_with_intermediates,
    count_params,
    load_weights,
)
from jaxnets.models.registry import get_spec  # noqa: E402

# Mixer-B/16 at 224 px, 1000 classes, derived from the architecture:
#   stem 16·16·3·768 + 768                                   =    590,592
#   per block: 2 LayerNorms 2·2·768                           =      3,072
#              token MLP 196·384+384 + 384·196+196            =    151,108
#              channel MLP 768·3072+3072 + 3072·768+768       =  4,722,432
#              → 4,876,612 × 12                               = 58,519,344
#   pre-head LayerNorm 2·768                                  =      1,536
#   head 768·1000 + 1000                                      =    769,000
MIXER_B16_PARAMS = 59_880_472
# SeaM's masked-weight count N for Mixer-B/16 (every conv/linear weight and bias, no LayerNorm;
# specs/seam.md §2.2): the total minus 25 LayerNorms of 2·768.
SEAM_MIXER_N = 59_842_072


def _official_keys(blocks: int) -> set[str]:
    keys = {"stem/kernel", "stem/bias", "pre_head_layer_norm/scale", "pre_head_layer_norm/bias",
            "head/kernel", "head/bias"}
    for i in range(blocks):
        for mlp in ("token_mixing", "channel_mixing"):
            for d in (0, 1):
                keys |= {f"MixerBlock_{i}/{mlp}/Dense_{d}/kernel",
                         f"MixerBlock_{i}/{mlp}/Dense_{d}/bias"}
        for ln in (0, 1):
            keys |= {f"MixerBlock_{i}/LayerNorm_{ln}/scale", f"MixerBlock_{i}/LayerNorm_{ln}/bias"}
    return keys


def _randomized(ref: MixerRef, seed: int = 0, gain: float = 1.0) -> MixerRef:
    """Weights N(0, gain²/fan_in), biases N(0, 0.1²), random LayerNorm affines.

    torch's default init (U(±1/√fan_in)) shrinks the logits to ~0.1, where an atol of 1e-4
    would say little; unit-variance weights keep every layer and the logits O(1).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                std = gain / m.weight[0].numel() ** 0.5
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    randomize_bn_stats(ref, seed)  # LayerNorm affine parameters too, so their mapping shows
    return ref.eval()


def _save_official(ref: MixerRef, path: Path) -> dict[str, np.ndarray]:
    state = official_state(ref)
    save_npz_state(path, state)
    return state


def _torch_logits(ref: MixerRef, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _input(spec, batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(spec.input_shape(batch)).astype(np.float32)


def test_mixer_b16_param_count() -> None:
    spec = get_spec("mixer_b16")
    target = abstract_variables(spec, spec.create())
    assert set(target) == {"params"}
    assert count_params(target) == MIXER_B16_PARAMS
    assert sum(p.numel() for p in MixerRef().parameters()) == MIXER_B16_PARAMS
    ln = sum(int(np.prod(v.shape)) for k, v in flatten_tree(target["params"]).items()
             if "LayerNorm" in k[-2] or k[0] == "pre_head_layer_norm")
    assert MIXER_B16_PARAMS - ln == SEAM_MIXER_N


def test_mixer_b16_names_and_shapes_are_the_official_npz_layout() -> None:
    spec = get_spec("mixer_b16")
    flat = {"/".join(k): v.shape for k, v in
            flatten_tree(abstract_variables(spec, spec.create())["params"]).items()}
    assert set(flat) == _official_keys(12)
    assert flat["stem/kernel"] == (16, 16, 3, 768)
    assert flat["MixerBlock_0/token_mixing/Dense_0/kernel"] == (196, 384)
    assert flat["MixerBlock_11/channel_mixing/Dense_1/kernel"] == (3072, 768)
    assert flat["head/kernel"] == (768, 1000)
    assert spec.keymap.source_layout == "flax" and spec.normalization == "mixer"


def test_mixer_tiny_parity_and_features(tmp_path: Path) -> None:
    spec = get_spec("mixer_tiny")
    module = spec.create()
    ref = _randomized(mixer_tiny_ref())
    assert count_params(abstract_variables(spec, module)) == sum(
        p.numel() for p in ref.parameters())
    state = _save_official(ref, tmp_path / "tiny.npz")
    assert set(state) == _official_keys(2)
    variables = load_weights(spec, module, tmp_path / "tiny.npz")
    x = _input(spec, 3)
    logits, inter = apply_with_intermediates(module, variables, x, ["features", "MixerBlock_1"])
    want = _torch_logits(ref, x)
    np.testing.assert_allclose(np.asarray(logits), want, atol=1e-4, rtol=0)
    with torch.no_grad():
        want_features = ref.features(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(np.asarray(inter["features"]), want_features, atol=1e-4, rtol=0)
    assert inter["MixerBlock_1"].shape == (3, 64, 64)  # (batch, tokens, hidden)


def test_mixer_exact_gelu_matters(tmp_path: Path) -> None:
    # The same weights in a tanh-GELU torch twin: the jaxnets Mixer (exact erf GELU) must miss
    # the 1e-4 parity, so the parity test above really pins the GELU variant.
    spec = get_spec("mixer_tiny")
    module = spec.create()
    exact = _randomized(mixer_tiny_ref(), gain=2.0)  # wide pre-activations, where GELUs differ
    tanh = mixer_tiny_ref(approximate="tanh")
    tanh.load_state_dict(exact.state_dict())
    tanh.eval()
    _save_official(exact, tmp_path / "tiny.npz")
    variables = load_weights(spec, module, tmp_path / "tiny.npz")
    x = _input(spec, 3)
    got = np.asarray(jax.jit(module.apply)(variables, x))
    exact_err = np.abs(got - _torch_logits(exact, x)).max()
    tanh_err = np.abs(got - _torch_logits(tanh, x)).max()
    # Seen: exact ≈ 3e-7, tanh ≈ 1.8e-4 (logits ~1.5): tanh fails the 1e-4 check by far more
    # than float32 noise.
    assert exact_err < 1e-5
    assert tanh_err > 1e-4 and tanh_err > 100 * exact_err


def test_mixer_export_round_trip(tmp_path: Path) -> None:
    spec = get_spec("mixer_tiny")
    module = spec.create()
    state = _save_official(_randomized(mixer_tiny_ref(), seed=3), tmp_path / "in.npz")
    variables = load_weights(spec, module, tmp_path / "in.npz")
    exported = variables_to_state_dict(variables, spec.keymap)
    assert set(exported) == set(state)
    for key, value in state.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)
    save_npz_state(tmp_path / "out.npz", exported)
    again = load_npz_state(tmp_path / "out.npz")
    assert set(again) == set(state)
    reloaded = load_weights(spec, module, tmp_path / "out.npz")
    for (pa, a), (pb, b) in zip(flatten_tree(variables).items(), flatten_tree(reloaded).items(),
                                strict=True):
        assert pa == pb
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mixer_npz_strictness(tmp_path: Path) -> None:
    spec = get_spec("mixer_tiny")
    state = official_state(_randomized(mixer_tiny_ref()))
    del state["MixerBlock_1/LayerNorm_0/scale"]
    state["MixerBlock_2/LayerNorm_0/scale"] = np.ones(64, np.float32)
    save_npz_state(tmp_path / "bad.npz", state)
    with pytest.raises(CheckpointError, match=r"MixerBlock_1/LayerNorm_0/scale") as info:
        load_weights(spec, spec.create(), tmp_path / "bad.npz")
    assert "MixerBlock_2/LayerNorm_0/scale" in str(info.value)
    # A Mixer-B/16-shaped tree does not fit the tiny model either.
    wrong = official_state(_randomized(mixer_tiny_ref()))
    wrong["stem/kernel"] = np.zeros((16, 16, 3, 64), np.float32)
    save_npz_state(tmp_path / "wrong.npz", wrong)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_weights(spec, spec.create(), tmp_path / "wrong.npz")


@pytest.mark.slow
def test_mixer_b16_parity_224(tmp_path: Path) -> None:
    spec = get_spec("mixer_b16")
    module = spec.create()
    ref = _randomized(MixerRef())
    _save_official(ref, tmp_path / "b16.npz")
    variables = load_weights(spec, module, tmp_path / "b16.npz")
    x = _input(spec, 1)
    got = np.asarray(jax.jit(module.apply)(variables, x))
    np.testing.assert_allclose(got, _torch_logits(ref, x), atol=1e-4, rtol=0)
