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
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the kill harness
from kill_harness import prepare_script, stall_fit_at  # noqa: E402

prepare_script()

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

    stall_fit_at(run_dir, args.stall_at)
    train, test = open_split("digits", "train"), open_split("digits", "test")
    model = load("digits_cnn", args.weights, data=test)
    result = reengineer(model, train, CONFIG, run_dir, test_data=test, resume=args.resume)
    print("chosen_epoch", result.summary["epoch"], "resumed_from", result.summary["resumed_from"])


if __name__ == "__main__":
    main()
