"""Benchmark: one SeaM re-engineering epoch (ResNet-20, binary CIFAR-10-sized batches of 64),
jaxnets vs a PyTorch reference of the masked layers (spec §2.3: W ⊙ STE(S), clipped-gradient
STE, CE + α·R with a second STE, two Adam optimisers), on the same machine and threads.

    python scripts/bench_seam.py --limit 640 [--record]

Synthetic uint8 images (the timing does not depend on pixel values); random weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import bench_common as bc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=640, help="training images of the epoch (batch 64)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    args = ap.parse_args()
    threads = bc.pin_threads(args.threads)
    import jax
    import numpy as np

    from jaxnets.methods.seam import core
    from jaxnets.methods.seam.reengineer import Engine, SeamConfig
    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec

    steps = max(1, args.limit // 64)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(steps, 64, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=(steps, 64)).astype(np.int32)
    valid = np.ones(64, bool)
    spec = get_spec("resnet20_b")
    module = spec.create(10)
    variables = init_variables(spec, module, 0)
    cfg = SeamConfig(lr_head=0.1, lr_mask=0.05, alpha=1.0)
    scores = core.init_scores(variables["params"])
    head_mod, head = core.init_head(10, 2, 0)
    eng = Engine(module, head_mod, NORMALIZATIONS["cifar_std"], cfg, core.num_entries(scores))
    state = {"t": {"scores": scores, "head": head}}
    state["o"] = eng.opt_joint.init(state["t"])
    params, bs = variables["params"], variables["batch_stats"]

    def jax_epoch() -> object:
        for i in range(steps):
            state["t"], state["o"], m = eng.step_joint(state["t"], state["o"], params, bs, images[i],
                                                       labels[i], valid, jax.random.key(i))
        return m["loss"]

    t_jax = bc.measure(jax_epoch, jax.block_until_ready, items=steps * 64, repeats=3, warmup=1, steps=1)

    import torch
    from reference.torch_cifar_resnet import resnet20_b

    bc.set_torch_threads(threads)
    net = resnet20_b(10).eval()  # BN frozen (eval statistics), as in SeaM
    for p in net.parameters():
        p.requires_grad_(False)

    class STE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s):  # noqa: ANN001, ANN205
            return (s > 0).float()

        @staticmethod
        def backward(ctx, g):  # noqa: ANN001, ANN205
            return g.clamp(-1, 1)

    masked = {n: p for n, p in net.named_parameters() if ("conv" in n or "downsample.0" in n or n.startswith("fc"))}
    t_scores = {n: torch.ones_like(p, requires_grad=True) for n, p in masked.items()}
    t_head = torch.nn.Linear(10, 2)
    n_total = sum(s.numel() for s in t_scores.values())
    opt = torch.optim.Adam([{"params": list(t_scores.values()), "lr": 0.05},
                            {"params": list(t_head.parameters()), "lr": 0.1}])
    mean = torch.tensor(NORMALIZATIONS["cifar_std"][0]).view(1, 3, 1, 1)
    std = torch.tensor(NORMALIZATIONS["cifar_std"][1]).view(1, 3, 1, 1)
    t_images = [(torch.from_numpy(b).permute(0, 3, 1, 2).float() / 255 - mean) / std for b in images]
    t_labels = [torch.from_numpy(b).long() for b in labels]

    def torch_epoch() -> float:
        loss = None
        for i in range(steps):
            eff = {n: masked[n] * STE.apply(t_scores[n]) for n in masked}
            logits = torch.func.functional_call(net, eff, (t_images[i],))
            ce = torch.nn.functional.cross_entropy(t_head(torch.relu(logits)), t_labels[i])
            r = torch.cat([STE.apply(s).flatten() for s in t_scores.values()]).sum() / n_total
            loss = ce + 1.0 * r
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss)

    t_torch = bc.measure(torch_epoch, lambda x: x, items=steps * 64, repeats=3, warmup=1, steps=1)
    row = bc.MethodRow("SeaM", "re-engineering epoch (head+mask)", f"ResNet-20, {steps} × 64 images",
                       t_jax.median_step_s, t_torch.median_step_s,
                       notes=f"other load {t_jax.other_load or 0:.1f} / {t_torch.other_load or 0:.1f} cores")
    lines = bc.header_lines(threads)
    print("\n".join(lines))
    print(bc.markdown_table(bc.METHOD_HEADERS, [row.cells()]))
    if args.record:
        bc.append_method_table("SeaM: one re-engineering epoch", [row], header=lines)


if __name__ == "__main__":
    main()
