"""``.npz`` checkpoints whose keys are slash-joined Flax paths (e.g. the MLP-Mixer release)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxnets.errors import CheckpointError


def load_npz_state(path: str | Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{path}: cannot read .npz ({exc})") from None


def save_npz_state(path: str | Path, state: dict[str, np.ndarray]) -> None:
    np.savez(path, **state)
