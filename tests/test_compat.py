"""docs/compat.md, row by row: every original script's jaxnets command runs, on small data, with the
original's flag spellings where the row shows them, and writes what the row says.

One test per row id (``test_row[<id>]``), and :func:`test_every_row_has_a_test` keeps the doc and
the tests in step (a row without a test, or a test without a row, fails). Each row runs its command
through the CLI on digits, the exact CIFAR-10 subset (``cifar_exact``, skipped without
../shared/data), or a synthetic fixture in the original data set's layout (CIFAR-100 binary
batches, ImageNet's ``ILSVRC/{train,val}/<wnid>``), and checks the output files' keys and a
number. Expensive runs are module-scoped fixtures shared by the rows that read them: one trained
digits_cnn, one SeaM run per setting, one hyperplane training run per architecture.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import ROOT, run_cli
from compat_helpers import run_ok, write_cifar100_binary, write_ilsvrc

COMPAT_DOC = ROOT / "docs" / "compat.md"
# A row id is the first cell of a script table: `dtd-…`, `wfn-…`, `probe-…`, `seam-…`, `hp-…`.
ROW_ID = re.compile(r"^\|\s*`((?:dtd|wfn|probe|seam|hp)-[a-z0-9-]+)`\s*\|")
SEAM_RUN = "lr_head_mask_0.1_0.1_alpha_1.0"  # the run folder of the default lr_head / lr_mask / alpha
WFN_RESULTS_CSV = ["data_name", "experiment_name", "model_name", "BN", "regularisation_ratio", "distance_allowed",
                   "fixing_epochs", "orig_acc", "orig_entropy", "orig_params", "compressed_acc", "compressed_entropy",
                   "compressed_entropy_non_zero", "unique_params", "zero_distance"]  # the original's columns


def doc_row_ids() -> list[str]:
    """The row ids of docs/compat.md's script tables, in order (an id may repeat in a sub-table)."""
    return [m.group(1) for line in COMPAT_DOC.read_text().splitlines() if (m := ROW_ID.match(line))]


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def _ignored(err: str) -> list[str]:
    """The flags of the 'warning: --flag is ignored …' lines, in order."""
    return [w.split()[1] for w in _warnings(err) if " is ignored" in w]


def _favouring(model: str, num_classes: int, favoured: int, path: Path, seed: int = 0) -> Path:
    """Random weights of ``model`` whose head prefers class ``favoured`` for every image (its bias
    +10): an untrained model with a known, non-zero accuracy on a SeaM target (SeaM's selection
    refuses an original accuracy of 0)."""
    import jax

    from jaxnets.api import load
    from jaxnets.io import save_variables

    net = load(model, num_classes=num_classes, seed=seed)
    params = jax.tree_util.tree_map(np.asarray, dict(net.variables["params"]))
    head = dict(params[net.spec.head])
    head["bias"] = head["bias"].copy()
    head["bias"][favoured] += 10.0
    params[net.spec.head] = head
    return save_variables(path, {**net.variables, "params": params}, {"model": model, "num_classes": num_classes})


# ---------------------------------------------------------------------------------- shared runs


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compat")


@pytest.fixture(scope="module")
def digits_model(work: Path) -> dict:
    """digits_cnn trained once for the module (3 epochs, Adam; about 97 % test top-1): the weights
    of every digits row."""
    out = work / "digits_cnn"
    run_ok(["train", "digits_cnn", "--data", "digits", "--epochs", "3", "--optimizer", "adam", "--lr", "0.003",
            "--batch-size", "64", "--shuffle", "--out", out, "-q"])
    return {"weights": out / "snapshots" / "digits_cnn_final_3", "test_top1": _json(out / "results.json")["test_top1"]}


@pytest.fixture(scope="module")
def digits_indices(work: Path) -> Path:
    """A (10, 5) index table over digits_cnn's 64 pooled channels."""
    from jaxnets.methods.decompose.indices import write_indices

    return write_indices(work / "digits_k5.json", np.stack([(np.arange(5) + 3 * c) % 64 for c in range(10)]))


@pytest.fixture(scope="module")
def ilsvrc(work: Path) -> Path:
    """ImageNet's layout, two classes: 2 training and 1 validation image each."""
    return write_ilsvrc(work / "imagenet", ["n01440764", "n01443537"], {"train": 2, "val": 1})


@pytest.fixture(scope="module")
def cifar100(work: Path) -> Path:
    """CIFAR-100's binary batches holding superclass 0 (fine classes 4, 30, 55, 72, 95: 8 training
    and 4 test images each) and class 0 (another superclass)."""
    superclass_0 = (4, 30, 55, 72, 95)
    return write_cifar100_binary(work / "cifar100", {"train": [*((c, 8) for c in superclass_0), (0, 4)],
                                                     "test": [*((c, 4) for c in superclass_0), (0, 2)]})


