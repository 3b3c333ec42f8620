"""timm's names for the registry's architectures, written as ``.safetensors`` with the package's
NumPy API: the naming is detected from the keys, logits equal the PyTorch reference modules, and
export in timm names (``--keys timm``) reads back bit-exactly.

The timm state_dicts are built from the torchvision-named references with timm's documented
renames (VGG: ``classifier.0/3/6`` → ``pre_logits.fc1``/``fc2`` as 7×7/1×1 convs, ``head.fc``;
Mixer: ``stem.proj``, ``blocks.N.norm1``, ``mlp_tokens.fc1``, …; ResNet and DenseNet-121 keep
torchvision's names). The optional peer-parity module compares against timm itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from cli_helpers import run_cli
from jaxnets.converters.convert import flatten_tree
from safetensors.numpy import load_file, save_file

from jaxnets.api import load
from jaxnets.models.api import load_weights, load_weights_from
from jaxnets.models.registry import get_spec

torch = pytest.importorskip("torch")

from parity import randomize_bn_stats  # noqa: E402
from reference.torch_mixer import mixer_tiny_ref  # noqa: E402
from reference.torch_vgg import vgg  # noqa: E402

_MIXER_TIMM = (("patch_embed.", "stem.proj."), ("token_mlp.fc_a.", "mlp_tokens.fc1."),
               ("token_mlp.fc_b.", "mlp_tokens.fc2."), ("channel_mlp.fc_a.", "mlp_channels.fc1."),
               ("channel_mlp.fc_b.", "mlp_channels.fc2."))


def _numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _vgg_timm_state(ref: torch.nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for key, value in _numpy(ref).items():
        if key == "classifier.0.weight":
            value = value.reshape(-1, 512, 7, 7)
        elif key == "classifier.3.weight":
            value = value.reshape(-1, 4096, 1, 1)
        key = (key.replace("classifier.0.", "pre_logits.fc1.").replace("classifier.3.", "pre_logits.fc2.")
               .replace("classifier.6.", "head.fc."))
        out[key] = value
    return out


def _mixer_timm_state(ref: torch.nn.Module) -> dict[str, np.ndarray]:
    out = {}
    for key, value in _numpy(ref).items():
        for old, new in _MIXER_TIMM:
            key = key.replace(old, new)
        out[key] = value
    return out


def _randomized_mixer() -> torch.nn.Module:
    torch.manual_seed(0)
    ref = mixer_tiny_ref()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight[0].numel() ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    randomize_bn_stats(ref, 0)
    return ref.eval()


def _vgg16_bn() -> torch.nn.Module:
    torch.manual_seed(0)
    ref = vgg(16, True)
    randomize_bn_stats(ref, 0)
    return ref.eval()


CASES = {
    # name: (reference builder, timm state from it, input size)
    "vgg16_bn": (_vgg16_bn, _vgg_timm_state, 32),
    "mixer_tiny": (_randomized_mixer, _mixer_timm_state, 32),
}


def _logits(ref: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


@pytest.mark.parametrize("name", list(CASES))
def test_timm_named_safetensors_are_detected_and_match(name: str, tmp_path: Path) -> None:
    build, timm_state, size = CASES[name]
    ref = build()
    path = tmp_path / "model.safetensors"
    save_file(timm_state(ref), str(path))
    spec = get_spec(name)
    module = spec.create()
    variables, source = load_weights_from(spec, module, path)
    assert (source.format, source.naming) == ("safetensors", "timm")
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    got = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))
    np.testing.assert_allclose(got, _logits(ref, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_convert_to_timm_names_round_trips_bit_exactly(name: str, tmp_path: Path, capsys, monkeypatch) -> None:
    build, timm_state, _ = CASES[name]
    source = tmp_path / "in.safetensors"
    written_state = timm_state(build())
    save_file(written_state, str(source))
    code, out, err = run_cli(["convert", name, source, "--to", "safetensors", "--keys", "timm",
                              "--out", tmp_path / "conv"], capsys, monkeypatch)
    assert code == 0, err
    assert "read safetensors (timm names)" in out
    report = json.loads((tmp_path / "conv" / "conversion.json").read_text())
    assert (report["keys"], report["source_keys"], report["round_trip_max_abs_diff"]) == ("timm", "timm", 0.0)
    exported = load_file(report["output"])
    assert exported.keys() == written_state.keys()  # timm's key set exactly
    for key, value in written_state.items():
        assert exported[key].shape == value.shape and np.array_equal(exported[key], value), key
    spec = get_spec(name)
    a = flatten_tree(jax.device_get(load_weights(spec, spec.create(), source)))
    b = flatten_tree(jax.device_get(load_weights(spec, spec.create(), report["output"])))
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_timm_resnet_and_densenet_names_are_torchvision_names(tmp_path: Path, capsys, monkeypatch) -> None:
    """timm's ResNet/DenseNet-121 keys are torchvision's: such a file loads as it is, and
    --keys timm writes the same keys."""
    for name in ("resnet18", "densenet121"):
        spec = get_spec(name)
        assert "timm" in [n.name for n in spec.keymap.namings]
    model = load("resnet18", seed=0)
    timm = load_file(str(model.export(tmp_path / "timm.safetensors", to="safetensors", keys="timm")))
    torchvision = load_file(str(model.export(tmp_path / "tv.safetensors", to="safetensors")))
    assert timm.keys() == torchvision.keys() and "layer4.1.bn2.running_var" in timm
    assert load_weights_from(model.spec, model.module, tmp_path / "timm.safetensors")[1].naming == "torchvision"
    code, _, err = run_cli(["convert", "digits_cnn", tmp_path / "missing.pth", "--keys", "timm"], capsys, monkeypatch)
    assert code == 2 and "--keys must be torchvision" in err
