"""Issue 18: the original ``main.py`` command lines run through jaxnets (aliases, ignored flags,
the positional model of ``essential``) and the ImageNet squash-to-224 eval (``--eval-resize``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from PIL import Image

from jaxnets.methods.decompose.indices import write_indices

GPU_WARNING = "warning: --gpu is ignored"


def _index_file(tmp_path: Path, k: int = 5) -> Path:
    """A valid (10, k) table over digits_cnn's 64 pooled channels."""
    return write_indices(tmp_path / f"k{k}.json", np.stack([(np.arange(k) + 3 * c) % 64 for c in range(10)]))


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_finetune_original_command_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """``main.py finetune MODEL -i F -w W --gpu 0 --lr … --num-epochs 1 -b 64`` (+ ``--data``)."""
    from jaxnets.api import load, open_data
    from jaxnets.io import save_variables

    weights = save_variables(tmp_path / "digits_cnn_w", load("digits_cnn", data=open_data("digits", "train")).variables,
                             {"model": "digits_cnn"})
    index_file = _index_file(tmp_path)
    out = tmp_path / "ft"
    code, stdout, err = run_cli(["finetune", "digits_cnn", "--inds-file", index_file, "--weights-file", weights,
                                 "--gpu", "0", "--lr", "0.001", "--num-epochs", "1", "-b", "64",
                                 "--data", "digits", "--limit", "128", "--eval-limit", "64", "--no-export",
                                 "--out", out], capsys, monkeypatch)
    assert code == 0, err
    assert [w for w in _warnings(err) if w.startswith(GPU_WARNING)] and len(_warnings(err)) == 1, err
    report = json.loads((out / "results.json").read_text())
    assert report["schema"] == "jaxnets.decompose.finetune/1"
    assert report["weights"] == str(weights) and report["indices"] == str(index_file) and report["k"] == 5
    assert (report["lr"], report["batch_size"], report["epochs_completed"], report["steps"]) == (0.001, 64, 1, 2)
    assert 0.0 <= report["final_top1"] <= 1.0 and f"{100 * report['final_top1']:.2f} %" in stdout
    recorded = json.loads((out / "config.json").read_text())["options"]
    assert recorded["epochs"] == 1 and "gpu" not in recorded  # the ignored flag is not a setting


def test_essential_positional_model_and_ignored_flags(tmp_path: Path, capsys, monkeypatch) -> None:
    """``main.py essential MODEL …`` parses every flag for every command: --lr and --num-epochs
    are accepted with a warning each; the positional model is ``--model``."""
    out = tmp_path / "ess"
    code, stdout, err = run_cli(["essential", "digits_cnn", "--inds-file", _index_file(tmp_path), "-g", "0",
                                 "--lr", "1e-4", "--num-epochs", "3", "--data", "digits", "--limit", "100",
                                 "--out", out], capsys, monkeypatch)
    assert code == 0, err
    assert sum(w.startswith(("warning: --gpu", "warning: --lr", "warning: --num-epochs")) for w in _warnings(err)) == 3
    report = json.loads((out / "results.json").read_text())
    assert report["schema"] == "jaxnets.decompose.essential/1" and report["totals"]["ours"]["total"] == 100
    assert list(json.loads((out / "results_essential_features.json").read_text())) == ["ours"]
    assert json.loads((out / "config.json").read_text())["options"]["model"] == "digits_cnn"
    assert "ours: clean" in stdout


def test_essential_model_given_twice_must_agree(tmp_path: Path, capsys, monkeypatch) -> None:
    code, _, err = run_cli(["essential", "resnet20", "--model", "digits_cnn", "--inds-file", _index_file(tmp_path),
                            "--out", tmp_path / "x"], capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == ["error: essential got the model twice: 'resnet20' and --model 'digits_cnn'"]


@pytest.mark.needs_shared_data
def test_essential_original_readme_command_exact_subset(shared_data: Path, cifar_exact: Path, tmp_path: Path,
                                                        capsys, monkeypatch) -> None:
    """The README's ``essential resnet20 -w resnet20-12fca82f.th --gpu 0`` (+ our index file and
    the data): the seeded counts of docs/decompose.md, exactly."""
    dtd = shared_data / "decomposing-the-deep"
    out = tmp_path / "ess"
    code, _, err = run_cli(["essential", "resnet20", "-w", shared_data / "weights" / "resnet20-12fca82f.th",
                            "--gpu", "0", "--inds-file", dtd / "resnet20_cifar-10_indices.json",
                            "--data", f"cifar10:{cifar_exact}", "--out", out, "-q"], capsys, monkeypatch)
    assert code == 0, err
    assert GPU_WARNING in err
    rows = json.loads((out / "results_essential_features.json").read_text())["ours"]
    assert list(rows) == [str(c) for c in range(10)]
    totals = json.loads((out / "results.json").read_text())["totals"]["ours"]
    assert (totals["total"], totals["clean"], totals["noise_at_inf"], totals["noise_at_noninf"]) == (846, 777, 378, 728)


# ---------------------------------------------------------------------------------- --eval-resize


@pytest.fixture(scope="module")
def ilsvrc(tmp_path_factory) -> Path:
    """A tiny ``ILSVRC/{train,val}/<wnid>/*.JPEG`` folder of non-square images."""
    root = tmp_path_factory.mktemp("imagenet") / "ILSVRC"
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("n01440764", "n01443537"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(2):
                h, w = rng.integers(40, 90, size=2)
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{cls}_{i}.JPEG")
    return root


def _pil_squash(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR))


def test_squash_transform_is_a_pil_resize_to_224() -> None:
    from jaxnets.data.transforms import imagenet_eval_squash

    img = np.random.default_rng(1).integers(0, 256, (57, 91, 3), dtype=np.uint8)
    out = imagenet_eval_squash(img)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.asarray(Image.fromarray(img).resize((224, 224), Image.BILINEAR)))


