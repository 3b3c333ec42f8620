"""A small SeaM re-engineering for the SIGKILL test (run as a subprocess, not collected by pytest).

usage: python seam_kill_script.py RUN_DIR WEIGHTS [--stall-at STEP] [--resume auto]

digits_cnn (WEIGHTS: a pretrained .pth) re-engineered for binary:3,8 on digits: 285 training
images are 5 steps an epoch (batch 64, the last one padded), at most 8 epochs (0 and 5
head-only), early stop after 4 below-threshold epochs, a checkpoint every 3 steps and at every
epoch end. With ``--stall-at N`` it writes RUN_DIR/stalled
after global step N and sleeps, waiting to be killed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

_CACHE = Path(__file__).resolve().parents[3] / ".jax_cache"
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

import jaxnets.train.loop as loop  # noqa: E402
from jaxnets.api import load  # noqa: E402
from jaxnets.methods.seam import ReengineerConfig, reengineer  # noqa: E402
from jaxnets.methods.seam.loaders import open_split  # noqa: E402

CONFIG = ReengineerConfig(target="binary:3,8", epochs=8, lr_head=0.05, lr_mask=0.1, alpha=0.5, early_stop=4,
                          augment=False, seed=0, checkpoint_every=3, plots=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("weights")
    ap.add_argument("--stall-at", type=int, default=None)
    ap.add_argument("--resume", default=None)
    args = ap.parse_args()
    run_dir = Path(args.run_dir)

    def stall(state, info):
        if args.stall_at is not None and info["global_step"] == args.stall_at:
            (run_dir / "stalled").write_text(str(info))
            sys.stdout.flush()
            time.sleep(600)  # killed here

    fit = loop.fit

    def fit_with_stall(*a, on_step=(), **kw):  # training looks fit up in the module at call time
        return fit(*a, on_step=[*on_step, stall], **kw)

    loop.fit = fit_with_stall
    train, test = open_split("digits", "train"), open_split("digits", "test")
    model = load("digits_cnn", args.weights, data=test)
    result = reengineer(model, train, CONFIG, run_dir, test_data=test, resume=args.resume)
    print("chosen_epoch", result.summary["epoch"], "resumed_from", result.summary["resumed_from"])


if __name__ == "__main__":
    main()