@pytest.fixture(scope="module")
def seam_binary(work: Path, digits_model: dict) -> dict:
    """binary_class/model_reengineering.py's line (every flag; digits_cnn, class 3 vs rest)."""
    out = work / "seam_binary"
    _, err = run_ok(["seam", "model_reengineering", "--model", "digits_cnn", "--target_class", "3", "--shots", "-1",
                     "--seed", "0", "--n_epochs", "2", "--lr_head", "0.1", "--lr_mask", "0.1", "--alpha", "1",
                     "--early_stop", "-1", "--tuning_param", "--weights", digits_model["weights"], "--data", "digits",
                     "--limit", "64", "--no-plots", "--out", out])
    return {"run": out / SEAM_RUN, "err": err, "weights": digits_model["weights"]}


@pytest.fixture(scope="module")
def seam_superclass(work: Path, cifar100: Path) -> dict:
    """multi_class/model_reengineering.py's line: resnet20 (the original's CIFAR model, resnet20_b)
    on CIFAR-100 superclass 0; untrained weights that predict class 4 (original accuracy 1/5)."""
    weights = _favouring("resnet20_b", 100, 4, work / "resnet20_b_c100")
    out = work / "seam_superclass"
    _, err = run_ok(["seam", "model_reengineering", "--model", "resnet20", "--dataset", "cifar100",
                     "--superclass_type", "predefined", "--target_superclass_idx", "0", "--n_classes", "-1",
                     "--shots", "-1", "--seed", "0", "--n_epochs", "1", "--lr_head", "0.1", "--lr_mask", "0.1",
                     "--alpha", "1", "--early_stop", "-1", "--weights", weights, "--data", cifar100, "--no-plots",
                     "--out", out])
    return {"run": out / SEAM_RUN, "err": err, "weights": weights}


@pytest.fixture(scope="module")
def seam_mixer(work: Path, cifar100: Path) -> dict:
    """The fork's multi_class/model_reengineering.py with an MLP-Mixer (mixer_tiny stands in for
    Mixer-B/16, CIFAR-100 superclass 0 for an ImageNet one)."""
    weights = _favouring("mixer_tiny", 100, 4, work / "mixer_tiny_c100")
    out = work / "seam_mixer"
    _, err = run_ok(["seam", "model_reengineering", "--model", "mixer_tiny", "--dataset", "cifar100",
                     "--target_superclass_idx", "0", "--n_epochs", "1", "--lr_mask", "0.1", "--alpha", "1",
                     "--weights", weights, "--data", cifar100, "--no-plots", "--out", out])
    return {"run": out / SEAM_RUN, "err": err, "weights": weights}


@pytest.fixture(scope="module")
def seam_standard(work: Path, digits_model: dict) -> dict:
    """defect_inherit/standard_finetune.py's line on digits 3 vs 8 (64 training, 40 test images)."""
    out = work / "seam_standard"
    _, err = run_ok(["seam", "standard_finetune", "--model", "digits_cnn", "--dropout", "0.0", "--n_epochs", "1",
                     "--lr", "0.005", "--momentum", "0.0", "--weight_decay", "1e-4", "--weights",
                     digits_model["weights"], "--data", "digits", "--target", "binary:3,8", "--limit", "64",
                     "--test-limit", "40", "--out", out])
    return {"run": out, "err": err, "weights": digits_model["weights"]}


@pytest.fixture(scope="module")
def wfn_run(work: Path, digits_model: dict) -> dict:
    """pre_trained_model_experiments.py's flags (original spellings) on the trained digits_cnn."""
    out = work / "wfn"
    _, err = run_ok(["wfn", "run", "--model", "digits_cnn", "--weights", digits_model["weights"], "--data", "digits",
                     "--distance_allowed", "0.01", "--percentages", "0.5", "1.0", "--optimiser", "ADAM",
                     "--experiment_name", "compat", "--scheduler", "None", "--lr", "1e-3", "--first_epoch", "0",
                     "--fixing_epochs", "1", "--regularistion_ratio", "0.4", "--zero_distance", "0.0078125",
                     "--bn_inc", "0", "--calculation_type", "relative", "--limit", "256", "--test-limit", "100",
                     "--val-split", "64", "--out", out])
    return {"run": out, "err": err}


@pytest.fixture(scope="module")
def probe_run(work: Path, digits_model: dict) -> dict:
    """DL_smoothness.py's flags (the original CLI's defaults spelled out) on the trained digits_cnn."""
    out = work / "probe"
    _, err = run_ok(["probe", "run", "digits_cnn", "--weights", digits_model["weights"], "--data", "digits",
                     "--env_name", "cifar10_env", "--checkpoints_folder", "ckpt", "--trees", "1", "--depth", "15",
                     "--seed", "2", "--batch_size", "256", "--epsilon_1", "0.1", "--feature_dimension", "64",
                     "--calc_test", "--limit", "400", "--output_folder", out])
    return {"run": out, "err": err}


@pytest.fixture(scope="module")
def hp_lenet(work: Path, cifar_exact: Path) -> dict:
    """train.py's line: lenet on the exact CIFAR-10 subset (512 training images, 2 epochs,
    snapshots after each)."""
    out = work / "hp_lenet"
    _, err = run_ok(["train", "--arch", "lenet", "--dataset", "cifar10", "--data-path", cifar_exact.parent, "--cuda",
                     "--workers", "4", "--epochs", "2", "--lr", "0.01", "--batch-size", "64", "--snapshot-every", "1",
                     "--shuffle", "--limit", "512", "--out", out])
    return {"run": out, "err": err, "data": cifar_exact.parent}


