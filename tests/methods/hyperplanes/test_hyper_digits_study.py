"""The small end-to-end study on digits (`jaxnets train` with snapshots → `projections` at init
and after training → `reinit` grid + heatmap), spec §9 checks 8 and 12–15 on the trained model,
the demo runner, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """digits_cnn trained 6 epochs with snapshots after epochs 3 and 6 (+ init, final)."""
    from jaxnets.train.command import run_train

    out = tmp_path_factory.mktemp("hp_train")
    opts = {
        "model": "digits_cnn", "data": "digits", "epochs": 6, "batch_size": 64, "optimizer": "adam",
        "lr": 0.003, "lr_step": 0, "lr_decay": 0.0, "weight_decay": 0.0, "momentum": 0.9,
        "augmentation": False, "noise": 0.0, "noise_seed": None, "subsample_classes": 0,
        "class_sample_seed": None, "split": 0.0, "stratified": False, "split_seed": None,
        "shuffle": True, "snapshot_every": 3, "snapshot_all_until": 0, "kill_plateaus": False,
        "train_acc": False, "pretrained": None, "evaluate": False, "evaluate_train": False,
        "unnormalize": False, "normalize": None, "num_classes": None, "limit": None, "classes": None,
        "precision": "fp32", "resume": None, "checkpoint_every": None, "out": out, "seed": 0,
        "devices": "1", "config": None, "verbose": 0, "quiet": True,
    }
    run_train(opts)
    return out / "snapshots"


def _projection_schema(doc: dict, with_dist: bool) -> None:  # check 8 (§2.7)
    stages = [k for k in doc if k.isdigit()]
    assert stages and set(doc) == set(stages) | {"net", "arch", "dataset", "seed", "epoch"}
    for s in stages:
        for b, entry in doc[s].items():
            assert b.isdigit()
            keys = {"projections", "mass", "mean"} | ({"l2_dist", "l_inf_dist"} if with_dist else set())
            assert set(entry) == keys
            assert isinstance(entry["projections"], list)
            assert all(isinstance(v, float) for v in entry["projections"])
    assert set(doc["net"]) == {"projections", "mass", "mean"}
    assert isinstance(doc["seed"], str) and isinstance(doc["epoch"], str)


def test_cli_study_on_digits(trained, tmp_path, capsys, monkeypatch):
    snaps = trained
    code, out, err = run_cli(["projections", "digits_cnn", "-w", snaps / "digits_cnn_init_0",
                              "--normalize", "-o", tmp_path / "p0"], capsys, monkeypatch)
    assert code == 0, err
    init = json.loads((tmp_path / "p0" / "digits_cnn_init_0.json").read_text())
    _projection_schema(init, with_dist=False)
    assert init["epoch"] == "0" and init["arch"] == "digits_cnn" and init["dataset"] == "digits"
    code, out, err = run_cli(["projections", "digits_cnn", "-w", snaps / "digits_cnn_final_6",
                              "--init-from", snaps / "digits_cnn_init_0", "--normalize",
                              "-o", tmp_path / "p1"], capsys, monkeypatch)
    assert code == 0, err
    final = json.loads((tmp_path / "p1" / "digits_cnn_final_6.json").read_text())
    _projection_schema(final, with_dist=True)
    assert final["epoch"] == "6"
    assert (tmp_path / "p1" / "digits_cnn_final_6_histograms.png").stat().st_size > 1000
    assert (tmp_path / "p1" / "digits_cnn_final_6_mass.png").stat().st_size > 1000

    def masses(doc):
        return [doc[s][b]["mass"] for s in sorted(k for k in doc if k.isdigit()) for b in sorted(doc[s])]

    # training moves the masses away from 0.5 (mean |mass − 0.5| over layers grows)
    dev = lambda doc: float(np.mean(np.abs(np.asarray(masses(doc)) - 0.5)))  # noqa: E731
    assert dev(final) > dev(init) + 0.03
    assert all(final[s][b]["l2_dist"] > 0.05 for s in final if s.isdigit() for b in final[s])

    # reinit from a list file with a missing entry (skipped with a warning) + rand
    listing = tmp_path / "inits.txt"
    listing.write_text(f"{snaps / 'digits_cnn_init_0'}\n\n{tmp_path / 'gone_3'}\n"
                       f"{snaps / 'digits_cnn_2'}\n{snaps / 'digits_cnn_final_6'}\n")
    code, out, err = run_cli(["reinit", "digits_cnn", "-w", snaps / "digits_cnn_final_6",
                              "--inits-from", listing, "--rand", "-o", tmp_path / "r"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "skipping missing snapshot" in err and "gone_3" in err
    doc = json.loads((tmp_path / "r" / "reinit_digits_cnn_final_6.json").read_text())
    # check 8 (§3.3)
    assert set(doc) == {"init_from_epoch", "arch", "dataset", "top1_test", "top5_test", "seed",
                        "epoch", "num_classes"}
    assert list(doc["init_from_epoch"]) == ["0", "3", "6", "rand"]  # list order, rand last
    assert all(len(row) == 3 for row in doc["init_from_epoch"].values())
    assert 90 < doc["top1_test"] <= 100 and doc["top5_test"] >= doc["top1_test"]
    assert all(0 <= v <= 100 for row in doc["init_from_epoch"].values() for v in row)
    # check 12: own weights reproduce the baseline exactly
    assert doc["init_from_epoch"]["6"] == [doc["top1_test"]] * 3
    # check 13: rand row far below the baseline for the first conv
    drop = (doc["top1_test"] - doc["init_from_epoch"]["rand"][0]) / doc["top1_test"]
    assert drop >= 0.6
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    # check 15: heatmap matrix = (top1 − acc)/top1, rows in list order, rand last
    expect = [[(doc["top1_test"] - a) / doc["top1_test"] for a in row]
              for row in doc["init_from_epoch"].values()]
    np.testing.assert_allclose(res["relative_drop"], expect, atol=1e-6)
    assert res["row_labels"] == ["0", "3", "6", "rand"]
    assert res["compilations"] == 1 and res["evaluations"] == 1 + 4 * 3  # one jitted eval
    assert (tmp_path / "r" / "reinit_digits_cnn_final_6.png").stat().st_size > 1000


def test_demo_runner_returns_headline_numbers(trained, tmp_path):
    from jaxnets.methods.hyperplanes.runner import run_study

    h = run_study(trained.parent, tmp_path / "study")
    assert h["model"] == "digits_cnn" and h["trained_epoch"] == "6"
    assert len(h["init_layer_mass"]) == len(h["trained_layer_mass"]) == 3
    assert h["own_weights_row_exact"] is True
    assert len(h["epoch0_drop"]) == 3 and len(h["rand_drop"]) == 3
    assert max(h["rand_drop"]) > 0.5
    assert h["compilations"] == 1
    assert Path(h["heatmap"]).is_file()
    assert json.loads((tmp_path / "study" / "study.json").read_text())["top1_test"] == h["top1_test"]


def test_swap_touches_exactly_the_chosen_leaves(trained):  # check 14
    import jax

    from jaxnets.methods.hyperplanes.registry import registry_for
    from jaxnets.methods.hyperplanes.reinit import swap
    from jaxnets.methods.hyperplanes.snapshots import open_snapshot
    from jaxnets.models.api import load_weights
    from jaxnets.transforms import names

    net, _ = open_snapshot("digits_cnn", trained / "digits_cnn_final_6")
    donor = load_weights(net.spec, net.module, trained / "digits_cnn_init_0")
    before = jax.tree_util.tree_map(np.array, net.variables)
    layers = registry_for(net.spec, net.module, net.variables)
    for layer in layers:
        new = swap(net.variables, layer, donor)
        flat_new, flat_old = names.flatten(new), names.flatten(net.variables)
        differ = {k for k in flat_old if not np.array_equal(flat_new[k], flat_old[k])}
        assert differ == {f"params/{layer.path}/kernel"}  # convs here have no bias
        assert all(np.array_equal(flat_new[k], names.flatten(donor)[k]) for k in differ)
        assert new["batch_stats"] is net.variables["batch_stats"]
        with_bn = swap(net.variables, layer, donor, include_bn=True)
        differ = {k for k, v in names.flatten(with_bn).items() if not np.array_equal(v, flat_old[k])}
        assert differ == {f"params/{layer.path}/kernel", f"params/{layer.bn}/scale",
                          f"params/{layer.bn}/bias", f"batch_stats/{layer.bn}/mean",
                          f"batch_stats/{layer.bn}/var"}
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, net.variables)  # input unchanged


def test_surgery_swap_with_bias():  # check 14 with a conv bias (lenet)
    import jax

    from jaxnets.models.api import init_variables, resolve
    from jaxnets.transforms import names
    from jaxnets.transforms.surgery import swap_layer

    spec = resolve("lenet")
    m = spec.create(10)
    a = init_variables(spec, m, 0)["params"]
    b = jax.tree_util.tree_map(lambda x: x + 1.0, init_variables(spec, m, 1)["params"])
    new = swap_layer(a, "features_5", b)
    fa, fn = names.flatten(a), names.flatten(new)
    assert {k for k in fa if not np.array_equal(fa[k], fn[k])} == {"features_5/kernel", "features_5/bias"}
    assert np.array_equal(fn["features_5/bias"], names.flatten(b)["features_5/bias"])


def test_bad_input(trained, tmp_path, capsys, monkeypatch):
    snaps = trained
    w = snaps / "digits_cnn_final_6"
    # an empty list
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    code, _, err = run_cli(["reinit", "digits_cnn", "-w", w, "--inits-from", empty], capsys, monkeypatch)
    assert code == 2 and "empty" in err and "Traceback" not in err
    # every listed file missing and no --rand
    gone = tmp_path / "gone.txt"
    gone.write_text(f"{tmp_path / 'a_1'}\n{tmp_path / 'b_2'}\n")
    code, _, err = run_cli(["reinit", "digits_cnn", "-w", w, "--inits-from", gone], capsys, monkeypatch)
    assert code == 2 and "skipping missing snapshot" in err and "nothing to re-initialise" in err
    # nothing asked for
    code, _, err = run_cli(["reinit", "digits_cnn", "-w", w], capsys, monkeypatch)
    assert code == 2 and "--inits-from" in err
    # snapshots of another architecture
    code, _, err = run_cli(["reinit", "lenet", "-w", w, "--rand", "--data", "digits"], capsys, monkeypatch)
    assert code == 2 and "digits_cnn" in err and "lenet" in err
    from jaxnets.io import save_variables
    from jaxnets.models.api import init_variables, resolve

    spec = resolve("allconv4")
    other = save_variables(tmp_path / "allconv4_3", init_variables(spec, spec.create(10), 0),
                           {"model": "allconv4", "epoch_completed": 3})
    listing = tmp_path / "mixed.txt"
    listing.write_text(f"{snaps / 'digits_cnn_init_0'}\n{other}\n")
    code, _, err = run_cli(["reinit", "digits_cnn", "-w", w, "--inits-from", listing, "-o",
                            tmp_path / "rr"], capsys, monkeypatch)
    assert code == 2 and "allconv4" in err and "Traceback" not in err
    # projections: a missing --init-from fails loudly; --pretrained on lenet is an error
    code, _, err = run_cli(["projections", "digits_cnn", "-w", w, "--init-from", tmp_path / "nope"],
                           capsys, monkeypatch)
    assert code == 2 and "nope" in err
    code, _, err = run_cli(["projections", "lenet", "--pretrained", w], capsys, monkeypatch)
    assert code == 2 and "pretrained" in err
    # mlp without --with-linear: no layers
    code, _, err = run_cli(["projections", "mlp", "-o", tmp_path / "mlp"], capsys, monkeypatch)
    assert code == 2 and "--with-linear" in err
