"""What `pip install .` puts on a user's machine: `jaxnets.converters`, and no top-level `converters`.

Built offline (no build isolation) into a throw-away target folder; imports run in a fresh
interpreter from a working directory holding an unrelated ``converters/`` package, which must
neither shadow nor break jaxnets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    work = tmp_path_factory.mktemp("pkg")
    wheels = work / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, cwd=work, env={**os.environ, "PIP_NO_INPUT": "1"})
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("jaxnets-*.whl")
    target = work / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(target)
    assert "jaxnets/converters/torch_reader.py" in names
    assert not [n for n in names if n.startswith("converters/")], "a top-level converters package was installed"
    # every package of the source tree is in the wheel (pyproject lists them by hand)
    packages = sorted(str(p.parent.relative_to(ROOT)) for p in (ROOT / "jaxnets").rglob("__init__.py"))
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"packages missing from pyproject's [tool.setuptools] packages: {missing}"
    return target


def _python(code: str, site: Path, cwd: Path) -> subprocess.CompletedProcess:
    # -s: no user site; PYTHONPATH first so the wheel's files, not the editable checkout, are imported
    return subprocess.run([sys.executable, "-s", "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(site)})


def test_wheel_installs_converters_under_jaxnets(installed: Path, tmp_path: Path) -> None:
    done = _python("import jaxnets.converters as c, jaxnets.models; print(c.__file__)", installed, tmp_path)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed)


def test_no_top_level_converters_module(installed: Path, tmp_path: Path) -> None:
    done = _python("import converters", installed, tmp_path)
    assert done.returncode != 0 and "No module named 'converters'" in done.stderr


def test_users_converters_folder_does_not_shadow(installed: Path, tmp_path: Path) -> None:
    own = tmp_path / "converters"
    own.mkdir()
    (own / "__init__.py").write_text("raise ImportError('the user\\'s own converters package')\n")
    code = ("import jaxnets.models, jaxnets.converters.torch_reader as r; "
            "from jaxnets.models.registry import get_spec; get_spec('resnet20'); print(r.__name__)")
    done = _python(code, installed, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "jaxnets.converters.torch_reader"