@pytest.fixture(scope="module")
def hp_mlp(work: Path, cifar_exact: Path) -> dict:
    """mlp/README.md's train.py recipe for mlp_bn (1 epoch on 256 images instead of 300 on 50,000)."""
    out = work / "hp_mlp"
    _, err = run_ok(["train", "--arch", "mlp_bn", "--dataset", "cifar10", "--data-path", cifar_exact.parent,
                     "--augmentation", "--shuffle", "--cuda", "--workers", "4", "--epochs", "1", "--batch-size", "128",
                     "--lr", "0.01", "--lr-step", "100", "--lr-decay", "0.1", "--weight-decay", "5e-4",
                     "--snapshot-every", "10", "--snapshot-all-until", "10", "--train-acc", "--limit", "256",
                     "--out", out])
    return {"run": out, "err": err}


# ---------------------------------------------------------------------------------- the rows


@dataclass
class Row:
    """What a row's check gets: fixtures on demand, a fresh folder, and the CLI."""

    request: pytest.FixtureRequest
    tmp: Path
    capsys: pytest.CaptureFixture
    monkeypatch: pytest.MonkeyPatch

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def run(self, args: list) -> tuple[str, str]:
        """The row's jaxnets command (must succeed): (stdout, stderr)."""
        code, out, err = run_cli(args, self.capsys, self.monkeypatch)
        assert code == 0, f"jaxnets {' '.join(map(str, args))}\n{err}"
        return out, err


ROWS: dict[str, Callable[[Row], None]] = {}
SLOW_ROWS: set[str] = set()


def row(row_id: str, *, slow: bool = False) -> Callable:
    """Register the check of docs/compat.md's row ``row_id``."""
    def register(check: Callable[[Row], None]) -> Callable[[Row], None]:
        ROWS[row_id] = check
        if slow:
            SLOW_ROWS.add(row_id)
        return check
    return register


# -------------------------------------------------------------- Decomposing the Deep (main.py …)


@row("dtd-main-validate")
def _(r: Row) -> None:
    """README: ``main.py validate resnet20 -i resnet20_cifar-10_indices.json -w resnet20-12fca82f.th
    --gpu 0`` on the exact subset with the original's CIFAR constants: the data README's numbers."""
    shared, exact = r.fixture("shared_data"), r.fixture("cifar_exact")
    out = r.tmp / "val"
    index_file = shared / "decomposing-the-deep" / "resnet20_cifar-10_indices.json"
    _, err = r.run(["validate", "resnet20", "-i", index_file, "-w", shared / "weights" / "resnet20-12fca82f.th",
                    "--gpu", "0", "--data", f"cifar10:{exact}", "--normalize", "cifar", "--out", out])
    assert _ignored(err) == ["--gpu"]
    report = _json(out / "results.json")
    assert {"top1", "top5", "n", "correct", "per_class", "decomposed"} <= set(report)
    assert (report["correct"], report["n"]) == (777, 846)  # 91.84 %, deterministic
    assert (report["decomposed"]["correct"], report["decomposed"]["k"]) == (754, 5)  # 89.13 %


@row("dtd-main-finetune")
def _(r: Row) -> None:
    """README: ``main.py finetune resnet20 -i F -w W --gpu 0 --lr 0.0001`` (+ ``--num-epochs``, ``-b``)."""
    weights, indices = r.fixture("digits_model")["weights"], r.fixture("digits_indices")
    out = r.tmp / "ft"
    _, err = r.run(["finetune", "digits_cnn", "-i", indices, "-w", weights, "--gpu", "0", "--lr", "0.0001",
                    "--num-epochs", "1", "-b", "64", "--data", "digits", "--limit", "128", "--eval-limit", "64",
                    "--no-export", "--out", out])
    assert _ignored(err) == ["--gpu"]
    report = _json(out / "results.json")
    assert {"final_top1", "start_top1", "history", "k", "lr"} <= set(report)
    assert (report["lr"], report["batch_size"], report["k"], report["epochs_completed"], report["steps"]) == (
        0.0001, 64, 5, 1, 2)  # 128 images in batches of 64
    assert 0.0 <= report["final_top1"] <= 1.0


@row("dtd-main-essential")
def _(r: Row) -> None:
    """README: ``main.py essential resnet20 -w W --gpu 0`` (+ the index file the original
    hard-codes, ``--data``); digits_cnn on 100 digits."""
    weights, indices = r.fixture("digits_model")["weights"], r.fixture("digits_indices")
    out = r.tmp / "ess"
    _, err = r.run(["essential", "digits_cnn", "-w", weights, "--gpu", "0", "--inds-file", indices, "--data", "digits",
                    "--limit", "100", "--out", out])
    assert _ignored(err) == ["--gpu"]
    rows = _json(out / "results_essential_features.json")["ours"]
    assert sorted(rows, key=int) == [str(c) for c in range(10)]
    totals = _json(out / "results.json")["totals"]["ours"]
    assert totals["total"] == 100
    assert totals["clean"] >= 85  # the trained digits_cnn gets ~97 % of the test digits right


