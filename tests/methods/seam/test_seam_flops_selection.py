"""SeaM spec §9 checks 8 (FLOP golden totals) and 11 (the selection-rule table)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxnets.methods.seam import core, flops
from jaxnets.methods.seam.selection import Selector
from jaxnets.models.api import abstract_variables, init_variables
from jaxnets.models.registry import get_spec


@pytest.mark.parametrize("name,classes,k,size,total", [
    ("resnet20_b", 10, 2, 32, 41_218_708), ("resnet20_b", 100, 2, 32, 41_224_648),
    ("resnet20_b", 100, 5, 32, 41_224_948), ("vgg16_bn_cifar", 10, 2, 32, 314_278_932),
    ("vgg16_bn_cifar", 100, 2, 32, 314_325_192), ("resnet50", 1000, 13, 224, 4_111_525_576),
    ("densenet121", 1000, 13, 224, 2_865_559_752), ("mixer_b16", 1000, 13, 224, 12_620_596_936),
])
def test_seam_flops_golden_dense(name: str, classes: int, k: int, size: int, total: int) -> None:
    spec = get_spec(name)
    module = spec.create(classes)
    out = flops.count_flops(module, abstract_variables(spec, module), (1, size, size, 3), head_shape=(classes, k))
    assert out["flops_dense"] == total
    assert out["flops_sparse"] == total  # every weight kept


def test_seam_flops_breakdown_and_all_masked() -> None:
    spec = get_spec("resnet20_b")
    module = spec.create(100)
    variables = init_variables(spec, module, seed=0)
    scores = core.init_scores(variables["params"])
    out = flops.count_flops(module, variables, (1, 32, 32, 3), scores=scores, head_shape=(100, 5))
    assert out["dense_breakdown"] == {"conv": 40_812_544, "linear": 6_400, "bn": 401_408, "ln": 0,
                                      "pool": 4_096, "head": 500}
    assert out["flops_sparse"] == out["flops_dense"] == 41_224_948
    dropped = jax.tree_util.tree_map(lambda s: -s, scores)
    out = flops.count_flops(module, variables, (1, 32, 32, 3), scores=dropped, head_shape=(100, 5))
    assert out["flops_sparse"] == 401_408 + 4_096 + 500 == 406_004
    assert out["flops_dense"] == 41_224_948
    # Half of the stem kept: its sparse conv term is nnz · H_out · W_out.
    half = jax.tree_util.tree_map(lambda s: s, dropped)
    k = np.asarray(scores["conv1"]["kernel"]).copy()
    k.reshape(-1)[: k.size // 2] = -1.0
    half["conv1"]["kernel"] = k
    out = flops.count_flops(module, variables, (1, 32, 32, 3), scores=half, head_shape=(100, 5))
    assert out["flops_sparse"] == 406_004 + (k.size - k.size // 2) * 32 * 32


def test_seam_selection_table() -> None:
    sel = Selector(acc_pre=0.90, early_stop=2)
    seq = [(0.85, 0.50), (0.91, 0.40), (0.95, 0.4005), (0.80, 0.30), (0.92, 0.3999), (0.93, 0.3999)]
    events = [sel.update(e, a, r) for e, (a, r) in enumerate(seq)]
    assert [d.record_best for d in events] == [False, True, False, False, True, True]
    assert events[0].event == "before-threshold"
    assert events[1].event == "best-reset" and events[2].event == "skip"
    assert events[3].event == "below" and sel.log[3].stop is False
    assert events[4].event == "best-reset" and events[5].event == "best"
    assert sel.counter == 0
    assert sel.best_epoch == 5 and sel.bak_epoch == 2
    d6 = sel.update(6, 0.5, 0.2)
    assert sel.counter == 1 and not d6.stop
    d7 = sel.update(7, 0.5, 0.2)
    assert sel.counter == 2 and d7.stop
    assert sel.chosen_epoch == 5 and not sel.used_fallback


def test_seam_selection_fallback_when_never_reached() -> None:
    sel = Selector(acc_pre=0.99)
    for e, (a, r) in enumerate([(0.5, 0.9), (0.7, 0.5), (0.6, 0.1)]):
        sel.update(e, a, r)
    assert sel.used_fallback and sel.chosen_epoch == 2  # largest acc − r = 0.5


def test_seam_selector_round_trips_through_arrays_exactly() -> None:
    """A selector stored as arrays (what a checkpoint holds) and rebuilt decides exactly as the one
    that never left memory: float64 bits, so ties such as acc == best_acc still tie."""
    seq = [(0.85, 0.5), (2 / 3 + 0.3, 0.41), (2 / 3 + 0.3, 0.41), (0.8, 0.3), (0.97, 0.1 + 0.2), (0.5, 0.2),
           (0.5, 0.2)]
    whole = Selector(acc_pre=0.9, early_stop=2)
    expected = [whole.update(e, a, r) for e, (a, r) in enumerate(seq)]
    assert [d.event for d in expected] == ["before-threshold", "best-reset", "skip", "below", "best-reset",
                                           "below", "below"] and expected[-1].stop
    resumed = Selector(acc_pre=0.9, early_stop=2)
    decisions = []
    for e, (a, r) in enumerate(seq):
        arrays = resumed.to_arrays()
        assert all(v.dtype in (np.uint32, np.int32, np.bool_) for v in arrays.values())
        resumed = Selector.from_arrays(arrays, acc_pre=0.9, early_stop=2)  # as after every checkpoint
        decisions.append(resumed.update(e, a, r))
    assert [(d.event, d.record_best, d.record_bak, d.stop) for d in decisions] == \
        [(d.event, d.record_best, d.record_bak, d.stop) for d in expected]
    fresh = Selector.from_arrays(Selector(acc_pre=0.9).to_arrays(), acc_pre=0.9)
    assert fresh.best_epoch is None and fresh.bak_epoch is None and fresh.bak_value == -np.inf
    assert (resumed.best_epoch, resumed.best_acc, resumed.best_r) == (whole.best_epoch, whole.best_acc, whole.best_r)
    assert resumed.chosen == whole.chosen == (4, 0.97, 0.1 + 0.2)
