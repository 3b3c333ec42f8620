"""The Python path of the hyperplane tools: ``projections`` / ``reinit`` with ``run_dir=None`` write
nothing and give the numbers the CLI writes; Config checks; snapshot metadata (class list, upscale)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from jaxnets.errors import ConfigError
from jaxnets.methods.hyperplanes.config import ProjectionsConfig, ReinitConfig

# results.json entries that say where and how long, not what was computed
NOT_NUMBERS = ("run_dir", "files", "seconds")


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> Path:
    """A snapshots folder of random digits_cnn weights: init (seed 0), epoch 1 (seed 1), final 2 (seed 2)."""
    from jaxnets.io import save_variables
    from jaxnets.models.api import init_variables, resolve

    folder = tmp_path_factory.mktemp("hp_lib") / "snapshots"
    folder.mkdir()
    spec = resolve("digits_cnn")
    module = spec.create(10)
    base = {"model": "digits_cnn", "dataset": "digits", "num_classes": 10, "seed": 0, "upscale": None,
            "upscale_padding": None}
    for name, seed, epoch in (("digits_cnn_init_0", 0, 0), ("digits_cnn_0", 1, 1), ("digits_cnn_final_2", 2, 2)):
        save_variables(folder / name, init_variables(spec, module, seed), {**base, "epoch_completed": epoch})
    return folder


def test_projections_python_equals_cli_and_writes_nothing(snapshots, tmp_path, capsys, monkeypatch):
    from jaxnets.methods.hyperplanes import ProjectionsResult, open_snapshot, run

    trained, init = snapshots / "digits_cnn_final_2", snapshots / "digits_cnn_init_0"
    code, _, err = run_cli(["projections", "digits_cnn", "-w", trained, "--init-from", init, "--normalize",
                            "--with-linear", "--no-plots", "-o", tmp_path / "cli", "-q"], capsys, monkeypatch)
    assert code == 0, err
    work = tmp_path / "py"
    work.mkdir()
    monkeypatch.chdir(work)  # a default run folder would land here
    before = _files(tmp_path)
    model, data = open_snapshot("digits_cnn", trained)
    result = run(model, data, ProjectionsConfig(normalize=True, with_linear=True), init_from=init)
    assert _files(tmp_path) == before
    assert isinstance(result, ProjectionsResult) and result.run_dir is None and result.files == {}
    assert result.to_json() == json.loads((tmp_path / "cli" / "digits_cnn_final_2.json").read_text())
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    mine = result.results_json()
    assert {k: v for k, v in mine.items() if k not in NOT_NUMBERS} == \
        {k: v for k, v in cli.items() if k not in NOT_NUMBERS}
    assert result.net_mass == cli["net"]["mass"] and result.epoch == "2"
    assert result.plot(tmp_path / "mass.png", "mass").stat().st_size > 1000


def test_reinit_python_equals_cli_and_writes_nothing(snapshots, tmp_path, capsys, monkeypatch):
    from jaxnets.api import load
    from jaxnets.methods.hyperplanes import ReinitResult, open_snapshot, run_reinit

    trained = snapshots / "digits_cnn_final_2"
    code, out, err = run_cli(["reinit", "digits_cnn", "-w", trained, "--inits-from", snapshots, "--rand",
                              "--limit", "120", "--batch-size", "50", "--no-plots", "-o", tmp_path / "cli"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert "baseline top-1" in out  # the grid table
    work = tmp_path / "py"
    work.mkdir()
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    model, test = open_snapshot("digits_cnn", trained, limit=120)
    config = ReinitConfig(rand=True, batch_size=50)
    result = run_reinit(model, test, config, donors=snapshots)
    assert _files(tmp_path) == before
    assert isinstance(result, ReinitResult) and result.run_dir is None
    assert result.to_json() == json.loads((tmp_path / "cli" / "reinit_digits_cnn_final_2.json").read_text())
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    mine = result.results_json()
    assert {k: v for k, v in mine.items() if k not in NOT_NUMBERS} == \
        {k: v for k, v in cli.items() if k not in NOT_NUMBERS}
    assert result.row_labels == ["0", "1", "2", "rand"]
    assert result.rows["2"] == [result.top1] * 3  # its own weights: exact
    # donors as Models / variables give the same rows as paths
    as_models = run_reinit(model, test, ReinitConfig(batch_size=50), donors=[
        ("0", load("digits_cnn", snapshots / "digits_cnn_init_0", data=test)),
        ("1", load("digits_cnn", snapshots / "digits_cnn_0", data=test).variables)])
    assert as_models.rows == {k: result.rows[k] for k in ("0", "1")}
    np.testing.assert_allclose(result.relative_drop, cli["relative_drop"], atol=1e-6)


def test_configs_check_their_fields():
    assert ProjectionsConfig() == ProjectionsConfig(normalize=False, with_linear=False, rule=None, seed=0)
    assert ReinitConfig().batch_size == 128 and ReinitConfig().rand is False
    for make, field in [(lambda: ReinitConfig(batch_size=0), "batch_size"),
                        (lambda: ReinitConfig(vmin=0.5, vmax=0.1), "vmax"),
                        (lambda: ReinitConfig(vmin=float("nan")), "vmin"),
                        (lambda: ProjectionsConfig(rule="blocks"), "rule"),
                        (lambda: ProjectionsConfig(normalize="yes"), "normalize"),
                        (lambda: ReinitConfig(seed=1.5), "seed")]:
        with pytest.raises(ConfigError) as exc:
            make()
        assert exc.value.field == field


def test_snapshot_data_follows_the_metadata(tmp_path):
    """The class list relabels the test split; a recorded upscale feeds the size the model was trained on."""
    from jaxnets.io import save_variables
    from jaxnets.methods.hyperplanes.snapshots import snapshot_data
    from jaxnets.models.api import init_variables, resolve

    spec = resolve("digits_cnn")
    variables = init_variables(spec, spec.create(3), 0)
    meta = {"model": "digits_cnn", "dataset": "digits", "num_classes": 3, "class_list": [2, 5, 7]}
    plain = save_variables(tmp_path / "plain_1", variables, meta)
    upscaled = save_variables(tmp_path / "up_1", variables, {**meta, "upscale": 12, "upscale_padding": 2})
    data = snapshot_data(plain, limit=200)
    assert data.text == "digits" and data.image_shape[:2] == (8, 8)
    assert set(np.unique(data.labels)) <= {0, 1, 2} and data.num_classes == 3
    assert snapshot_data(upscaled, limit=200).image_shape[:2] == (16, 16)
    assert snapshot_data(tmp_path / "nothing") is None
