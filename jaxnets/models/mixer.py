"""MLP-Mixer (Tolstikhin et al. 2021) with the parameter names of Google's official ``.npz``.

The released checkpoints (``Mixer-B_16.npz``) are Flax trees flattened to slash keys —
``stem/kernel`` (HWIO), ``MixerBlock_{i}/token_mixing/Dense_{0,1}/{kernel,bias}``,
``MixerBlock_{i}/channel_mixing/Dense_{0,1}/…``, ``MixerBlock_{i}/LayerNorm_{0,1}/{scale,bias}``,
``pre_head_layer_norm/…``, ``head/…`` — so the submodules here carry exactly those names and the
key map is ``source_layout="flax"`` (keys are split on "/" and used as they are, both ways).

Numerics that matter for parity with the SeaM fork (specs/seam.md §5.3): exact erf GELU (Flax's
``nn.gelu`` defaults to the tanh approximation, 1.5e-4 off at x = 1) and LayerNorm eps 1e-6.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxnets.converters.keymaps import KeyMap
from jaxnets.converters.namings import MIXER_TIMM
from jaxnets.models.layers import ImplModule, conv
from jaxnets.models.registry import ModelSpec

MIXER_KEYMAP = KeyMap(source_layout="flax", native="official", namings=(MIXER_TIMM,))

_LN_EPS = 1e-6


class MlpBlock(nn.Module):
    """Dense → exact GELU → Dense back to the input width (``Dense_0``, ``Dense_1``)."""

    mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        width = x.shape[-1]
        y = nn.Dense(self.mlp_dim, dtype=self.dtype, name="Dense_0")(x)
        y = nn.gelu(y, approximate=False)
        return nn.Dense(width, dtype=self.dtype, name="Dense_1")(y)


class MixerBlock(nn.Module):
    """``x += TokenMLP(LN0(x)ᵀ)ᵀ``; ``x += ChannelMLP(LN1(x))`` on (N, tokens, channels)."""

    tokens_mlp_dim: int
    channels_mlp_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="LayerNorm_0")(x)
        # Token mixing acts along the token axis: swap it last, mix, swap back.
        y = jnp.swapaxes(y, 1, 2)
        y = MlpBlock(self.tokens_mlp_dim, self.dtype, name="token_mixing")(y)
        x = x + jnp.swapaxes(y, 1, 2)
        y = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="LayerNorm_1")(x)
        return x + MlpBlock(self.channels_mlp_dim, self.dtype, name="channel_mixing")(y)


class MlpMixer(ImplModule):
    patch_size: int = 16
    hidden_dim: int = 768
    num_blocks: int = 12
    tokens_mlp_dim: int = 384
    channels_mlp_dim: int = 3072
    num_classes: int = 1000
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        del train  # no dropout or batch statistics in the released Mixer
        p = self.patch_size
        # Non-overlapping patches: a p×p stride-p conv with bias, no padding (explicit, not SAME).
        x = conv(self.hidden_dim, p, p, 0, bias=True, name="stem", dtype=self.dtype,
                 kernel_init=nn.initializers.lecun_normal(), impl=self.conv_impl)(x)
        n, h, w, c = x.shape
        # Row-major (h, w) token order, the same as torch's NCHW ``flatten(2)``.
        x = x.reshape(n, h * w, c)
        for i in range(self.num_blocks):
            x = MixerBlock(self.tokens_mlp_dim, self.channels_mlp_dim, self.dtype,
                           name=f"MixerBlock_{i}")(x)
        x = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="pre_head_layer_norm")(x)
        features = jnp.mean(x, axis=1)
        self.sow("intermediates", "features", features)
        # The official head starts at zero (fine-tuning convention of the release).
        return nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.zeros,
                        name="head")(features)


SPECS = [
    ModelSpec(
        name="mixer_b16",
        family="mixer",
        build=functools.partial(MlpMixer, patch_size=16, hidden_dim=768, num_blocks=12,
                            tokens_mlp_dim=384, channels_mlp_dim=3072),
        input_size=224,
        min_input_size=16,  # one 16×16 patch (token); a smaller image has none
        fixed_input_size=True,  # the token-mixing MLPs are sized by the number of patches
        num_classes=1000,
        # The checkpoint's own pipeline scales to [-1, 1]. The SeaM fork fed ImageNet mean/std
        # instead (specs/seam.md §7 pitfall 15): a faithful SeaM run asks for "imagenet".
        normalization="mixer",
        keymap=MIXER_KEYMAP,
        head="head",
        description="MLP-Mixer-B/16, ImageNet-1k (official Mixer-B_16.npz layout)",
        aliases=("mlpmixer", "mixer_b16_imagenet"),
        extra={"seam_fork_normalization": "imagenet", "patch_size": 16},
    ),
    ModelSpec(
        name="mixer_tiny",
        family="mixer",
        build=functools.partial(MlpMixer, patch_size=4, hidden_dim=64, num_blocks=2,
                            tokens_mlp_dim=32, channels_mlp_dim=128),
        input_size=32,
        min_input_size=4,  # one 4×4 patch (token); a smaller image has none
        fixed_input_size=True,  # the token-mixing MLPs are sized by the number of patches
        num_classes=10,
        normalization="mixer",
        keymap=MIXER_KEYMAP,
        head="head",
        description="tiny MLP-Mixer for tests: 32 px, patch 4, hidden 64, 2 blocks",
        extra={"patch_size": 4},
    ),
]
