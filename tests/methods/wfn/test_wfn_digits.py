"""WFN end to end on digits (spec §9.11): digits_cnn, 3-step schedule, 1 epoch per round —
100 % fixed, unique ≤ codebook, accuracy close to the baseline, exact resume, exports, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli  # noqa: E402


def run_wfn(opts: dict) -> dict:
    """The library calls ``jaxnets wfn run`` makes, from a dict of its options → the summary."""
    import dataclasses

    from jaxnets.api import load, open_data
    from jaxnets.methods.wfn import WFNConfig, run

    fields = {f.name for f in dataclasses.fields(WFNConfig)}
    config = WFNConfig(**{k: v for k, v in opts.items() if k in fields})
    train = open_data(opts["data"], "train", limit=opts.get("limit"))
    test = open_data(opts["data"], "test", limit=opts.get("test_limit"))
    model = load(opts["model"], opts.get("weights"), num_classes=train.num_classes, data=train, seed=config.seed)
    return run(model, train, config, run_dir=opts["out"], test_data=test, resume=opts.get("resume")).summary

OPTS = {"model": "digits_cnn", "data": "digits", "pretrain_epochs": 3, "pretrain_lr": 3e-3,
        "percentages": "0.5,0.9,1.0", "fixing_epochs": 1, "lr": 1e-3, "distance_allowed": 0.01,
        "batch_size": 64, "bn_inc": True, "tensorboard": False, "seed": 0}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wfn") / "full"
    summary = run_wfn({**OPTS, "out": out})
    return out, summary


def _final_params(run_dir: Path) -> dict:
    from jaxnets.io import load_variables
    from jaxnets.models.api import abstract_variables, resolve

    spec = resolve("digits_cnn")
    return load_variables(run_dir / "final_model", abstract_variables(spec, spec.create()))


def test_demo_runner_headline_numbers(full_run):
    out, s = full_run
    for key in ("baseline_accuracy", "final_accuracy", "unique_all", "entropy_all",
                "unique_nonzero_paper", "entropy_nonzero_paper", "codebook_size", "compact_bytes"):
        assert key in s
    assert s["fixed_fraction"] == 1.0
    assert s["unique_all"] <= s["codebook_size"]
    assert s["baseline_accuracy"] > 0.85
    assert s["final_accuracy"] >= s["baseline_accuracy"] - 0.05
    assert s["compact_bytes"] < s["float32_bytes"] / 2
    for name in ("results.json", "metrics.jsonl", "config.json", "codebook_histogram.png",
                 "rounds.png", "final_model.pth", "final_model.wfn.npz"):
        assert (out / name).is_file(), name


def test_results_and_metrics_files(full_run):
    out, s = full_run
    res = json.loads((out / "results.json").read_text())
    rounds = res["rounds"]
    assert [r["percentage"] for r in rounds] == [0.5, 0.9, 1.0]
    assert [r["a_t"] for r in rounds] == pytest.approx([0.03, 0.02, 0.01])
    assert all(r["frozen_ok"] for r in rounds)
    n = res["quantised_values"]
    assert [r["fixed"] for r in rounds] == [n // 2, int(n * 0.9), n]
    for key in ("unique_all", "entropy_all", "unique_nonzero", "entropy_nonzero",
                "unique_nonzero_paper", "entropy_nonzero_paper"):
        assert key in rounds[-1] and key in res["final"]
    assert res["final"]["per_tensor_unique"]["conv1.weight"] <= s["codebook_size"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows if r["phase"] == "round"] == [0, 1, 2]
    # round 0 (first_epoch 0) performs no optimiser step; later rounds one epoch each
    epochs = [r for r in rows if r["phase"] == "epoch"]
    assert [r["round"] for r in epochs] == [1, 2] and epochs[0]["step"] == 1437 // 64
    assert epochs[0]["train_reg_term"] == pytest.approx(0.4 * epochs[0]["train_ce"], rel=1e-4)


def test_exports_match_the_fixed_model(full_run):
    from jaxnets.converters.convert import variables_to_state_dict
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

    from jaxnets.methods.wfn.export import load_compact
    from jaxnets.models.api import resolve

    out, s = full_run
    variables = _final_params(out)
    sd = variables_to_state_dict(jax.device_get(variables), resolve("digits_cnn").keymap)
    torch_sd = extract_state_dict(load_torch_file(out / "final_model.pth"))
    compact = load_compact(out / "final_model.wfn.npz")
    assert set(torch_sd) == set(sd) == set(compact)
    for k in sd:
        np.testing.assert_array_equal(np.asarray(torch_sd[k]), sd[k], err_msg=k)
        np.testing.assert_array_equal(np.asarray(compact[k]), sd[k], err_msg=k)
    codebook = np.load(out / "final_model.wfn.npz")["codebook"]
    assert np.isin(sd["conv2.weight"], codebook).all() and np.isin(sd["bn1.weight"], codebook).all()


@pytest.mark.parametrize("resume", ["0", "0.9"])  # round index, or the original's percentage style
def test_resume_reproduces_the_run(full_run, tmp_path, resume):
    out, s = full_run
    part = tmp_path / "part"
    keep = 0 if resume == "0" else 1
    (part / "rounds").mkdir(parents=True)
    for t in range(keep + 1):
        shutil.copytree(out / "rounds" / f"round_{t:02d}", part / "rounds" / f"round_{t:02d}")
    shutil.copy(out / "metrics.jsonl", part / "metrics.jsonl")
    resumed = run_wfn({**OPTS, "out": part, "resume": resume})
    a, b = _final_params(out), _final_params(part)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint32), np.asarray(y).view(np.uint32))
    assert resumed["final_accuracy"] == s["final_accuracy"]
    assert resumed["unique_all"] == s["unique_all"]
    r1 = json.loads((out / "results.json").read_text())["rounds"]
    r2 = json.loads((part / "results.json").read_text())["rounds"]
    drop = ("round_seconds", "cluster_seconds")
    assert [{k: v for k, v in r.items() if k not in drop} for r in r1] == \
        [{k: v for k, v in r.items() if k not in drop} for r in r2]


def test_stats_command(full_run, capsys, monkeypatch):
    out, s = full_run
    code, stdout, _ = run_cli(["wfn", "stats", out / "final_model.wfn.npz"], capsys, monkeypatch)
    assert code == 0 and f"unique {s['unique_all']}," in stdout
    code, stdout2, _ = run_cli(["wfn", "stats", out / "final_model"], capsys, monkeypatch)
    assert code == 0 and f"unique {s['unique_all']}," in stdout2
    code, _, err = run_cli(["wfn", "stats", out / "nope.pth"], capsys, monkeypatch)
    assert code == 2 and "not found" in err


@pytest.mark.parametrize("args,message", [
    (["--distance-allowed", "-0.01"], "must be ≥ 0"),
    (["--distance_allowed", "-1"], "must be ≥ 0"),
    (["--percentages", "0.3,0.6"], "end at 1.0"),
    (["--percentages", "0.6,0.3,1.0"], "increasing"),
    (["--percentages", "0.3,x,1.0"], "must be numbers"),
    (["--calculation-type", "manhattan"], "relative or euclidean"),
    (["--calculation_type", "cosine"], "relative or euclidean"),
    (["--optimiser", "rmsprop"], "adam or sgd"),
    (["--fixing-epochs", "-1"], "≥ 0"),
])
def test_bad_input(args, message, capsys, monkeypatch, tmp_path):
    code, _, err = run_cli(["wfn", "run", "digits_cnn", "--data", "digits", "--out", tmp_path / "r", *args],
                           capsys, monkeypatch)
    assert code == 2, err
    assert err.startswith("error:") and message in err
    assert not (tmp_path / "r").exists()  # rejected before a run folder is made


def test_original_spellings_parse(capsys, monkeypatch, tmp_path):
    """The original flag names reach the runner (checked by a failing δ after parsing them)."""
    code, _, err = run_cli(["wfn", "run", "digits_cnn", "--regularistion_ratio", "0.2", "--optimiser", "SGD",
                            "--first_epoch", "0", "--fixing_epochs", "1", "--zero_distance", "0.01",
                            "--bn_inc", "1", "--experiment_name", "x", "--distance_allowed", "-1",
                            "--out", tmp_path / "r"], capsys, monkeypatch)
    assert code == 2 and "distance-allowed" in err
