"""Export back to PyTorch (torch-free writer) and jaxnets' own orbax format, round trips."""

from __future__ import annotations

import pickletools
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest
from jaxnets.converters.convert import flatten_tree, variables_to_state_dict
from jaxnets.converters.torch_reader import load_torch_file
from jaxnets.converters.torch_writer import export_variables, save_torch_state_dict

from jaxnets.errors import CheckpointError
from jaxnets.io import is_jaxnets_checkpoint, load_variables, save_variables
from jaxnets.models.api import abstract_variables, load_weights
from jaxnets.models.registry import get_spec

ROOT = Path(__file__).resolve().parents[2]


def random_variables(name: str, seed: int = 0) -> dict:
    """Random values for every leaf of ``name`` (variances positive), without compiling init."""
    spec = get_spec(name)
    rng = np.random.default_rng(seed)
    flat = flatten_tree(abstract_variables(spec, spec.create()))
    out: dict = {}
    for path, leaf in flat.items():
        value = rng.standard_normal(leaf.shape).astype(leaf.dtype)
        if path[-1] == "kernel":  # keep activations O(1) through 20 layers
            value /= np.sqrt(np.prod(leaf.shape[:-1]), dtype=value.dtype)
        if path[-1] == "var":
            value = np.abs(value) + np.float32(0.5)
        node = out
        for seg in path[:-1]:
            node = node.setdefault(seg, {})
        node[path[-1]] = value
    return out


def assert_trees_identical(a: dict, b: dict) -> None:
    fa, fb = flatten_tree(a), flatten_tree(b)
    assert fa.keys() == fb.keys()
    for path in fa:
        x, y = np.asarray(fa[path]), np.asarray(fb[path])
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), path  # bit-identical, NaN-safe


def sample_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((4, 6)).astype(np.float32)
    return {
        "conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "transposed": base.T,  # non-contiguous input: written contiguous
        "strided": base[::2, 1::2],
        "f64": rng.standard_normal(3),
        "f16": rng.standard_normal(5).astype(np.float16),
        "bf16": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
        "i64": np.arange(-2, 3, dtype=np.int64),
        "i32": np.arange(3, dtype=np.int32),
        "u8": np.arange(250, 256, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        "scalar": np.array(0.5, dtype=np.float32),
        "empty": np.zeros((0, 4), np.float32),
        "big_endian": np.arange(4, dtype=">f4"),
    }


# ---------------------------------------------------------------- the file itself


def test_layout_alignment_and_globals(tmp_path: Path) -> None:
    state = sample_state()
    path = save_torch_state_dict(tmp_path / "s.pth", state)
    raw = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert names[0] == "archive/data.pkl"
        assert zf.read("archive/byteorder") == b"little"
        assert zf.read("archive/version").strip() == b"3"
        data_names = sorted(n for n in names if n.startswith("archive/data/"))
        assert data_names == sorted(f"archive/data/{i}" for i in range(len(state)))
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:
                                                           info.header_offset + 30])
            assert (info.header_offset + 30 + name_len + extra_len) % 64 == 0, info.filename
        pkl = zf.read("archive/data.pkl")
    globals_named = {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}
    assert globals_named == {
        "collections OrderedDict", "torch._utils _rebuild_tensor_v2", "torch FloatStorage",
        "torch DoubleStorage", "torch HalfStorage", "torch BFloat16Storage", "torch LongStorage",
        "torch IntStorage", "torch ByteStorage", "torch BoolStorage"}
    assert pkl[:2] == b"\x80\x02"  # protocol 2, as torch.save writes