def test_eval_loader_squashes_or_crops_imagenet_folders(ilsvrc: Path) -> None:
    """The eval pipeline of the DtD commands: ``squash`` = PIL resize to 224×224 of each decoded
    image; ``crop`` = resize-256 + centre 224 (the standard, unchanged default of the loader)."""
    from jaxnets.api import open_data
    from jaxnets.data.pipeline import eval_loader
    from jaxnets.data.transforms import imagenet_eval
    from jaxnets.models.api import resolve

    data = open_data(f"imagefolder:{ilsvrc}", "val")
    files = sorted((ilsvrc / "val").glob("*/*.JPEG"))
    spec = resolve("resnet18")
    squash = next(iter(eval_loader(spec, data.source, 4, eval_resize="squash").epoch(0)))
    crop = next(iter(eval_loader(spec, data.source, 4).epoch(0)))
    assert squash.images.shape == crop.images.shape == (4, 224, 224, 3)
    for i, file in enumerate(files):
        np.testing.assert_array_equal(squash.images[i], _pil_squash(file))
        with Image.open(file) as im:
            np.testing.assert_array_equal(crop.images[i], imagenet_eval(np.asarray(im.convert("RGB"))))
    assert not np.array_equal(squash.images, crop.images)


@pytest.mark.parametrize("command", ["indices", "finetune", "essential"])
def test_eval_resize_is_checked(command: str, capsys, monkeypatch) -> None:
    args = {"indices": ["indices", "digits_cnn"], "finetune": ["finetune", "digits_cnn", "-i", "x.json"],
            "essential": ["essential", "-i", "x.json"]}[command]
    args += ["--eval-resize", "stretch"]
    code, _, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and err.strip() == "error: --eval-resize must be crop or squash, got 'stretch'"


def test_indices_squash_on_an_imagenet_folder(ilsvrc: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """``jaxnets indices resnet18 --eval-resize squash`` on the folder counts exactly what the
    library counts on the same images squashed by PIL beforehand (already 224 px: no resize)."""
    from jaxnets.api import Data, load
    from jaxnets.data.sources import ArraySource
    from jaxnets.methods.decompose.config import IndicesConfig
    from jaxnets.methods.decompose.runners import indices

    out = tmp_path / "ind"
    code, _, err = run_cli(["indices", "resnet18", "--data", f"imagefolder:{ilsvrc}", "--split", "val",
                            "--num-classes", "2", "--k", "5", "--eval-resize", "squash", "--batch-size", "4",
                            "--out", out, "-q"], capsys, monkeypatch)
    assert code == 0, err
    report = json.loads((out / "results.json").read_text())
    assert report["schema"] == "jaxnets.decompose.indices/1" and report["images_per_class"] == [2, 2]
    assert json.loads((out / "config.json").read_text())["options"]["eval_resize"] == "squash"
    files = sorted((ilsvrc / "val").glob("*/*.JPEG"))
    squashed = ArraySource(np.stack([_pil_squash(f) for f in files]), np.array([0, 0, 1, 1]), name="squashed",
                           split="val", class_names=["n01440764", "n01443537"])
    data = Data(source=squashed, text="squashed", split="val")
    model = load("resnet18", None, num_classes=2, data=data)
    lib = indices(model, data, IndicesConfig(k=(5,), batch_size=4, eval_resize="crop"))
    np.testing.assert_array_equal(np.asarray(report["k"]["5"]["counts"]), np.asarray(lib.counts[5]))
    assert np.asarray(lib.counts[5]).sum() == 4 * 5  # every image adds its top-5 channels
