"""SeaM spec §9 checks 10 (schedule), 12 (frozen backbone) and 14 (α monotonicity, toy MLP)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnets.data.loader import Loader
from jaxnets.data.sources import ArraySource
from jaxnets.methods.seam import targets
from jaxnets.methods.seam.config import ReengineerConfig
from jaxnets.methods.seam.runner import original_accuracy
from jaxnets.methods.seam.training import train_masks


class ToyMLP(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(32, name="fc1")(x))
        return nn.Dense(self.num_classes, name="fc2")(x)


def _blobs(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centres = rng.uniform(40, 215, size=(10, 8))
    r = np.random.default_rng(seed)
    x = np.concatenate([c + r.normal(0, 6, size=(n_per, 8)) for c in centres])
    y = np.repeat(np.arange(10), n_per)
    perm = r.permutation(len(y))
    return np.clip(x[perm], 0, 255).astype(np.uint8).reshape(-1, 2, 2, 2), y[perm]


@pytest.fixture(scope="module")
def toy() -> dict:
    import optax

    xtr, ytr = _blobs(60, 1)
    xte, yte = _blobs(20, 2)
    module = ToyMLP()
    params = module.init(jax.random.key(0), jnp.zeros((1, 2, 2, 2)))["params"]
    norm = ((0.5, 0.5), (0.2, 0.2))
    tx = optax.adam(1e-2)
    st = tx.init(params)
    xs = (jnp.asarray(xtr, jnp.float32) / 255 - 0.5) / 0.2

    @jax.jit
    def step(p, s):
        def loss(p):
            logits = module.apply({"params": p}, xs)
            return optax.softmax_cross_entropy_with_integer_labels(logits, ytr).mean()

        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    for _ in range(300):
        params, st = step(params, st)
    variables = {"params": params}
    t = targets.parse_target("binary:0", 10)
    mk = lambda x, y, split: ArraySource(x, y, name="blobs", split=split, class_names=[str(i) for i in range(10)])
    tr, _ = targets.target_sources(mk(xtr, ytr, "train"), t)
    te, te_orig = targets.target_sources(mk(xte, yte, "test"), t)
    train_l = Loader(tr, 16, shuffle=True, seed=0, drop_last=False, pad_last=True, prefetch=0)
    test_l = Loader(te, 64, shuffle=False, pad_last=True, prefetch=0)
    acc_pre = original_accuracy(module, variables, Loader(te_orig, 64, shuffle=False, prefetch=0), norm, t)
    return {"module": module, "variables": variables, "train": train_l, "test": test_l, "norm": norm,
            "acc_pre": acc_pre}


def _run(toy: dict, epochs: int, alpha: float, **kw) -> object:
    cfg = ReengineerConfig(lr_head=0.1, lr_mask=0.1, alpha=alpha, epochs=epochs, seed=0, **kw)
    return train_masks(toy["module"], toy["variables"], toy["train"], toy["test"], num_classes=10,
                      num_targets=2, normalize=toy["norm"], acc_pre=toy["acc_pre"], cfg=cfg)


def test_seam_schedule_and_frozen_backbone(toy: dict) -> None:
    before = jax.tree_util.tree_map(lambda a: np.array(a, copy=True), toy["variables"])
    res1 = _run(toy, 1, 1.0)  # epoch 0 only: head-only
    for leaf in jax.tree_util.tree_leaves(res1.final_scores):
        np.testing.assert_array_equal(leaf, 1.0)  # scores untouched
    count = lambda st: int(jax.tree_util.tree_leaves(st)[0])  # adam count is the first leaf
    assert count(res1.opt_states["head"]) == len(toy["train"])
    assert count(res1.opt_states["joint"]) == 0
    res6 = _run(toy, 6, 1.0)  # epochs 0 and 5 head-only, 1..4 joint
    steps = len(toy["train"])
    assert count(res6.opt_states["head"]) == 2 * steps
    assert count(res6.opt_states["joint"]) == 4 * steps
    res5 = _run(toy, 5, 1.0)
    # epoch 5 (head-only) leaves the scores where epoch 4 left them; the head moves.
    for a, b in zip(jax.tree_util.tree_leaves(res5.final_scores), jax.tree_util.tree_leaves(res6.final_scores),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(res5.final_head),
                                                        jax.tree_util.tree_leaves(res6.final_head), strict=True))
    assert any(not np.array_equal(a, 1.0) for a in jax.tree_util.tree_leaves(res6.final_scores))
    # frozen backbone: bitwise the input
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(toy["variables"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_seam_alpha_monotonicity(toy: dict) -> None:
    rows = {}
    for alpha in (0.0, 0.5, 2.0, 8.0):
        res = _run(toy, 30, alpha)
        rows[alpha] = (res.history[-1]["retention"], res)
    final = [rows[a][0] for a in (0.0, 0.5, 2.0, 8.0)]
    assert all(final[i] >= final[i + 1] for i in range(3)), final
    assert final[0] > 0.95  # α = 0: (almost) everything kept
    assert rows[0.0][1].acc >= toy["acc_pre"] - 1e-9 or rows[0.0][1].acc >= 0.95
    assert final[-1] < final[0]
    # whatever collapse happens at large α, the returned snapshot is a selected one (best or bak)
    big = rows[8.0][1]
    assert big.epoch in {d.epoch for d in big.selector.log if d.record_best or d.record_bak}


def test_seam_bf16_compute() -> None:
    """``precision="bf16"`` computes the masked forward/backward in bfloat16 (scores, head and the
    frozen weights stay float32); on CPU ``auto`` is fp32, bit for bit."""
    from jaxnets.data.spec import open_source
    from jaxnets.models.api import init_variables
    from jaxnets.models.registry import NORMALIZATIONS, get_spec

    spec = get_spec("digits_cnn")
    module = spec.create()
    variables = init_variables(spec, module, 0)
    target = targets.parse_target("binary:3,8", 10)
    train, _ = targets.target_sources(open_source("digits", "train"), target, 64)
    test, _ = targets.target_sources(open_source("digits", "test"), target, 64)

    def run(precision: str) -> object:
        cfg = ReengineerConfig(lr_head=0.1, lr_mask=0.01, alpha=1.0, epochs=2, seed=0, precision=precision)
        train_l = Loader(train, 64, shuffle=True, seed=0, drop_last=False, pad_last=True, prefetch=0)
        test_l = Loader(test, 64, shuffle=False, pad_last=True, prefetch=0)
        return train_masks(module, variables, train_l, test_l, num_classes=10, num_targets=2,
                           normalize=NORMALIZATIONS["digits"], acc_pre=0.5, cfg=cfg)

    fp32, bf16 = run("fp32"), run("bf16")
    leaves = lambda r: jax.tree_util.tree_leaves(r.final_scores)  # noqa: E731
    assert all(a.dtype == np.float32 for a in leaves(bf16))
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(fp32), leaves(bf16), strict=True))
    for a, b in zip(fp32.history, bf16.history, strict=True):
        assert a["train_loss"] != b["train_loss"] and abs(a["train_loss"] - b["train_loss"]) < 1e-2
    if jax.default_backend() == "cpu":
        auto = run("auto")
        assert all(np.array_equal(a, b) for a, b in zip(leaves(fp32), leaves(auto), strict=True))
