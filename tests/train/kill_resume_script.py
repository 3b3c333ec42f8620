"""A tiny training run for the SIGKILL test (run as a subprocess, not collected by pytest).

usage: python kill_resume_script.py RUN_DIR [--stall-at STEP] [--resume auto]

Trains digits_cnn on scikit-learn's digits (shuffled, seeded, random flips) for 2 epochs with
a checkpoint every 5 steps and writes the final params to RUN_DIR/final.npz. With
``--stall-at N`` it writes RUN_DIR/stalled after global step N and sleeps, waiting to be killed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the kill harness
from kill_harness import prepare_script  # noqa: E402

prepare_script()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxnets.data import DigitsSource, Loader  # noqa: E402
from jaxnets.models.api import init_variables  # noqa: E402
from jaxnets.models.registry import NORMALIZATIONS, get_spec  # noqa: E402
from jaxnets.train import TrainState, fit, make_train_step  # noqa: E402
from jaxnets.transforms.names import flatten  # noqa: E402


def flip(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rows = rng.random(batch.shape[0]) < 0.5
    out = batch.copy()
    out[rows] = out[rows, :, ::-1]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--stall-at", type=int, default=None)
    ap.add_argument("--resume", default=None)
    args = ap.parse_args()
    run = Path(args.run_dir)

    spec = get_spec("digits_cnn")
    model = spec.create()
    variables = init_variables(spec, model, seed=0)
    tx = optax.chain(optax.add_decayed_weights(1e-4),
                     optax.sgd(optax.cosine_decay_schedule(0.05, 44), momentum=0.9))
    state = TrainState.create(model, variables, tx, seed=0)
    loader = Loader(DigitsSource("train"), 64, shuffle=True, seed=3, augment=flip, prefetch=2)
    step = make_train_step(model, normalize=NORMALIZATIONS["digits"])

    def stall(state, info):
        if args.stall_at is not None and info["global_step"] == args.stall_at:
            (run / "stalled").write_text(str(info))
            sys.stdout.flush()
            time.sleep(600)  # killed here

    result = fit(state, step, loader, epochs=2, run_dir=run, checkpoint_every=5, log_every=4,
                 resume=args.resume, model_name="digits_cnn", on_step=[stall],
                 config={"test": "sigkill"}, tensorboard=False)
    np.savez(run / "final.npz", **{k: np.asarray(v) for k, v in
                                   flatten(jax.device_get(result.state.params)).items()})
    print("resumed_from", result.resumed_from)


if __name__ == "__main__":
    main()
