"""A small WFN run for the SIGKILL test (run as a subprocess, not collected by pytest).

usage: python wfn_kill_script.py RUN_DIR [--stall-at STEP] [--resume auto]

digits_cnn pretrained 2 epochs, then WFN with percentages 0.5,0.9,1.0 and 2 fine-tuning epochs
per later round (22 steps an epoch, a checkpoint every 5 steps). With ``--stall-at N`` it writes
RUN_DIR/stalled after global fine-tuning step N and sleeps, waiting to be killed; the kill
lands inside a round.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the kill harness
from kill_harness import prepare_script, stall_fit_at  # noqa: E402

prepare_script()

from jaxnets.api import load, open_data  # noqa: E402
from jaxnets.methods.wfn import WFNConfig, run  # noqa: E402

CONFIG = WFNConfig(percentages=(0.5, 0.9, 1.0), fixing_epochs=2, lr=1e-3, distance_allowed=0.01,
                   batch_size=64, bn_inc=True, pretrain_epochs=2, checkpoint_every=5, tensorboard=False,
                   plots=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--stall-at", type=int, default=None)
    ap.add_argument("--resume", default=None)
    args = ap.parse_args()
    run_dir = Path(args.run_dir)

    stall_fit_at(run_dir, args.stall_at)
    train, test = open_data("digits", "train"), open_data("digits", "test")
    model = load("digits_cnn", num_classes=train.num_classes, data=train, seed=CONFIG.seed)
    result = run(model, train, CONFIG, run_dir=run_dir, test_data=test, resume=args.resume)
    print("final_accuracy", result.accuracy, "resumed_from_round", result.results["resumed_from_round"])


if __name__ == "__main__":
    main()
