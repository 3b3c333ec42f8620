"""Peer parity: every supported architecture against torchvision's and timm's own modules.

Runs only where both are importable (``pytest.importorskip``): this project's torch 2.13 CPU
wheel cannot import PyPI's torchvision, so `make test` skips it. How to run it (several GB, a
separate venv; see README "Peer parity"):

    python3.11 -m venv peer-venv
    peer-venv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    peer-venv/bin/pip install -c constraints/py311.txt -e ".[dev]"   # without its torch pin
    peer-venv/bin/python -m pytest tests/peers -q

Random weights and random BN statistics; the peer's state_dict is written as ``.safetensors``
(and ``.pth``), read by jaxnets with its naming detected, and the eval logits compared; the
jaxnets export in that naming loads back into the peer with ``strict=True``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
timm = pytest.importorskip("timm")

from parity import randomize_bn_stats  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from jaxnets.api import load  # noqa: E402
from jaxnets.models.api import load_weights_from  # noqa: E402
from jaxnets.models.registry import get_spec  # noqa: E402

ATOL = 1e-4
# jaxnets name → (builder of the peer module, input size, naming jaxnets should detect)
TORCHVISION = {name: size for name, size in [
    ("resnet18", 64), ("resnet34", 64), ("resnet50", 64), ("resnet101", 64), ("resnet152", 64),
    ("resnext50_32x4d", 64), ("resnext101_32x8d", 64), ("wide_resnet50_2", 64), ("wide_resnet101_2", 64),
    ("vgg11", 32), ("vgg11_bn", 32), ("vgg13", 32), ("vgg13_bn", 32), ("vgg16", 32), ("vgg16_bn", 32),
    ("vgg19", 32), ("vgg19_bn", 32), ("alexnet", 224), ("densenet121", 64),
    ("googlenet", 64), ("mobilenet_v2", 64), ("mobilenet_v3_small", 64)]}
# Builder options: GoogLeNet without its training-only aux heads, so the export (which has none)
# loads back strict; its pretrained layout (aux keys, transform_input) has its own test below.
TORCHVISION_KWARGS = {"googlenet": {"aux_logits": False, "init_weights": True}}
# torchvision's own init leaves these nets' logits near 1e-9 (MobileNets) or input-independent
# (GoogLeNet, N(0, 0.01²) convs) once BN statistics are random: redraw conv/Linear weights
# N(0, gain/fan_in) so the logits depend on the input (gain as tests/peer_fixture.py's records).
REDRAW_GAIN = {"googlenet": 2.0, "mobilenet_v2": 1.5, "mobilenet_v3_small": 2.0}


def _redraw_weights(module: torch.nn.Module, gain: float) -> None:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (gain / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
TIMM = {"resnet18": ("resnet18", 64), "resnet50": ("resnet50", 64), "vgg16_bn": ("vgg16_bn", 32),
        "densenet121": ("densenet121", 64), "mixer_b16": ("mixer_b16_224", 224)}


def _prepare(module: torch.nn.Module, size: int) -> torch.nn.Module:
    """Random BN statistics, then the head scaled so |logits| ≲ 10 (float32 rounding of a random
    deep net's ~1e3 logits alone would exceed 1e-4)."""
    torch.manual_seed(0)
    randomize_bn_stats(module, 0)
    module.eval()
    head = module.get_classifier() if hasattr(module, "get_classifier") else None
    if head is None:
        head = getattr(module, "fc", None) or module.classifier
        head = head[-1] if isinstance(head, torch.nn.Sequential) else head
    with torch.no_grad():
        peak = module(torch.randn(1, 3, size, size)).abs().max().item()
        if peak > 10:
            head.weight.mul_(10 / peak)
            head.bias.mul_(10 / peak)
    return module


def _logits_diff(name: str, peer: torch.nn.Module, size: int, tmp_path: Path, naming: str,
                 keys: str, **create: object) -> Path:
    """The peer's state_dict as ``.safetensors``, read by jaxnets (``spec.create(**create)``): eval
    logits compared; returns the file."""
    state = {k: v.detach().numpy().copy() for k, v in peer.state_dict().items()}
    path = tmp_path / "peer.safetensors"
    save_file(state, str(path))
    spec = get_spec(name)
    module = spec.create(**create)
    variables, source = load_weights_from(spec, module, path)
    assert source.naming == naming
    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    with torch.no_grad():
        want = peer(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.asarray(jax.jit(lambda v, x: module.apply(v, x, train=False))(variables, x))
    diff = float(np.abs(got - want).max())
    spread = float(np.abs(want[0] - want[1]).max())  # how much the logits depend on the input
    print(f"{name} vs {keys}: max |Δlogits| = {diff:.2e} at {size} px (inputs' logits differ by {spread:.2g})")
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
    return path


def _compare(name: str, peer: torch.nn.Module, size: int, tmp_path: Path, naming: str, keys: str) -> None:
    path = _logits_diff(name, peer, size, tmp_path, naming, keys)
    exported = load(name, path).export(tmp_path / "back.pth", to="torch", keys=keys)
    from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

    back = extract_state_dict(load_torch_file(exported))
    peer.load_state_dict({k: torch.from_numpy(np.asarray(v).copy()) for k, v in back.items()}, strict=True)


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_torchvision(name: str, tmp_path: Path) -> None:
    peer = getattr(torchvision.models, name)(weights=None, **TORCHVISION_KWARGS.get(name, {}))
    if name in REDRAW_GAIN:
        _redraw_weights(peer, REDRAW_GAIN[name])
    peer = _prepare(peer, TORCHVISION[name])
    _compare(name, peer, TORCHVISION[name], tmp_path, "torchvision", "torchvision")


def test_torchvision_googlenet_pretrained_layout(tmp_path: Path) -> None:
    """As torchvision builds it for its ImageNet weights: aux heads in the state_dict (ignored by
    jaxnets, eval has none) and transform_input=True (jaxnets' create(transform_input=True))."""
    peer = torchvision.models.googlenet(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    _redraw_weights(peer, REDRAW_GAIN["googlenet"])
    _logits_diff("googlenet", _prepare(peer, 64), 64, tmp_path, "torchvision", "torchvision", transform_input=True)


@pytest.mark.parametrize("name", list(TIMM))
def test_timm(name: str, tmp_path: Path) -> None:
    timm_name, size = TIMM[name]
    peer = timm.create_model(timm_name, pretrained=False)
    if name == "mixer_b16":  # timm's head starts at zero: give it weights so the logits say something
        with torch.no_grad():
            peer.head.weight.normal_(0, 0.02)
    peer = _prepare(peer, size)
    expected = "timm" if name in ("vgg16_bn", "mixer_b16") else "torchvision"  # the others share names
    _compare(name, peer, size, tmp_path, expected, "timm")
