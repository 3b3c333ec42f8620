"""A plain torch.nn MLP-Mixer, and its export to the official ``.npz`` key layout.

The attribute names here are deliberately torch-flavoured (``blocks.0.norm1``, ``fc_a``), not the
checkpoint's: :func:`official_state` does the renaming and the layout change (conv OIHW → HWIO,
Linear (out, in) → (in, out)), the way the SeaM fork reads Google's release in reverse.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LN_EPS = 1e-6


class MlpRef(nn.Module):
    def __init__(self, width: int, mlp_dim: int, approximate: str = "none"):
        super().__init__()
        self.fc_a = nn.Linear(width, mlp_dim)
        self.act = nn.GELU(approximate=approximate)
        self.fc_b = nn.Linear(mlp_dim, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_b(self.act(self.fc_a(x)))


class BlockRef(nn.Module):
    def __init__(self, tokens: int, hidden: int, tokens_mlp: int, channels_mlp: int,
                 approximate: str = "none"):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.token_mlp = MlpRef(tokens, tokens_mlp, approximate)
        self.norm2 = nn.LayerNorm(hidden, eps=LN_EPS)
        self.channel_mlp = MlpRef(hidden, channels_mlp, approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, tokens, hidden)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MixerRef(nn.Module):
    def __init__(self, image_size: int = 224, patch: int = 16, hidden: int = 768,
                 blocks: int = 12, tokens_mlp: int = 384, channels_mlp: int = 3072,
                 num_classes: int = 1000, in_channels: int = 3, approximate: str = "none"):
        super().__init__()
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, hidden, patch, patch)
        self.blocks = nn.ModuleList(
            BlockRef(tokens, hidden, tokens_mlp, channels_mlp, approximate) for _ in range(blocks)
        )
        self.norm = nn.LayerNorm(hidden, eps=LN_EPS)
        self.head = nn.Linear(hidden, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (N, H*W, hidden), row-major tokens
        for block in self.blocks:
            x = block(x)
        return self.norm(x).mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def mixer_tiny_ref(**kwargs) -> MixerRef:
    """The torch twin of jaxnets' ``mixer_tiny``."""
    return MixerRef(image_size=32, patch=4, hidden=64, blocks=2, tokens_mlp=32, channels_mlp=128,
                    num_classes=10, **kwargs)


def official_state(model: MixerRef) -> dict[str, np.ndarray]:
    """The model's weights under the official Mixer ``.npz`` keys, in Flax layout."""
    def t(p: torch.Tensor) -> np.ndarray:
        return p.detach().cpu().numpy().astype(np.float32)

    def dense(prefix: str, lin: nn.Linear) -> dict[str, np.ndarray]:
        return {f"{prefix}/kernel": t(lin.weight).T.copy(), f"{prefix}/bias": t(lin.bias)}

    def norm(prefix: str, ln: nn.LayerNorm) -> dict[str, np.ndarray]:
        return {f"{prefix}/scale": t(ln.weight), f"{prefix}/bias": t(ln.bias)}

    out = {
        "stem/kernel": t(model.patch_embed.weight).transpose(2, 3, 1, 0).copy(),
        "stem/bias": t(model.patch_embed.bias),
    }
    for i, block in enumerate(model.blocks):
        b = f"MixerBlock_{i}"
        out |= norm(f"{b}/LayerNorm_0", block.norm1)
        out |= dense(f"{b}/token_mixing/Dense_0", block.token_mlp.fc_a)
        out |= dense(f"{b}/token_mixing/Dense_1", block.token_mlp.fc_b)
        out |= norm(f"{b}/LayerNorm_1", block.norm2)
        out |= dense(f"{b}/channel_mixing/Dense_0", block.channel_mlp.fc_a)
        out |= dense(f"{b}/channel_mixing/Dense_1", block.channel_mlp.fc_b)
    out |= norm("pre_head_layer_norm", model.norm)
    out |= dense("head", model.head)
    return out