@row("dtd-main-validate-imagenet")
def _(r: Row) -> None:
    """README: ``main.py validate resnet50 -i resnet50_imagenet_indices.json --gpu 0 --lr 0.00001``;
    stand-in: resnet18 (the same torchvision ResNet path, a quarter of the compile time) on a
    synthetic ILSVRC folder, squash-to-224 as the original."""
    ilsvrc = r.fixture("ilsvrc")
    from jaxnets.methods.decompose.indices import write_indices

    rng = np.random.default_rng(1)
    table = write_indices(r.tmp / "r18.json", np.stack([rng.permutation(512)[:50] for _ in range(1000)]))
    out = r.tmp / "val"
    _, err = r.run(["validate", "resnet18", "-i", table, "--gpu", "0", "--lr", "0.00001", "--data",
                    f"imagefolder:{ilsvrc}", "--split", "val", "--eval-resize", "squash", "--batch-size", "2",
                    "--out", out])
    assert _ignored(err) == ["--gpu", "--lr"]
    report = _json(out / "results.json")
    assert report["n"] == report["decomposed"]["n"] == 2 and report["decomposed"]["k"] == 50
    assert _json(out / "config.json")["options"]["eval_resize"] == "squash"


@row("dtd-main-finetune-imagenet")
def _(r: Row) -> None:
    """README: ``main.py finetune resnet50 -i resnet50_imagenet_indices.json --gpu 0 --lr 0.000001``;
    stand-in as dtd-main-validate-imagenet."""
    ilsvrc = r.fixture("ilsvrc")
    from jaxnets.methods.decompose.indices import write_indices

    rng = np.random.default_rng(1)
    table = write_indices(r.tmp / "r18.json", np.stack([rng.permutation(512)[:50] for _ in range(1000)]))
    out = r.tmp / "ft"
    _, err = r.run(["finetune", "resnet18", "-i", table, "--gpu", "0", "--lr", "0.000001", "--num-epochs", "1",
                    "-b", "2", "--eval-batch-size", "2", "--data", f"imagefolder:{ilsvrc}", "--no-export",
                    "--no-initial-eval", "--out", out])
    assert _ignored(err) == ["--gpu"]
    report = _json(out / "results.json")
    assert (report["lr"], report["eval_split"], report["steps"], report["k"]) == (1e-6, "val", 2, 50)


@row("dtd-mutual-info")
def _(r: Row) -> None:
    """``mutual_info.py`` (no flags: it reads the three index files and best_save_CSG.pth from the
    working folder): the code comment's values, exactly."""
    dtd = r.fixture("shared_data") / "decomposing-the-deep"
    stdout, _ = r.run(["mutual-info", "-i", dtd / "resnet20_cifar-10_indices.json",
                       "-i", dtd / "resnet20_cifar-10_10_10_indices.json",
                       "-i", dtd / "resnet20_cifar-10_20_20_indices.json", "--csg-weights", dtd / "best_save_CSG.pth",
                       "--k", "5,10,20", "--out", r.tmp / "mi"])
    for value in ("0.0345378", "0.05705", "0.0708032", "0.0375091", "0.0540359", "0.0817442"):
        assert value in stdout, (value, stdout)


@row("dtd-l1-norm")
def _(r: Row) -> None:
    """``l1_norm.py`` (library: per-image top-k channel frequencies → the index files) is
    ``jaxnets indices``: one index file per k, counted on the training split."""
    weights = r.fixture("digits_model")["weights"]
    out = r.tmp / "ind"
    r.run(["indices", "digits_cnn", "-w", weights, "--data", "digits", "--k", "5,10", "--limit", "300", "--out", out])
    report = _json(out / "results.json")
    assert {"k", "images_per_class", "num_features"} <= set(report) and sum(report["images_per_class"]) == 300
    for k in (5, 10):
        table = _json(out / f"digits_cnn_k{k}_indices.json")
        assert list(table) == [str(c) for c in range(10)]
        assert all(len(set(v)) == k and all(0 <= i < 64 for i in v) for v in table.values())


# ---------------------------------------------------------------------- Weight Fixing Networks


