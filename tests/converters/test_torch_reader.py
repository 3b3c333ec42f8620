"""The torch-free checkpoint reader: formats, wrappers, dtypes, views, safety, bad files."""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest
from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file
from jaxnets.converters.torch_writer import export_variables, save_torch_state_dict

from jaxnets.errors import CheckpointError
from jaxnets.models.api import abstract_variables, load_weights
from jaxnets.models.registry import get_spec

FORMATS = ["zip", "legacy"]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def torch_save(torch, obj, path: Path, fmt: str) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=(fmt == "zip"))
    assert zipfile.is_zipfile(path) == (fmt == "zip")
    return path


def as_numpy(t) -> np.ndarray:
    """A torch tensor's exact values as NumPy (bfloat16 via its bit pattern)."""
    import torch

    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


# ---------------------------------------------------------------- formats, dtypes, views


@pytest.mark.parametrize("fmt", FORMATS)
def test_dtypes_scalars_and_plain_values(torch, tmp_path: Path, fmt: str) -> None:
    g = torch.Generator().manual_seed(0)
    state = {
        "f32": torch.randn(3, 4, generator=g),
        "f64": torch.randn(2, generator=g, dtype=torch.float64),
        "f16": torch.randn(5, generator=g).half(),
        "bf16": torch.randn(5, generator=g).bfloat16(),
        "i64": torch.arange(-3, 4),
        "i32": torch.arange(4, dtype=torch.int32),
        "u8": torch.arange(250, 256, dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "count": torch.tensor(7, dtype=torch.int64),
        "empty": torch.zeros(0, 3),
    }
    extras = {"epoch": 3, "lr": 0.1, "name": "x", "pair": (1, 2), "none": None,
              "np_float": np.float64(0.25), "np_int": np.int64(9)}
    obj = load_torch_file(torch_save(torch, {**state, **extras}, tmp_path / "m.pth", fmt))
    for key, tensor in state.items():
        want = as_numpy(tensor)
        assert isinstance(obj[key], np.ndarray), key
        assert obj[key].dtype == want.dtype and obj[key].shape == want.shape, key
        np.testing.assert_array_equal(obj[key], want)
    assert obj["scalar"].shape == () and float(obj["scalar"]) == 2.5
    assert obj["count"].dtype == np.int64 and int(obj["count"]) == 7
    for key, value in extras.items():
        assert obj[key] == value and type(obj[key]) is type(value), key


@pytest.mark.parametrize("fmt", FORMATS)
def test_strided_views_and_shared_storage(torch, tmp_path: Path, fmt: str) -> None:
    base = torch.arange(60, dtype=torch.float32).reshape(5, 12)
    views = {
        "base": base,
        "transposed": base.T,  # strides (1, 12)
        "every_other": base[1:, 1::3],  # offset and strides
        "row": base[3],  # offset into the shared storage
        "same": base,  # the very same tensor twice
        "expanded": torch.arange(3.0).expand(4, 3),  # stride 0
        "permuted": torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1),
    }
    assert not views["transposed"].is_contiguous()
    obj = load_torch_file(torch_save(torch, views, tmp_path / "v.pth", fmt))
    for key, tensor in views.items():
        np.testing.assert_array_equal(obj[key], tensor.numpy(), err_msg=key)
        assert obj[key].flags.c_contiguous, key
    # The reader copies out of the storage: writing one view never changes another.
    obj["row"][0] = -1
    assert obj["base"][3, 0] == 36


def test_reads_files_written_by_torch_and_by_our_writer_alike(torch, tmp_path: Path) -> None:
    state = {"a.weight": np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32),
             "a.num_batches_tracked": np.array(5, np.int64)}
    ours = save_torch_state_dict(tmp_path / "ours.pth", state)
    theirs = torch_save(torch, {k: torch.from_numpy(v) for k, v in state.items()},
                        tmp_path / "theirs.pth", "zip")
    for path in (ours, theirs):
        loaded = load_torch_file(path)
        assert list(loaded) == list(state)
        for key in state:
            np.testing.assert_array_equal(loaded[key], state[key])
            assert loaded[key].dtype == state[key].dtype


# ---------------------------------------------------------------- wrappers and prefixes


def _resnet20_state(torch, seed: int = 0) -> dict:
    from reference.torch_cifar_resnet import resnet20

    torch.manual_seed(seed)
    return resnet20().state_dict()


