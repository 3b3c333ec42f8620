"""Smoke test of the benchmark scripts: they run and print/record a table. No timing asserts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_common as bc  # noqa: E402


def test_markdown_table_and_sections(tmp_path: Path) -> None:
    table = bc.markdown_table(("a", "b"), [(1, "x"), (22, "y")], ("l", "r"))
    assert table.splitlines() == ["| a | b |", "|:--|--:|", "| 1 | x |", "| 22 | y |"]
    doc = tmp_path / "bench.md"
    bc.append_table("first", ("a",), [(1,)], header=["- h"], notes=["n"], path=doc)
    bc.append_method_table("methods", [bc.MethodRow("wfn", "clustering", "resnet18", 2.0, 100.0,
                                                    goal=50)], path=doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n")
    assert text.index("— first") < text.index("— methods")  # appended, oldest first
    assert "| wfn | clustering | resnet18 | 2 | 100 | 50.00× | ≥ 50× |" in text


def test_measure_counts_steps() -> None:
    calls = []
    t = bc.measure(lambda: calls.append(1), lambda _: None, items=4, repeats=3, warmup=2, steps=5)
    assert len(calls) == 2 + 3 * 5
    assert t.steps == 5 and len(t.seconds) == 3 and t.median_rate > 0
    info = bc.machine_info()
    assert info["usable_cpus"] >= 1 and "python" in bc.library_versions()


def test_bench_models_quick(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    doc, out = tmp_path / "benchmarks.md", tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_models.py"), "--models", "resnet20", "--quick",
         "--threads", "1", "--record", "--doc", str(doc), "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| model | input | batch | step | jaxnets img/s") for line in lines)
    rows = [line for line in lines if line.startswith("| resnet20 |")]
    assert [r.split("|")[4].strip() for r in rows] == ["eval", "train"]
    data = json.loads(out.read_text())
    assert {r["mode"] for r in data["rows"]} == {"eval", "train"}
    assert all(r["jax_rate"] > 0 and r["torch_rate"] > 0 for r in data["rows"])
    # same weights on both sides: converted logits agree with the PyTorch reference
    assert data["checks"][0]["eval_max_abs_logit_diff"] < 1e-4
    recorded = doc.read_text()
    assert "bench_models.py" in recorded and "| resnet20 | 32 px | 2 | train |" in recorded
    assert "**Versions:**" in recorded and "**Command:**" in recorded


def test_bench_models_epoch_smoke(tmp_path: Path, cifar_jpeg: Path) -> None:
    """The full-epoch mode on 64 JPEG images, 1 and 2 fake devices, plus the PyTorch loop."""
    pytest.importorskip("torch")
    doc = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_models.py"), "--models", "", "--threads", "1",
         "--epoch-data", str(cifar_jpeg), "--epoch-limit", "64", "--epoch-batch", "16",
         "--epoch-devices", "1,2", "--record", "--doc", str(doc)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| resnet20 |")]
    assert [(r.split("|")[2].strip(), r.split("|")[3].strip()) for r in rows] == [
        ("jaxnets", "1"), ("jaxnets", "2"), ("PyTorch", "1")]
    assert all(r.split("|")[4].strip() == "64" for r in rows)  # 64 images, drop_last exact
    assert "Full training epochs" in doc.read_text()
