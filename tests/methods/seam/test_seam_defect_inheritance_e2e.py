"""SeaM's defect inheritance end to end (spec §2.10, §3.5, §4.7, §4.8) on a small setting:
resnet20 (resnet20-12fca82f.th, the "public" pretrained model) on the CIFAR-10 binary target
cat-vs-rest of the exact subset — standard fine-tuning vs SeaM re-engineer-then-fine-tune (and the
retrain baseline), PGD from the original model, the DIR of each printed and in results.json.

The command lines are the original scripts' (underscore flags, script names as commands) plus
what the original hard-codes (--weights, --data) and the small-setting limits; the DIR values
are not asserted (2 epochs on 128 images), their computation is (against the counts, and the
same number from `seam finetune` and from `seam eval-robustness` on its run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import run_cli

LINE = re.compile(r"Clean Top-1: (\d+\.\d\d) \| Attack Success Rate: (\d+\.\d\d)")
SMALL = ["--target", "binary:3", "--limit", "128", "--test-limit", "64"]


def _dir_line(out: str) -> tuple[float, float]:
    found = LINE.search(out)
    assert found, out
    return float(found.group(1)), float(found.group(2))


def _check_results(path: Path, printed: tuple[float, float]) -> dict:
    r = json.loads(path.read_text())
    assert r["schema"] == "jaxnets.seam.robustness/1" and r["n"] == 64 and r["num_classes"] == 2
    assert r["dir"] == pytest.approx(100 * r["inherited"] / r["clean_correct"])
    assert r["attack_success_rate"] == r["dir"] and r["clean_top1"] == pytest.approx(100 * r["clean_correct"] / 64)
    assert (round(r["clean_top1"], 2), round(r["dir"], 2)) == printed
    assert r["pgd"]["steps"] == 2 and r["pgd"]["eps"] == 0.1 and r["pgd"]["attacked"] == "resnet20"
    return r


@pytest.mark.slow
def test_seam_defect_inheritance_standard_vs_seam(tmp_path: Path, shared_data: Path, cifar_exact: Path,
                                                  capsys, monkeypatch) -> None:
    weights = shared_data / "weights" / "resnet20-12fca82f.th"
    if not weights.is_file():
        pytest.skip(f"{weights} not found")
    data = ["--weights", weights, "--data", f"cifar10:{cifar_exact}"]
    # standard_finetune.py --model resnet20 --dataset … --dropout 0.0 --n_epochs 2 --lr 0.005 …
    code, out, err = run_cli(["seam", "standard_finetune", "--model", "resnet20", "--dropout", "0.0", "--n_epochs", "2",
                              "--lr", "0.005", "--momentum", "0.0", "--weight_decay", "0.0001", *data, *SMALL,
                              "--out", tmp_path / "standard"], capsys, monkeypatch)
    assert code == 0, err
    standard = json.loads((tmp_path / "standard" / "results.json").read_text())
    assert standard["method"] == "standard" and standard["epochs_run"] == 2 and 0 < standard["acc"] <= 1
    # reengineering_finetune.py --model resnet20 … --lr_mask 0.6 --alpha 1 --prune_threshold 0.2 (a big
    # lr_mask: two epochs of two steps must prune something)
    code, out, err = run_cli(["seam", "reengineering_finetune", "--model", "resnet20", "--n_epochs", "2",
                              "--lr_s1_output_layer", "0.1", "--lr_s2_output_layer", "0.001", "--lr_mask", "0.6",
                              "--alpha", "1", "--prune_threshold", "0.2", "--lr_s3_output_layer", "0.05",
                              "--lr_s3_hidden_layer", "0.005", "--momentum", "0.0", "--weight_decay", "0.0001",
                              "--early_stop", "30", "--dropout", "0.0", "--pgd-steps", "2", *data, *SMALL,
                              "--out", tmp_path / "seam"], capsys, monkeypatch)
    assert code == 0, err
    seam_printed = _dir_line(out)
    defect = json.loads((tmp_path / "seam" / "defect.json").read_text())
    # every conv weight of resnet20 (option A: no shortcut convs) is masked, the output layer is not
    assert defect["retention"] < 1 and defect["step2"]["n_entries"] == 267_696
    assert (round(defect["clean_top1"], 2), round(defect["dir"], 2)) == seam_printed
    # eval_robustness.py --model resnet20 --eval_method standard|seam (+ the run folder to read)
    dirs = {}
    for method, run in (("standard", "standard"), ("seam", "seam")):
        code, out, err = run_cli(["seam", "eval_robustness", "--model", "resnet20", "--eval_method", method,
                                  "--dropout", "0.0", "--finetuned", tmp_path / run, "--pgd-steps", "2", *data,
                                  "--target", "binary:3", "--test-limit", "64", "--out", tmp_path / f"dir-{method}"],
                                 capsys, monkeypatch)
        assert code == 0, err
        assert "--dropout is ignored" in err
        dirs[method] = _check_results(tmp_path / f"dir-{method}" / "results.json", _dir_line(out))
    # the same measurement from `seam finetune` and from eval-robustness on its run
    assert dirs["seam"]["dir"] == defect["dir"] and dirs["seam"]["clean_top1"] == defect["clean_top1"]
    assert dirs["standard"]["eval_method"] == "standard" and dirs["standard"]["finetuned"].endswith("model_ft.msgpack")
    # retrain.py --model resnet20 … (from scratch) and its DIR
    code, out, err = run_cli(["seam", "retrain", "--model", "resnet20", "--dropout", "0.0", "--n_epochs", "1",
                              "--lr", "0.1", "--momentum", "0.5", "--weight_decay", "0.0001", "--data",
                              f"cifar10:{cifar_exact}", *SMALL, "--out", tmp_path / "retrain"], capsys, monkeypatch)
    assert code == 0, err
    code, out, err = run_cli(["seam", "eval-robustness", "resnet20", "--finetuned", tmp_path / "retrain",
                              "--pgd-steps", "2", *data, "--target", "binary:3", "--test-limit", "64",
                              "--out", tmp_path / "dir-retrain"], capsys, monkeypatch)
    assert code == 0, err
    assert _check_results(tmp_path / "dir-retrain" / "results.json", _dir_line(out))["eval_method"] == "retrain"