def test_deterministic_and_atomic(tmp_path: Path) -> None:
    state = sample_state()
    a = save_torch_state_dict(tmp_path / "a.pth", state).read_bytes()
    b = save_torch_state_dict(tmp_path / "b.pth", state).read_bytes()
    assert a == b
    with pytest.raises(CheckpointError, match="complex64"):
        save_torch_state_dict(tmp_path / "c.pth", {"z": np.zeros(2, np.complex64)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pth", "b.pth"]  # no leftovers


def test_writer_never_imports_torch(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from converters.torch_writer import save_torch_state_dict\n"
        "from converters.torch_reader import load_torch_file\n"
        f"p = save_torch_state_dict({str(tmp_path / 'x.pth')!r}, {{'w': np.ones(3, np.float32)}})\n"
        "assert load_torch_file(p)['w'].sum() == 3\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("wrap", [None, "state_dict"])
def test_our_reader_reads_it_back(tmp_path: Path, wrap: str | None) -> None:
    state = sample_state()
    obj = load_torch_file(save_torch_state_dict(tmp_path / "s.pth", state, wrap=wrap))
    loaded = obj[wrap] if wrap else obj
    assert isinstance(loaded, OrderedDict) and list(loaded) == list(state)
    for key, value in state.items():
        assert loaded[key].shape == value.shape, key
        assert loaded[key].dtype == value.dtype.newbyteorder("="), key
        np.testing.assert_array_equal(loaded[key], value, err_msg=key)


@pytest.mark.parametrize("mmap", [False, True])
def test_torch_loads_it_with_weights_only(tmp_path: Path, mmap: bool) -> None:
    torch = pytest.importorskip("torch")
    state = sample_state()
    path = save_torch_state_dict(tmp_path / "s.pth", state, wrap="model_state_dict")
    loaded = torch.load(path, weights_only=True, mmap=mmap)
    assert list(loaded) == ["model_state_dict"]
    sd = loaded["model_state_dict"]
    assert isinstance(sd, OrderedDict) and list(sd) == list(state)
    for key, value in state.items():
        tensor = sd[key]
        assert tuple(tensor.shape) == value.shape and tensor.is_contiguous(), key
        if value.dtype == ml_dtypes.bfloat16:
            assert tensor.dtype == torch.bfloat16
            np.testing.assert_array_equal(tensor.float().numpy(), value.astype(np.float32))
        else:
            assert tensor.numpy().dtype == value.dtype.newbyteorder("="), key
            np.testing.assert_array_equal(tensor.numpy(), value, err_msg=key)
    assert sd["bn.num_batches_tracked"].dtype == torch.int64


# ---------------------------------------------------------------- variables round trips


@pytest.mark.parametrize("name", ["resnet20", "resnet20_b"])
def test_variables_round_trip_bit_identical(tmp_path: Path, name: str) -> None:
    spec = get_spec(name)
    variables = random_variables(name)
    path = export_variables(tmp_path / f"{name}.pth", variables, spec.keymap, wrap="state_dict")
    back = load_weights(spec, spec.create(), path)
    assert_trees_identical(variables, back)


@pytest.mark.parametrize("name", ["resnet20", "resnet20_b"])
def test_torch_module_loads_export_strictly(tmp_path: Path, name: str) -> None:
    torch = pytest.importorskip("torch")
    from reference.torch_cifar_resnet import resnet20, resnet20_b

    spec = get_spec(name)
    module = spec.create()
    variables = random_variables(name, seed=3)
    path = export_variables(tmp_path / f"{name}.pth", variables, spec.keymap)
    state = torch.load(path, weights_only=True)
    reference = (resnet20 if name == "resnet20" else resnet20_b)().eval()
    reference.load_state_dict(state, strict=True)
    expected_state = variables_to_state_dict(variables, spec.keymap)
    for key, tensor in reference.state_dict().items():
        np.testing.assert_array_equal(tensor.numpy(), expected_state[key], err_msg=key)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    got = np.asarray(module.apply(variables, x, train=False))
    with torch.no_grad():
        want = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert 0.1 < np.abs(want).max() < 1e3  # a meaningful comparison, not zeros or overflow
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_torch_to_jax_to_torch_full_circle(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from parity import randomize_bn_stats
    from reference.torch_cifar_resnet import resnet20

    torch.manual_seed(0)
    reference = resnet20()
    randomize_bn_stats(reference)
    original = reference.state_dict()
    torch.save({"state_dict": original}, tmp_path / "in.pth")
    spec = get_spec("resnet20")
    variables = load_weights(spec, spec.create(), tmp_path / "in.pth")
    export_variables(tmp_path / "out.pth", variables, spec.keymap)
    again = torch.load(tmp_path / "out.pth", weights_only=True)
    assert set(again) == set(original)
    for key, tensor in original.items():
        if not key.endswith("num_batches_tracked"):  # counters are not part of the model
            assert torch.equal(again[key], tensor), key


@pytest.mark.needs_shared_data
def test_real_checkpoint_round_trip(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "weights" / "resnet20-12fca82f.th"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    spec = get_spec("resnet20")
    module = spec.create()
    variables = load_weights(spec, module, path)
    out = export_variables(tmp_path / "r20.pth", variables, spec.keymap, wrap="state_dict")
    assert_trees_identical(variables, load_weights(spec, module, out))
    original = {k.removeprefix("module."): v
                for k, v in load_torch_file(path)["state_dict"].items()}
    exported = load_torch_file(out)["state_dict"]
    for key, value in original.items():
        assert exported[key].tobytes() == value.tobytes(), key


# ---------------------------------------------------------------- jaxnets' own format (orbax)


def test_orbax_round_trip_and_load_weights(tmp_path: Path) -> None:
    spec = get_spec("resnet20")
    module = spec.create()
    variables = jax.tree_util.tree_map(jax.numpy.asarray, random_variables("resnet20", 5))
    folder = save_variables(tmp_path / "ckpt", variables, {"model": "resnet20"})
    assert is_jaxnets_checkpoint(folder)
    restored = load_variables(folder, abstract_variables(spec, module), model_name="resnet20")
    assert_trees_identical(variables, restored)
    assert_trees_identical(variables, load_weights(spec, module, folder))


def test_orbax_refuses_non_empty_folder_and_other_model(tmp_path: Path) -> None:
    variables = random_variables("resnet20", 6)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to overwrite"):
        save_variables(busy, variables, {"model": "resnet20"})
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]

    folder = save_variables(tmp_path / "r20", variables, {"model": "resnet20"})
    spec = get_spec("resnet32")
    with pytest.raises(CheckpointError, match="holds a 'resnet20' checkpoint, not 'resnet32'"):
        load_weights(spec, spec.create(), folder)
    with pytest.raises(CheckpointError, match="resnet20"):
        load_variables(folder, abstract_variables(spec, spec.create()), model_name="resnet32")
