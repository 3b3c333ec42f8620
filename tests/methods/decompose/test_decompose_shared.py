"""Decomposing the Deep on ../shared/data: the exact-subset numbers of the issue and spec §8."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from cli_helpers import run_cli  # noqa: E402

pytestmark = pytest.mark.needs_shared_data

FILES = {5: "resnet20_cifar-10_indices.json", 10: "resnet20_cifar-10_10_10_indices.json",
         20: "resnet20_cifar-10_20_20_indices.json"}


@pytest.fixture(scope="module")
def dtd(shared_data):
    path = shared_data / "decomposing-the-deep"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def weights(shared_data):
    return shared_data / "weights" / "resnet20-12fca82f.th"


def _probe():
    n, c, h, w = np.meshgrid(np.arange(2), np.arange(3), np.arange(32), np.arange(32), indexing="ij")
    x = np.sin(0.1 * (3072 * n + 1024 * c + 32 * h + w)).astype(np.float32)
    return jnp.asarray(x.transpose(0, 2, 3, 1))


def test_probe_decomposed_logits_and_final_weights(dtd, weights):
    """Spec A2 (decomposed logits, k = 5) and A6 (final_weights rows 0 and 9)."""
    from jaxnets.methods.decompose.head import apply_head_mask, final_weights, mask_tree
    from jaxnets.methods.decompose.indices import load_indices
    from jaxnets.models.api import load_weights, resolve

    spec = resolve("resnet20")
    module = spec.create()
    variables = load_weights(spec, module, weights)
    table = load_indices(dtd / FILES[5], num_classes=10, num_features=64)
    mask = mask_tree(variables["params"], "linear", table)
    logits = module.apply({**variables, "params": apply_head_mask(variables["params"], mask)}, _probe())
    np.testing.assert_allclose(np.asarray(logits[0]), [1.30547, 1.63556, 3.06789, 5.25602, 1.19303,
                                                       0.41967, 0.58527, 4.68727, 0.73835, 2.02345], atol=1e-4)
    np.testing.assert_allclose(np.asarray(logits[1]), [1.74343, 1.88670, 3.27880, 5.25361, 0.93002,
                                                       0.50666, 0.53336, 4.25640, 0.87350, 2.33775], atol=1e-4)
    v, b = final_weights(variables["params"], "linear", table)
    np.testing.assert_allclose(v[0], [0.948471, 1.008671, 1.124241, 1.297942, 1.066182], atol=1e-6)
    np.testing.assert_allclose(v[9], [0.990609, 1.440708, 1.069536, 1.181063, 1.461138], atol=1e-6)
    np.testing.assert_allclose(b[:3], [0.193559, -0.343101, 0.111205], atol=1e-6)


@pytest.mark.parametrize(("k", "expected", "correct"), [(5, 89.13, 754), (10, 91.73, 776), (20, 92.32, 781)])
def test_validate_indices_exact_subset(dtd, weights, cifar_exact, tmp_path, capsys, monkeypatch, k, expected, correct):
    code, out, err = run_cli(["validate", "resnet20", "--weights", weights, "--data", f"cifar10:{cifar_exact}",
                              "--normalize", "cifar", "--indices", dtd / FILES[k], "--out", tmp_path, "-q"],
                             capsys, monkeypatch)
    assert code == 0, err
    assert f"decomposed (k={k}): top-1 {expected:.2f} % ({correct}/846)" in out
    r = json.loads((tmp_path / "results.json").read_text())
    assert (r["correct"], r["n"]) == (777, 846)  # the full model, side by side
    assert (r["decomposed"]["correct"], r["decomposed"]["k"]) == (correct, k)
    assert round(100 * r["decomposed_top1"], 2) == expected and r["full_top1"] == r["top1"]


def test_validate_all_channels_equals_full(weights, cifar_exact, tmp_path, capsys, monkeypatch):
    from jaxnets.methods.decompose.indices import full_table, write_indices

    table = write_indices(tmp_path / "all64.json", full_table(10, 64))
    code, out, err = run_cli(["validate", "resnet20", "--weights", weights, "--data", f"cifar10:{cifar_exact}",
                              "--indices", table, "--out", tmp_path / "run", "--limit", "200", "--save-logits",
                              "-q"], capsys, monkeypatch)
    assert code == 0, err
    full = np.load(tmp_path / "run" / "logits.npz")["logits"]
    dec = np.load(tmp_path / "run" / "logits_decomposed.npz")["logits"]
    np.testing.assert_array_equal(full, dec)


@pytest.mark.multidevice
def test_validate_indices_multi_device(dtd, weights, cifar_exact, tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(["validate", "resnet20", "--weights", weights, "--data", f"cifar10:{cifar_exact}",
                              "--normalize", "cifar", "--indices", dtd / FILES[5], "--out", tmp_path,
                              "--devices", "2", "--batch-size", "128", "-q"], capsys, monkeypatch)
    assert code == 0, err
    assert "top-1 89.13 % (754/846)" in out


def test_mutual_info_six_decimals(dtd, tmp_path, capsys, monkeypatch):
    args = ["mutual-info", "--csg-weights", dtd / "best_save_CSG.pth", "--out", tmp_path]
    for f in FILES.values():
        args += ["--indices", dtd / f]
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    assert "ascending" in err  # the visible warning
    r = json.loads((tmp_path / "results.json").read_text())
    ours = [r["ours"][k]["score"] for k in ("5", "10", "20")]
    asc = [r["csg"]["ascending"][k]["score"] for k in ("5", "10", "20")]
    desc = [r["csg"]["descending"][k]["score"] for k in ("5", "10", "20")]
    assert [round(v, 7) for v in ours] == [0.0345378, 0.0570500, 0.0708032]
    assert [round(v, 7) for v in asc] == [0.0375091, 0.0540359, 0.0817442]
    assert [round(v, 7) for v in desc] == [0.0339446, 0.0553250, 0.0873964]
    assert abs(ours[0] - 0.03453775959861226) < 1e-7 and abs(asc[0] - 0.03750908408724534) < 1e-7
    assert [round(r["ours"][k]["off_diagonal"], 7) for k in ("5", "10", "20")] == [0.0079124, 0.0152334, 0.0096606]
    assert [round(r["ours"][k]["self"], 7) for k in ("5", "10", "20")] == [0.2741659, 0.4333989, 0.6210864]
    assert "| 5 | 0.0345378 | 0.0375091 | 0.0339446 |" in out
    assert (tmp_path / "mutual_info.md").is_file()


def test_csg_gates_reproduce_published_file(dtd):
    from jaxnets.methods.decompose.csg import csg_indices, load_gates
    from jaxnets.methods.decompose.indices import load_indices

    g = load_gates(dtd / "best_save_CSG.pth")
    assert g.shape == (10, 64) and int((g < 0).sum()) == 48
    assert g.min() == pytest.approx(-0.0725, abs=1e-4) and g.max() == pytest.approx(0.8031, abs=1e-4)
    np.testing.assert_array_equal(csg_indices(g, 5), load_indices(dtd / "resnet20_cifar-10_csg_indices.json"))
    assert csg_indices(g, 5, "descending")[0].tolist() == [28, 38, 16, 43, 10]


def test_extraction_overlaps_shipped_files(dtd, weights, cifar_exact, tmp_path, capsys, monkeypatch):
    from jaxnets.methods.decompose.indices import load_indices, overlap

    code, out, err = run_cli(["indices", "resnet20", "--weights", weights, "--data", f"cifar10:{cifar_exact}",
                              "--k", "5,10,20", "--out", tmp_path, "-q"], capsys, monkeypatch)
    assert code == 0, err
    got = {k: overlap(load_indices(tmp_path / f"resnet20_k{k}_indices.json"), load_indices(dtd / f))
           for k, f in FILES.items()}
    assert got[5] >= 47 and got[10] >= 97 and got[20] >= 199, got
    r = json.loads((tmp_path / "results.json").read_text())
    assert sum(r["images_per_class"]) == 4660
    counts = np.asarray(r["k"]["5"]["counts"])
    assert counts.shape == (10, 64) and counts.sum() == 5 * 4660
    for k in (5, 10, 20):
        assert (tmp_path / f"histograms_k{k}.png").stat().st_size > 1000
    # lists come in decreasing count, ties to the lower channel id (determinism: a pure function)
    t10 = load_indices(tmp_path / "resnet20_k10_indices.json")
    c10 = np.asarray(r["k"]["10"]["counts"])
    for c in range(10):
        keys = [(-c10[c, d], d) for d in t10[c]]
        assert keys == sorted(keys)
    assert 0.2 < r["k"]["5"]["mean_mass"] < 0.3


def test_essential_schema_and_seed(dtd, weights, cifar_exact, tmp_path, capsys, monkeypatch):
    def run(out, seed):
        code, _, err = run_cli(["essential", "--weights", weights, "--indices", dtd / FILES[5],
                                "--csg-weights", dtd / "best_save_CSG.pth", "--data", f"cifar10:{cifar_exact}",
                                "--seed", seed, "--out", out, "-q"], capsys, monkeypatch)
        assert code == 0, err
        return (out / "results_essential_features.json").read_text()

    a, b, c = run(tmp_path / "a", 0), run(tmp_path / "b", 0), run(tmp_path / "c", 1)
    assert a == b and a != c
    data = json.loads(a)
    assert list(data) == ["ours", "csg"]
    for run_name in data:
        assert list(data[run_name]) == [str(i) for i in range(10)]
        for row in data[run_name].values():
            assert set(row) == {"noise_at_inf", "noise_at_noninf"}
            assert all(isinstance(v, int) and 0 <= v <= 1000 for v in row.values())
    tot = json.loads((tmp_path / "a" / "results.json").read_text())["totals"]
    assert tot["ours"]["total"] == 846 and tot["ours"]["clean"] == 777
    # influential channels matter for ours; CSG's (ascending) ones do not
    assert tot["ours"]["noise_at_inf"] < tot["ours"]["noise_at_noninf"]
    assert tot["csg"]["noise_at_inf"] > 10 * tot["csg"]["noise_at_noninf"]
    # the seeded counts of docs/results.md, exactly (deterministic for a seed)
    counts = {name: (t["clean"], t["noise_at_inf"], t["noise_at_noninf"]) for name, t in tot.items()}
    assert counts == {"ours": (777, 378, 728), "csg": (749, 781, 27)}, counts
    assert (tmp_path / "a" / "essential.png").stat().st_size > 1000


def test_bad_inputs(dtd, weights, cifar_exact, tmp_path, capsys, monkeypatch):
    data = ["--data", f"cifar10:{cifar_exact}"]
    code, _, err = run_cli(["validate", "resnet20", "--weights", weights, *data, "--indices",
                            dtd / "resnet50_imagenet_indices.json", "--out", tmp_path / "v"], capsys, monkeypatch)
    assert code == 2 and "1000 classes but the model has 10" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({str(c): [1, 2, 99] for c in range(10)}))
    code, _, err = run_cli(["validate", "resnet20", "--weights", weights, *data, "--indices", bad,
                            "--out", tmp_path / "w"], capsys, monkeypatch)
    assert code == 2 and "out of range" in err and "64 channels" in err
    code, _, err = run_cli(["essential", "--weights", weights, "--indices", dtd / FILES[5], "--csg-weights",
                            weights, *data, "--out", tmp_path / "e"], capsys, monkeypatch)
    assert code == 2 and "no CSG gates" in err
    code, _, err = run_cli(["mutual-info", "--csg-weights", weights, "--out", tmp_path / "m"], capsys, monkeypatch)
    assert code == 2 and "no CSG gates" in err
    short = tmp_path / "short.json"
    short.write_text(json.dumps({str(c): [1, 2] for c in range(9)}))
    code, _, err = run_cli(["finetune", "resnet20", "--weights", weights, *data, "--indices", short,
                            "--out", tmp_path / "f"], capsys, monkeypatch)
    assert code == 2 and "9 classes but the model has 10" in err
    code, _, err = run_cli(["finetune", "resnet20", "--weights", weights, *data, "--out", tmp_path / "g"],
                           capsys, monkeypatch)
    assert code == 2 and "--indices" in err
    code, _, err = run_cli(["indices", "resnet20", "--weights", weights, *data, "--k", "5,x",
                            "--out", tmp_path / "h"], capsys, monkeypatch)
    assert code == 2 and "--k" in err


def test_mutual_info_every_k_with_one_index_file(dtd, tmp_path, capsys, monkeypatch):
    """`--indices F(k=5) --k 5,10,20` (the docs/results.md command): a CSG row for every k."""
    code, out, err = run_cli(["mutual-info", "--indices", dtd / FILES[5], "--csg-weights", dtd / "best_save_CSG.pth",
                              "--k", "5,10,20", "--out", tmp_path], capsys, monkeypatch)
    assert code == 0, err
    r = json.loads((tmp_path / "results.json").read_text())
    assert list(r["ours"]) == ["5"]
    for order, expected in (("ascending", [0.0375091, 0.0540359, 0.0817442]),
                            ("descending", [0.0339446, 0.0553250, 0.0873964])):
        assert [round(r["csg"][order][k]["score"], 7) for k in ("5", "10", "20")] == expected
    assert "| 5 | 0.0345378 | 0.0375091 | 0.0339446 |" in out
    assert "| 10 | — | 0.0540359 | 0.0553250 |" in out
    assert "| 20 | — | 0.0817442 | 0.0873964 |" in out


def test_validate_original_command_line(dtd, weights, cifar_exact, tmp_path, capsys, monkeypatch):
    """README: ``main.py validate resnet20 -i resnet20_cifar-10_indices.json -w resnet20-12fca82f.th
    --gpu 0`` (+ ``--data``; ``--inds-file``/``--weights-file`` and the no-op ``--lr`` too)."""
    code, out, err = run_cli(["validate", "resnet20", "--inds-file", dtd / FILES[5], "--weights-file", weights,
                              "--gpu", "0", "--lr", "0.00001", "--num-epochs", "3", "--data", f"cifar10:{cifar_exact}",
                              "--normalize", "cifar", "--out", tmp_path, "-q"], capsys, monkeypatch)
    assert code == 0, err
    assert "warning: --gpu is ignored" in err and "warning: --lr is ignored" in err
    r = json.loads((tmp_path / "results.json").read_text())
    assert (r["correct"], r["decomposed"]["correct"]) == (777, 754)
    assert "gpu" not in json.loads((tmp_path / "config.json").read_text())["options"]