@row("wfn-main")
def _(r: Row) -> None:
    """``pre_trained_model_experiments.py`` with its flags spelled as the original (2 rounds)."""
    run = r.fixture("wfn_run")
    assert _ignored(run["err"]) == [] and "--scheduler" not in run["err"]  # 'None' is the original's default
    with (run["run"] / "Results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == WFN_RESULTS_CSV and len(rows) == 1
    results = _json(run["run"] / "results.json")
    assert results["images"] == {"train": 192, "validation": 64, "test": 100}
    assert int(rows[0]["unique_params"]) == results["unique_params"] <= 2 * 20 * 10 + 1  # a small codebook
    assert (rows[0]["BN"], rows[0]["experiment_name"], float(rows[0]["distance_allowed"])) == ("False", "compat", 0.01)
    assert [x["percentage"] for x in results["rounds"]] == [0.5, 1.0]


@row("wfn-notebook-stats")
def _(r: Row) -> None:
    """The notebook's unique-value / entropy cells on a saved model: ``wfn stats``."""
    run = r.fixture("wfn_run")["run"]
    out = r.tmp / "stats.json"
    r.run(["wfn", "stats", run / "final_model.wfn.npz", "--model", "digits_cnn", "--no-bn-inc", "--per-tensor",
           "--json", out])
    stats = _json(out)
    assert {"unique_all", "entropy_all", "unique_nonzero", "entropy_nonzero", "per_tensor_unique"} <= set(stats)
    results = _json(run / "results.json")
    assert stats["unique_all"] == results["unique_params"]  # the same model, counted the same way
    assert stats["entropy_all"] == pytest.approx(results["compressed_entropy"], abs=1e-9)


# ---------------------------------------------------------------------------- Sparsity Probe


@row("probe-dl-smoothness")
def _(r: Row) -> None:
    """``DL_smoothness.py`` with its flags (underscore spellings); the two flags with no meaning
    here warned about once each."""
    run, model = r.fixture("probe_run"), r.fixture("digits_model")
    assert _ignored(run["err"]) == ["--env_name", "--checkpoints_folder"]
    result = _json(run["run"] / "result.json")
    assert {"alphas", "sizes", "test_stats", "clustering_stats"} <= set(result)
    assert result["sizes"] == list(range(-1, 7)) and all(len(a) == 10 for a in result["alphas"])
    assert result["test_stats"]["top_1_accuracy"] == pytest.approx(model["test_top1"], abs=1e-12)
    assert (run["run"] / "result.png").is_file()


@row("probe-plot")
def _(r: Row) -> None:
    """``plot_DL_json_results.py --main_dir DIR`` (its function form; the script's __main__ crashes)."""
    run = r.fixture("probe_run")["run"]
    out = r.tmp / "overlay.png"
    stdout, _ = r.run(["probe", "plot", "--main_dir", run, "--remove_layers", "1", "--out", out])
    assert out.stat().st_size > 0
    assert "layers -1..5" in stdout  # the last of the 8 layers removed


@row("probe-train")
def _(r: Row) -> None:
    """``train/train.py`` (Adam 1e-3, batch 32, an 80/20 train/validation split) is ``jaxnets train``."""
    out = r.tmp / "train"
    r.run(["train", "digits_cnn", "--data", "digits", "--optimizer", "adam", "--lr", "1e-3", "--batch-size", "32",
           "--epochs", "1", "--split", "0.2", "--shuffle", "--out", out])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = [x for x in rows if x["phase"] == "epoch"][-1]
    # 1,150 training images (the last 287 validate): 35 full batches of 32 per epoch
    assert epoch["train_examples"] == (1437 - int(1437 * 0.2)) // 32 * 32 == 1120
    assert round(epoch["val_top1"] * 287, 6).is_integer()
    assert _json(out / "results.json")["epochs_completed"] == 1


# ----------------------------------------------------------------------------------- SeaM


@row("seam-binary-reengineering")
def _(r: Row) -> None:
    run = r.fixture("seam_binary")
    assert _ignored(run["err"]) == ["--tuning_param"]
    metrics = _json(run["run"] / "metrics.json")
    assert {"acc", "acc_pre", "retention", "kept", "n_entries", "flops", "history", "layers"} <= set(metrics)
    assert metrics["n_entries"] == 56_234 and metrics["train_images"] == 64  # digits_cnn's masked weights
    assert metrics["target"]["classes"] == [3] and 0 < metrics["retention"] <= 1
    assert (run["run"] / "masks.pth").is_file()


@row("seam-binary-flop")
def _(r: Row) -> None:
    """``calculate_flop.py`` with its flags; the mask file given with ``--masks`` (the original finds
    it under its data folder)."""
    run = r.fixture("seam_binary")
    out = r.tmp / "flops"
    stdout, _ = r.run(["seam", "calculate_flop", "--model", "digits_cnn", "--target_class", "3", "--lr_head", "0.1",
                       "--lr_mask", "0.1", "--alpha", "1", "--shots", "-1", "--seed", "0", "--weights", run["weights"],
                       "--masks", run["run"] / "masks.pth", "--data", "digits", "--out", out])
    assert "FLOPs Dense" in stdout and "FLOP% (Sparse / Dense)" in stdout
    flops, metrics = _json(out / "flops.json"), _json(run["run"] / "metrics.json")
    assert flops["flops_dense"] == metrics["flops"]["flops_dense"] == 1_803_924  # digits_cnn + a 2-way head
    assert flops["flops_sparse"] <= flops["flops_dense"] and flops["kept"] == metrics["kept"]


@row("seam-binary-time")
def _(r: Row) -> None:
    run = r.fixture("seam_binary")
    out = r.tmp / "time"
    r.run(["seam", "calculate_time_cost", "--model", "digits_cnn", "--target_class", "3", "--lr_head", "0.1",
           "--lr_mask", "0.1", "--alpha", "1", "--shots", "-1", "--seed", "0", "--weights", run["weights"],
           "--masks", run["run"] / "masks.pth", "--repeats", "1", "--warmup", "0", "--out", out])
    timing = _json(out / "time.json")
    assert timing["original"]["median_ms"] > 0 and timing["reengineered"]["median_ms"] > 0
    assert timing["reengineered_weights"] == _json(run["run"] / "metrics.json")["kept"]


@row("seam-multi-reengineering", slow=True)
def _(r: Row) -> None:
    run = r.fixture("seam_superclass")
    metrics = _json(run["run"] / "metrics.json")
    assert metrics["model"] == "resnet20_b" and metrics["target"]["classes"] == [4, 30, 55, 72, 95]
    assert (metrics["train_images"], metrics["test_images"]) == (40, 20)
    assert metrics["acc_pre"] == pytest.approx(0.2)  # the weights predict class 4: 4 of 20 right
    assert metrics["flops"]["flops_dense"] == 41_224_948  # spec §9: ResNet20-CIFAR100 + a 5-way head


@row("seam-multi-flop", slow=True)
def _(r: Row) -> None:
    run, data = r.fixture("seam_superclass"), r.fixture("cifar100")
    out = r.tmp / "flops"
    stdout, _ = r.run(["seam", "calculate_flop", "--model", "resnet20", "--dataset", "cifar100", "--superclass_type",
                       "predefined", "--target_superclass_idx", "0", "--n_classes", "-1", "--lr_head", "0.1",
                       "--lr_mask", "0.1", "--alpha", "1", "--shots", "-1", "--seed", "0", "--weights", run["weights"],
                       "--masks", run["run"] / "masks.pth", "--data", data, "--out", out])
    flops = _json(out / "flops.json")
    assert flops["flops_dense"] == 41_224_948 and flops["acc_pre"] == pytest.approx(0.2)
    assert "Model ACC: 0.2000" in stdout


@row("seam-multi-time", slow=True)
def _(r: Row) -> None:
    """README: ``calculate_time_cost.py … --target_superclass 0`` (argparse's prefix of
    ``--target_superclass_idx``)."""
    run = r.fixture("seam_superclass")
    out = r.tmp / "time"
    # --model resnet20_b --num-classes 100 for the original's --model resnet20 --dataset cifar100
    # (not yet: test_seam_time_takes_the_originals_dataset_flag)
    r.run(["seam", "calculate_time_cost", "--model", "resnet20_b", "--num-classes", "100", "--superclass_type",
           "predefined", "--target_superclass", "0", "--n_classes", "-1", "--lr_head", "0.1", "--lr_mask", "0.1",
           "--alpha", "1", "--shots", "-1", "--seed", "0", "--weights", run["weights"], "--masks",
           run["run"] / "masks.pth", "--repeats", "1", "--warmup", "0", "--out", out])
    timing = _json(out / "time.json")
    assert timing["reengineered_weights"] == _json(run["run"] / "metrics.json")["kept"]
    assert timing["original"]["median_ms"] > 0


@row("seam-multi-retrain", slow=True)
def _(r: Row) -> None:
    """``multi_class/retrain.py`` (broken as written in the original): resnet20 from scratch on the
    superclass; the target as ``--target superclass:0``."""
    data = r.fixture("cifar100")
    out = r.tmp / "retrain"
    r.run(["seam", "retrain", "--model", "resnet20", "--dataset", "cifar100", "--lr", "0.1", "--target",
           "superclass:0", "--shots", "-1", "--seed", "1", "--n_epochs", "1", "--early_stop", "30", "--data", data,
           "--out", out])
    results = _json(out / "results.json")
    assert (results["method"], results["model"], results["num_classes"]) == ("retrain", "resnet20_b", 5)
    assert (results["train_images"], results["test_images"], results["n"]) == (40, 20, 20)
    assert 0 <= results["correct"] <= 20 and (out / "model_rt.msgpack").is_file()


@row("seam-fork-reengineering")
def _(r: Row) -> None:
    run = r.fixture("seam_mixer")
    metrics = _json(run["run"] / "metrics.json")
    assert metrics["model"] == "mixer_tiny" and metrics["target"]["num_targets"] == 5
    assert metrics["n_entries"] == 51_172 and metrics["acc_pre"] == pytest.approx(0.2)


@row("seam-fork-flop")
def _(r: Row) -> None:
    """The fork's calculate_flop.py (its sparse matmul handler: the Mixer's dense layers count their
    kept weights)."""
    run, data = r.fixture("seam_mixer"), r.fixture("cifar100")
    out = r.tmp / "flops"
    r.run(["seam", "calculate_flop", "--model", "mixer_tiny", "--dataset", "cifar100", "--target_superclass_idx", "0",
           "--weights", run["weights"], "--masks", run["run"] / "masks.pth", "--data", data, "--out", out])
    flops = _json(out / "flops.json")
    assert flops["flops_dense"] == _json(run["run"] / "metrics.json")["flops"]["flops_dense"] == 2_927_348
    assert flops["flops_sparse"] <= flops["flops_dense"]


@row("seam-fork-time")
def _(r: Row) -> None:
    run = r.fixture("seam_mixer")
    out = r.tmp / "time"
    r.run(["seam", "calculate_time_cost", "--model", "mixer_tiny", "--num-classes", "100",
           "--target_superclass_idx", "0", "--weights", run["weights"], "--masks", run["run"] / "masks.pth",
           "--repeats", "1", "--warmup", "0", "--out", out])
    timing = _json(out / "time.json")
    assert timing["model_weights"] == 51_172 and timing["reengineered"]["median_ms"] > 0


@row("seam-reengineering-finetune")
def _(r: Row) -> None:
    """``reengineering_finetune.py`` with every flag: steps 1-3 and the DIR on digits 3 vs 8."""
    weights = r.fixture("digits_model")["weights"]
    out = r.tmp / "sft"
    r.run(["seam", "reengineering_finetune", "--model", "digits_cnn", "--n_epochs", "1", "--dropout", "0.0",
           "--lr_s1_output_layer", "0.1", "--lr_s2_output_layer", "0.001", "--lr_mask", "0.1", "--alpha", "1",
           "--prune_threshold", "0.3", "--lr_s3_output_layer", "0.05", "--lr_s3_hidden_layer", "0.005",
           "--momentum", "0.0", "--weight_decay", "1e-4", "--early_stop", "30", "--weights", weights,
           "--data", "digits", "--target", "binary:3,8", "--limit", "64", "--test-limit", "40", "--pgd-steps", "2",
           "--out", out])
    defect = _json(out / "defect.json")
    assert {"step1", "step2", "clean_top1", "dir", "attack_success_rate", "pgd"} <= set(defect)
    assert defect["step2"]["n_entries"] == 55_584  # digits_cnn's weights without the output layer
    assert defect["n"] == 40 and 0 <= defect["dir"] <= 100
    assert all((out / f).is_file() for f in ("step_1_model_ft.msgpack", "step_2_seam.msgpack",
                                             "step_3_seam_ft.msgpack"))


@row("seam-standard-finetune")
def _(r: Row) -> None:
    run = r.fixture("seam_standard")
    results = _json(run["run"] / "results.json")
    assert (results["method"], results["num_classes"], results["train_images"], results["n"]) == (
        "standard", 2, 64, 40)
    assert (results["options"]["lr"], results["options"]["momentum"]) == (0.005, 0.0)
    assert results["correct"] == round(results["acc"] * 40) and (run["run"] / "model_ft.msgpack").is_file()


@row("seam-retrain")
def _(r: Row) -> None:
    out = r.tmp / "retrain"
    r.run(["seam", "retrain", "--model", "digits_cnn", "--dropout", "0.0", "--n_epochs", "1", "--lr", "0.1",
           "--momentum", "0.5", "--weight_decay", "1e-4", "--data", "digits", "--target", "binary:3,8", "--limit",
           "64", "--test-limit", "40", "--out", out])
    results = _json(out / "results.json")
    assert (results["method"], results["num_classes"], results["n"]) == ("retrain", 2, 40)
    assert results["options"]["momentum"] == 0.5 and (out / "model_rt.msgpack").is_file()


@row("seam-eval-robustness")
def _(r: Row) -> None:
    """``eval_robustness.py --eval standard`` on the standard fine-tuning run: its clean accuracy is
    the run's own best test accuracy (the same model and images)."""
    run = r.fixture("seam_standard")
    out = r.tmp / "rob"
    stdout, err = r.run(["seam", "eval_robustness", "--model", "digits_cnn", "--dropout", "0.0", "--eval",
                         "standard", "--lr_mask", "0.0", "--alpha", "0.0", "--prune_threshold", "1.0", "--weights",
                         run["weights"], "--finetuned", run["run"], "--data", "digits", "--target", "binary:3,8",
                         "--test-limit", "40", "--pgd-steps", "2", "--out", out])
    assert _ignored(err) == ["--dropout", "--lr_mask", "--alpha", "--prune_threshold"]
    assert re.search(r"Clean Top-1: \d+\.\d\d \| Attack Success Rate: \d+\.\d\d", stdout)
    results = _json(out / "results.json")
    assert {"clean_top1", "dir", "attack_success_rate", "inherited", "pgd"} <= set(results)
    assert results["clean_top1"] == pytest.approx(100 * _json(run["run"] / "results.json")["acc"])
    assert results["n"] == 40 and 0 <= results["dir"] <= 100


# -------------------------------------------------------------------- Hyperplane arrangements


@row("hp-train")
def _(r: Row) -> None:
    run = r.fixture("hp_lenet")
    assert _ignored(run["err"]) == ["--cuda", "--workers"]
    assert sorted(p.name for p in (run["run"] / "snapshots").iterdir()) == [
        "lenet_0", "lenet_1", "lenet_final_2", "lenet_init_0"]
    results = _json(run["run"] / "results.json")
    assert results["epochs_completed"] == 2 and results["converged"] is True
    assert round(results["test_top1"] * 846, 6).is_integer()  # the 846 exact test images
    assert _json(run["run"] / "config.json")["options"]["data"] == f"cifar10:{run['data']}"


@row("hp-compute-projections")
def _(r: Row) -> None:
    snapshots = r.fixture("hp_lenet")["run"] / "snapshots"
    out = r.tmp / "proj"
    _, err = r.run(["projections", "--arch", "lenet", "--dataset", "cifar10", "--cuda", "--normalize", "--load-from",
                    snapshots / "lenet_final_2", "--init-from", snapshots / "lenet_init_0", "--results", "./results",
                    "--out", out])
    assert _ignored(err) == ["--cuda", "--results"]
    doc = _json(out / "lenet_final_2.json")
    assert (doc["arch"], doc["dataset"], doc["epoch"]) == ("lenet", "cifar10", "2")
    assert len(doc["net"]["projections"]) == 172  # spec §2.4: LeNet's 6 convs pool 172 filters
    blocks = [block for stage in ("0", "1", "2") for block in doc[stage].values()]
    assert len(blocks) == 6 and all({"mass", "mean", "l2_dist", "l_inf_dist"} <= set(b) for b in blocks)


@row("hp-reinit-layers")
def _(r: Row) -> None:
    run = r.fixture("hp_lenet")
    snapshots = run["run"] / "snapshots"
    inits = r.tmp / "inits.txt"
    inits.write_text("".join(f"{snapshots / name}\n" for name in ("lenet_init_0", "lenet_0", "lenet_final_2")))
    out = r.tmp / "reinit"
    _, err = r.run(["reinit", "--arch", "lenet", "--dataset", "cifar10", "--data-path", run["data"], "--load-from",
                    snapshots / "lenet_final_2", "--inits-from", inits, "--rand", "--batch-size", "128", "--cuda",
                    "--limit", "256", "--out", out])
    assert _ignored(err) == ["--cuda"]
    doc = _json(out / "reinit_lenet_final_2.json")
    assert list(doc["init_from_epoch"]) == ["0", "1", "2", "rand"]
    assert all(len(v) == 6 for v in doc["init_from_epoch"].values())
    assert doc["init_from_epoch"]["2"] == [doc["top1_test"]] * 6  # its own weights: the baseline, exactly
    assert (out / "reinit_lenet_final_2.png").is_file()


@row("hp-mlp-train")
def _(r: Row) -> None:
    run = r.fixture("hp_mlp")
    assert sorted(p.name for p in (run["run"] / "snapshots").iterdir()) == [
        "mlp_bn_0", "mlp_bn_final_1", "mlp_bn_init_0"]  # --snapshot-all-until 10: every epoch before 10
    options = _json(run["run"] / "config.json")["options"]
    assert (options["lr_step"], options["weight_decay"], options["augmentation"], options["train_acc"]) == (
        100, 5e-4, True, True)


@row("hp-mlp-compute-projections")
def _(r: Row) -> None:
    """mlp/README.md's ``compute_projections.py --arch mlp_bn --dataset cifar10 --cuda --load-from …
    --normalize --with-linear --init-from …``."""
    snapshots = r.fixture("hp_mlp")["run"] / "snapshots"
    out = r.tmp / "proj"
    r.run(["projections", "--arch", "mlp_bn", "--dataset", "cifar10", "--cuda", "--load-from",
           snapshots / "mlp_bn_final_1", "--normalize", "--with-linear", "--init-from", snapshots / "mlp_bn_init_0",
           "--no-plots", "--out", out])
    doc = _json(out / "mlp_bn_final_1.json")
    assert [k for k in doc if k.isdigit()] == ["0"] and len(doc["0"]) == 8  # the 8 linear layers, one stage
    assert len(doc["net"]["projections"]) == 4096 + 3 * (1024 + 4096) + 10
    assert all("l2_dist" in block for block in doc["0"].values())


# ---------------------------------------------------------------------------------- the tests


def test_seam_time_takes_the_originals_dataset_flag(seam_superclass: dict, tmp_path: Path, capsys,
                                                    monkeypatch) -> None:
    """calculate_time_cost.py's ``--model resnet20 --dataset cifar100`` as it is."""
    code, _, err = run_cli(["seam", "calculate_time_cost", "--model", "resnet20", "--dataset", "cifar100",
                            "--target_superclass", "0", "--weights", seam_superclass["weights"], "--masks",
                            seam_superclass["run"] / "masks.pth", "--repeats", "1", "--warmup", "0",
                            "--out", tmp_path / "time"], capsys, monkeypatch)
    assert code == 0, err


def _params() -> list:
    return [pytest.param(i, marks=pytest.mark.slow) if i in SLOW_ROWS else i for i in ROWS]


@pytest.mark.parametrize("row_id", _params())
def test_row(row_id: str, request: pytest.FixtureRequest, tmp_path: Path, capsys, monkeypatch) -> None:
    ROWS[row_id](Row(request, tmp_path, capsys, monkeypatch))


def test_every_row_has_a_test() -> None:
    """The row ids of docs/compat.md equal the ids tested here (each doc row once in its script table)."""
    ids = doc_row_ids()
    assert ids, f"no row ids found in {COMPAT_DOC}"
    assert set(ids) == set(ROWS), {"rows without a test": sorted(set(ids) - set(ROWS)),
                                   "tests without a row": sorted(set(ROWS) - set(ids))}
