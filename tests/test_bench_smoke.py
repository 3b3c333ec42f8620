"""Smoke test of the benchmark scripts: they run and print/record a table. No timing asserts."""

from __future__ import annotations

import json
import os
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
         "--threads", "1", "--record", "--doc", str(doc), "--json", str(out),
         "--torch-variants", "eager,channels_last"],  # torch.compile: minutes of inductor on CPU
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
    assert all(set(r["torch_rates"]) == {"eager", "channels_last"} for r in data["rows"])
    assert all(r["torch_rate"] == max(r["torch_rates"].values()) for r in data["rows"])
    recorded = doc.read_text()
    assert "bench_models.py" in recorded and "| resnet20 | 32 px | 2 | train |" in recorded
    assert "**Versions:**" in recorded and "**Command:**" in recorded


def _python_with_torch() -> str:
    """This interpreter where it has torch, else the main test leg's venv (the 3.12 leg)."""
    if bc.torch_importable():
        return sys.executable
    main_leg = ROOT / ".venv" / "bin" / "python"
    if main_leg.exists() and subprocess.run([str(main_leg), "-c", "import torch"],
                                            capture_output=True, timeout=120).returncode == 0:
        return str(main_leg)
    pytest.skip(f"no Python with torch for the PyTorch worker (torch missing here and in {main_leg})")


def test_bench_models_with_a_pytorch_worker_process(tmp_path: Path) -> None:
    """The PyTorch side in another process (as from the torch-less 3.12 venv): same weights and
    batch through files, repeats interleaved over the pipe."""
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_models.py"), "--models", "resnet20", "--quick",
         "--threads", "1", "--modes", "train", "--torch-variants", "eager",
         "--torch-python", _python_with_torch(), "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert "worker process" in data["torch_side"]
    (row,) = data["rows"]
    assert row["mode"] == "train" and row["torch_rates"]["eager"] > 0 and row["jax_rate"] > 0
    assert data["checks"][0]["eval_max_abs_logit_diff"] < 1e-4  # the worker's weights were used
    assert "parity: fp32 logits" in proc.stdout


def test_bench_models_onednn_ab_times_plain_xla_in_a_worker(tmp_path: Path) -> None:
    """--onednn-ab: jaxnets on plain XLA in a worker process (flags off) as one more side."""
    from jaxnets.runtime import onednn_supported

    if not onednn_supported():
        pytest.skip("the oneDNN flags need jaxlib >= 0.12 on x86")
    out = tmp_path / "rows.json"
    env = {k: v for k, v in os.environ.items() if k not in ("JAXNETS_ONEDNN", "XLA_FLAGS")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench_models.py"), "--models", "resnet20", "--quick",
         "--threads", "1", "--modes", "train", "--no-torch", "--onednn-ab", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(out.read_text())["rows"]
    assert row["jax_rate"] > 0 and row["jax_plain_rate"] > 0
    assert "| jaxnets oneDNN img/s | jaxnets plain XLA img/s | oneDNN / plain |" in proc.stdout
    assert "plain-XLA side:** worker process, JAXNETS_ONEDNN=0, XLA_FLAGS=(unset)" in proc.stdout


@pytest.mark.slow
def test_bench_gpu_script_smoke_on_cpu(tmp_path: Path) -> None:
    """scripts/bench_gpu.sh --smoke: the GPU script's arguments and code path, tiny, on CPU."""
    out = tmp_path / "rows.json"
    env = {**os.environ, "PYTHON": sys.executable, "TORCH_VARIANTS": "eager"}
    if not bc.torch_importable():
        env["JAXNETS_TORCH_PYTHON"] = _python_with_torch()
    proc = subprocess.run(["bash", str(SCRIPTS / "bench_gpu.sh"), "--smoke", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert [(r["model"], r["mode"]) for r in data["rows"]] == [
        ("resnet50", "eval"), ("resnet50", "train"), ("resnet20", "eval"), ("resnet20", "train")]
    assert "parity: fp32 logits" in proc.stdout and "all ≤ 0.0001" in proc.stdout
    assert "JAXNETS_CONV=xla" in proc.stdout  # the CPU conv VJP is off, as on the GPU


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


def test_bench_ops_profile_classifies_both_sides(tmp_path: Path) -> None:
    """--profile: jaxnets' train step by op kind (both conv implementations) next to PyTorch's
    (torch.profiler; in a worker process where torch is missing), with the conv rate vs peak."""
    args = [sys.executable, str(SCRIPTS / "bench_ops.py"), "--profile", "resnet20", "--batch", "4",
            "--profile-steps", "1", "--threads", "1"]
    if not bc.torch_importable():
        args += ["--torch-python", _python_with_torch()]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("| op kind | jaxnets autodiff conv ms/step | share | jaxnets fast "
                               "conv VJP (default) ms/step | share | PyTorch channels_last eager "
                               "ms/step | share |") for line in lines)
    conv_rows = [line for line in lines if line.startswith("| conv: ")]
    assert any("filter gradient" in line for line in conv_rows)
    assert any(line.startswith("| conv: backward (input + filter gradient) |") for line in conv_rows)
    assert any(line.startswith("| **conv rate: step FLOPs / conv time") for line in lines)
    everything_else = next(line for line in lines if "everything else" in line)
    assert "—" not in everything_else  # every side has its rest measured