@pytest.mark.parametrize(("wrap", "fmt"), [
    (None, "zip"),
    ("state_dict", "legacy"),
    ("model_state_dict", "zip"),
    ("model", "zip"),
])
def test_wrappers_prefix_and_counters(torch, tmp_path: Path, wrap: str | None, fmt: str) -> None:
    state = _resnet20_state(torch)
    assert any(k.endswith("num_batches_tracked") for k in state)
    prefixed = {f"module.{k}": v for k, v in state.items()}  # as DataParallel saves it
    obj = prefixed if wrap is None else {wrap: prefixed, "epoch": 7, "best_prec1": 91.5,
                                         "optimizer_state_dict": {"state": {}, "lr": 0.1}}
    path = torch_save(torch, obj, tmp_path / "r20.pth", fmt)
    flat = extract_state_dict(load_torch_file(path))
    assert set(flat) == set(state)
    spec = get_spec("resnet20")
    variables = load_weights(spec, spec.create(), path)  # counters dropped, strictly
    np.testing.assert_array_equal(variables["params"]["layer2_1"]["conv1"]["kernel"],
                                  state["layer2.1.conv1.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(variables["batch_stats"]["bn1"]["var"],
                                  state["bn1.running_var"].numpy())
    assert "num_batches_tracked" not in str(variables)


def test_module_segment_stripped_anywhere() -> None:
    arr = np.zeros(2, np.float32)
    flat = extract_state_dict({"features.module.0.weight": arr, "module.fc.bias": arr,
                               "submodule.weight": arr, "model.module.head.weight": arr})
    assert set(flat) == {"features.0.weight", "fc.bias", "submodule.weight", "model.head.weight"}


def test_nested_wrappers() -> None:
    arr = np.ones(3, np.float32)
    assert set(extract_state_dict({"model": {"state_dict": {"a.weight": arr}}})) == {"a.weight"}
    with pytest.raises(CheckpointError, match="no state_dict found"):
        extract_state_dict({"epoch": 3, "notes": "nothing here"})


def test_whole_pickled_module_is_refused(torch, tmp_path: Path) -> None:
    from reference.torch_cifar_resnet import resnet20

    path = tmp_path / "whole.pth"
    torch.save(resnet20(), path)  # a full module pickle, not a state_dict
    with pytest.raises(CheckpointError, match=r"reference\.torch_cifar_resnet\.CifarResNet"):
        load_torch_file(path)


# ---------------------------------------------------------------- malicious files


class _Exploit:
    """Unpickling this would run a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


GLOBAL_NAME = r"'(posix|nt|os)\.system'"


def test_malicious_raw_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": _Exploit(marker)}, protocol=2))
    with pytest.raises(CheckpointError, match=GLOBAL_NAME):
        load_torch_file(path)
    assert not marker.exists()


def test_malicious_pickle_inside_zip_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Exploit(marker), protocol=2))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError, match=GLOBAL_NAME):
        load_torch_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_malicious_object_saved_by_torch_never_runs(torch, tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    path = torch_save(torch, {"conv.weight": torch.ones(2), "hook": _Exploit(marker)},
                      tmp_path / "evil.pth", fmt)
    with pytest.raises(CheckpointError, match=GLOBAL_NAME):
        load_torch_file(path)
    spec = get_spec("resnet20")
    with pytest.raises(CheckpointError, match=GLOBAL_NAME):
        load_weights(spec, spec.create(), path)
    assert not marker.exists()


def test_other_globals_are_named(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Path("/etc/passwd"), protocol=2))
    with pytest.raises(CheckpointError, match=r"pathlib\.PosixPath|pathlib\.Path"):
        load_torch_file(path)


# ---------------------------------------------------------------- damaged files


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files(torch, tmp_path: Path, fmt: str) -> None:
    full = torch_save(torch, {"state_dict": _resnet20_state(torch)}, tmp_path / "full.pth", fmt)
    data = full.read_bytes()
    cut = tmp_path / "cut.pth"
    # Cuts inside the header, the pickle, the tensor bytes, and one byte short of the end.
    for n in [1, 10, 100, 1000, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1]:
        cut.write_bytes(data[:n])
        with pytest.raises(CheckpointError, match="truncated"):
            load_torch_file(cut)


def test_corrupt_zip_record(tmp_path: Path) -> None:
    path = save_torch_state_dict(tmp_path / "ok.pth", {"w": np.arange(64, dtype=np.float32)})
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        offset = zf.getinfo("archive/data/0").header_offset
    name_len, extra_len = struct.unpack("<HH", data[offset + 26:offset + 30])
    start = offset + 30 + name_len + extra_len  # first byte of the tensor record
    data[start + 100:start + 108] = b"\xff" * 8  # its CRC no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="CRC"):
        load_torch_file(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_torch_file(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError):
        load_torch_file(junk)
    no_pkl = tmp_path / "nopkl.pth"
    with zipfile.ZipFile(no_pkl, "w") as zf:
        zf.writestr("archive/readme.txt", "hello")
    with pytest.raises(CheckpointError, match="data.pkl"):
        load_torch_file(no_pkl)


# ---------------------------------------------------------------- checkpoints that do not fit


def _export(name: str, path: Path) -> Path:
    """A checkpoint of ``name`` holding zeros (shapes are all that matters here; no compile)."""
    spec = get_spec(name)
    zeros = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype),
                                   abstract_variables(spec, spec.create()))
    return export_variables(path, zeros, spec.keymap)


def test_deeper_resnet_into_resnet20(tmp_path: Path) -> None:
    path = _export("resnet32", tmp_path / "r32.pth")
    spec = get_spec("resnet20")
    with pytest.raises(CheckpointError, match=r"60 unexpected key\(s\): layer1\.3\."):
        load_weights(spec, spec.create(), path)


def test_resnet20_into_resnet32_names_missing(tmp_path: Path) -> None:
    path = _export("resnet20", tmp_path / "r20.pth")
    spec = get_spec("resnet32")
    with pytest.raises(CheckpointError, match=r"60 missing leaf/leaves: .*layer1_3/"):
        load_weights(spec, spec.create(), path)


@pytest.mark.needs_shared_data
def test_real_resnet32_file_into_resnet20(shared_data: Path) -> None:
    path = shared_data / "weights" / "resnet32-d509ac18.th"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    spec = get_spec("resnet20")
    with pytest.raises(CheckpointError, match=r"does not fit resnet20: 60 unexpected key"):
        load_weights(spec, spec.create(), path)


def test_vgg_like_dict_into_resnet20(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shapes = {"features.0.weight": (64, 3, 3, 3), "features.0.bias": (64,),
              "features.1.weight": (64,), "features.1.bias": (64,),
              "features.1.running_mean": (64,), "features.1.running_var": (64,),
              "classifier.0.weight": (10, 64), "classifier.0.bias": (10,)}
    state = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    path = save_torch_state_dict(tmp_path / "vgg.pth", state, wrap="state_dict")
    spec = get_spec("resnet20")
    with pytest.raises(CheckpointError) as err:
        load_weights(spec, spec.create(), path)
    message = str(err.value)
    assert "8 unexpected key(s): features.0.weight" in message
    assert "97 missing leaf/leaves: " in message  # nothing of resnet20 is there
    assert "another architecture" in message


@pytest.mark.parametrize(("key", "shape", "expected", "hint"), [
    ("linear.weight", (100, 64), "(10, 64)", "built for 10 classes (resnet20's default): pass --num-classes 100"),
    ("conv1.weight", (16, 1, 3, 3), "(16, 3, 3, 3)", "has 1 input channel and 10 classes but the model was built "
                                                      "for 3 channels"),
    ("layer3.2.bn2.running_var", (32,), "(64,)", "another architecture"),
])
def test_shape_mismatch_names_key_and_shapes(
    tmp_path: Path, key: str, shape: tuple, expected: str, hint: str
) -> None:
    from jaxnets.converters.convert import variables_to_state_dict

    spec = get_spec("resnet20")
    state = variables_to_state_dict(
        jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype),
                               abstract_variables(spec, spec.create())), spec.keymap)
    state[key] = np.zeros(shape, np.float32)
    path = save_torch_state_dict(tmp_path / "bad.pth", state)
    with pytest.raises(CheckpointError) as err:
        load_weights(spec, spec.create(), path)
    message = str(err.value)
    assert f"{key} has shape {shape} where resnet20 expects {expected}" in message  # both in PyTorch layout
    assert "1 shape mismatch" in message and "missing" not in message  # a mismatch is not also "missing"
    assert hint in message
