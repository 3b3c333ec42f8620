"""The CIFAR ResNet checkpoints of "Decomposing the Deep" / akamaster, converted exactly.

Numbers come from /work/shared/specs/decomposing-the-deep.md (§2.1, §2.2, §8 A1–A6, A20) and
the shared data README (accuracies on the 846 exact CIFAR-10 test images).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxnets.converters.convert import flatten_tree
from jaxnets.converters.torch_reader import extract_state_dict, load_torch_file

from jaxnets.models.api import apply_with_intermediates, count_params, load_weights
from jaxnets.models.cifar_resnet import BasicBlockCifar
from jaxnets.models.registry import NORMALIZATIONS, get_spec

needs_data = pytest.mark.needs_shared_data

CHECKPOINTS = {
    20: "resnet20-12fca82f.th",
    32: "resnet32-d509ac18.th",
    44: "resnet44-014dd654.th",
    56: "resnet56-4bfd9763.th",
}
EVAL_BATCH = 282  # 846 = 3 × 282: one compiled shape, no padding


# ---------------------------------------------------------------- helpers and fixtures


def _file(root: Path, *parts: str) -> Path:
    path = root.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="module")
def cifar_test(cifar_exact: Path) -> tuple[np.ndarray, np.ndarray]:
    """The exact test images as uint8 NHWC and their labels, decoded from the binary batch."""
    raw = np.fromfile(_file(cifar_exact, "test_batch.bin"), dtype=np.uint8)
    records = raw.reshape(-1, 1 + 3 * 32 * 32)  # 1 label byte, then R, G, B planes (CHW)
    labels = records[:, 0].astype(np.int64)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert len(labels) == 846 and labels.max() == 9
    return images, labels


def normalise(images: np.ndarray, name: str) -> np.ndarray:
    """ToTensor + Normalize, in float32 and in the same order as torchvision."""
    mean, std = (np.asarray(v, np.float32) for v in NORMALIZATIONS[name])
    return (images.astype(np.float32) / np.float32(255) - mean) / std


@cache
def _apply(name: str):
    module = get_spec(name).create()
    return jax.jit(lambda v, x: module.apply(v, x, train=False))


def jax_logits(name: str, variables: dict, x: np.ndarray) -> np.ndarray:
    fn = _apply(name)
    return np.concatenate([np.asarray(fn(variables, x[i:i + EVAL_BATCH]))
                           for i in range(0, len(x), EVAL_BATCH)])


def load(depth: int, shared_data: Path) -> dict:
    spec = get_spec(f"resnet{depth}")
    return load_weights(spec, spec.create(), _file(shared_data, "weights", CHECKPOINTS[depth]))


@pytest.fixture(scope="module")
def resnet20(shared_data: Path) -> dict:
    return load(20, shared_data)


def torch_reference(depth: int, shared_data: Path):
    """The checkpoint in the plain torch.nn reference, loaded by torch itself (strict)."""
    torch = pytest.importorskip("torch")
    from reference.torch_cifar_resnet import cifar_resnet

    ckpt = torch.load(_file(shared_data, "weights", CHECKPOINTS[depth]), map_location="cpu",
                      weights_only=True)
    state = {k.removeprefix("module."): v for k, v in ckpt["state_dict"].items()}
    model = cifar_resnet(depth, "A")
    model.load_state_dict(state, strict=True)
    return model.eval()


def probe_input() -> np.ndarray:
    """§8 A2: x[n,c,h,w] = sin(0.1·(3072n + 1024c + 32h + w)), float64 → float32, as NHWC."""
    idx = np.arange(2 * 3 * 32 * 32, dtype=np.float64).reshape(2, 3, 32, 32)
    return np.sin(0.1 * idx).astype(np.float32).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- A1: the file and the tree


@needs_data
def test_resnet20_checkpoint_spot_values_and_size(shared_data: Path, resnet20: dict) -> None:
    raw = load_torch_file(_file(shared_data, "weights", CHECKPOINTS[20]))
    assert set(raw) == {"state_dict", "best_prec1"}
    assert raw["best_prec1"] == pytest.approx(91.78000183105469)
    assert len(raw["state_dict"]) == 97 and all(k.startswith("module.") for k in raw["state_dict"])
    state = extract_state_dict(raw)
    assert len(state) == 97 and "conv1.weight" in state
    assert all(v.dtype == np.float32 for v in state.values())

    p, bs = resnet20["params"], resnet20["batch_stats"]
    # torch conv1.weight[o=0, i=0, h=0, :] is the Flax kernel[h=0, :, i=0, o=0] (HWIO).
    np.testing.assert_allclose(p["conv1"]["kernel"][0, :, 0, 0],
                               [-0.138181, -0.162418, 0.820738], atol=1e-6)
    np.testing.assert_allclose(bs["bn1"]["mean"][:3], [-0.102665, -0.013618, -0.297845], atol=1e-6)
    np.testing.assert_allclose(bs["bn1"]["var"][:3], [2.204913, 3.624004, 4.057121], atol=1e-6)
    np.testing.assert_allclose(
        p["linear"]["bias"],
        [0.193559, -0.343101, 0.111205, 0.322537, 0.143964, -0.180976, 0.163114, -0.162109,
         0.022100, -0.270259], atol=1e-6)
    # Every tensor landed exactly (the converter only transposes).
    np.testing.assert_array_equal(p["layer3_2"]["conv2"]["kernel"],
                                  state["layer3.2.conv2.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(p["linear"]["kernel"], state["linear.weight"].T)
    assert count_params(resnet20) == 269_722
    # The spec's 1,395 BN statistic scalars = 2 × 688 running mean/var + 19 counters (absent).
    bn_layers = [path for path in flatten_tree(bs) if path[-1] == "mean"]
    assert len(bn_layers) == 19
    assert sum(np.size(x) for x in jax.tree_util.tree_leaves(bs)) + len(bn_layers) == 1_395


# ---------------------------------------------------------------- A2–A6: probe values


@needs_data
def test_resnet20_probe_features_and_logits(resnet20: dict) -> None:
    spec = get_spec("resnet20")
    module = spec.create()
    logits, inter = apply_with_intermediates(module, resnet20, jnp.asarray(probe_input()))
    features = np.asarray(inter["features"])
    np.testing.assert_allclose(
        features[0, :8],
        [1.47791, 0.17165, 0.15630, 0.04507, 0.03682, 0.01071, 0.28058, 0.25802], atol=1e-4)
    np.testing.assert_allclose(features.sum(axis=1), [23.3318, 24.03947], atol=2e-4)
    assert (features >= 0).all()
    np.testing.assert_allclose(
        logits[0],
        [-2.20635, 0.07467, 5.89441, 8.07268, -2.09864, -2.37362, -5.45499, 3.98374, -3.75036,
         -2.18719], atol=1e-4)
    np.testing.assert_allclose(
        logits[1],
        [-1.48348, 0.50005, 6.24014, 8.34494, -3.32302, -2.08748, -5.94942, 3.49503, -3.90574,
         -1.88149], atol=1e-4)
    zero = module.apply(resnet20, jnp.zeros((1, 32, 32, 3), jnp.float32))
    np.testing.assert_allclose(
        zero[0],
        [3.27605, -2.31893, 0.41908, 4.52022, -1.33856, 0.64485, 0.33489, -1.72883, 0.16668,
         -4.00550], atol=1e-4)


@needs_data
def test_resnet20_decomposed_head_values(shared_data: Path, resnet20: dict) -> None:
    """A2 (decomposed logits) and A6 (final_weights), computed here from the converted head."""
    table = json.loads(_file(shared_data, "decomposing-the-deep",
                             "resnet20_cifar-10_indices.json").read_text())
    idx = np.array([table[str(c)] for c in range(10)])  # (C, k)
    weight = np.asarray(resnet20["params"]["linear"]["kernel"]).T  # (C, D), torch layout
    bias = np.asarray(resnet20["params"]["linear"]["bias"])
    final_weights = np.take_along_axis(weight, idx, axis=1)  # V[c, j] = W[c, I[c, j]]
    np.testing.assert_allclose(final_weights[0], [0.948471, 1.008671, 1.124241, 1.297942,
                                                  1.066182], atol=1e-6)
    np.testing.assert_allclose(final_weights[9], [0.990609, 1.440708, 1.069536, 1.181063,
                                                  1.461138], atol=1e-6)
    module = get_spec("resnet20").create()
    _, inter = apply_with_intermediates(module, resnet20, jnp.asarray(probe_input()))
    features = np.asarray(inter["features"])
    decomposed = np.einsum("bck,ck->bc", features[:, idx], final_weights) + bias
    np.testing.assert_allclose(
        decomposed[0], [1.30547, 1.63556, 3.06789, 5.25602, 1.19303, 0.41967, 0.58527, 4.68727,
                        0.73835, 2.02345], atol=1e-4)
    np.testing.assert_allclose(
        decomposed[1], [1.74343, 1.88670, 3.27880, 5.25361, 0.93002, 0.50666, 0.53336, 4.25640,
                        0.87350, 2.33775], atol=1e-4)


@needs_data
def test_resnet20_intermediate_shapes(resnet20: dict) -> None:
    """A3, in NHWC: stem 32×32×16, stages 32×32×16 / 16×16×32 / 8×8×64, features (2, 64)."""
    module = get_spec("resnet20").create()
    names = ("bn1", "layer1_2", "layer2_2", "layer3_2", "features")
    _, inter = apply_with_intermediates(module, resnet20, jnp.zeros((2, 32, 32, 3)), names)
    shapes = {n: tuple(inter[n].shape) for n in names}
    assert shapes == {"bn1": (2, 32, 32, 16), "layer1_2": (2, 32, 32, 16),
                      "layer2_2": (2, 16, 16, 32), "layer3_2": (2, 8, 8, 64),
                      "features": (2, 64)}


@needs_data
@pytest.mark.parametrize(("block", "size", "planes", "zeros"), [
    ("layer2_0", 32, 32, (slice(0, 8), slice(24, 32))),
    ("layer3_0", 16, 64, (slice(0, 16), slice(48, 64))),
])
def test_option_a_shortcut(
    resnet20: dict, block: str, size: int, planes: int, zeros: tuple
) -> None:
    """A4: with the main path silenced (bn2 scale and bias 0) a block outputs its shortcut."""
    params = dict(resnet20["params"][block])
    params["bn2"] = {"scale": jnp.zeros(planes), "bias": jnp.zeros(planes)}
    variables = {"params": params, "batch_stats": resnet20["batch_stats"][block]}
    rng = np.random.default_rng(0)
    # Block inputs are post-ReLU (≥ 0), so the final ReLU leaves the shortcut unchanged.
    x = np.abs(rng.standard_normal((2, size, size, planes // 2))).astype(np.float32)
    out = np.asarray(BasicBlockCifar(planes, 2, "A").apply(variables, x))
    lo, hi = zeros
    assert out.shape == (2, x.shape[1] // 2, x.shape[2] // 2, planes)
    assert (out[..., lo] == 0).all() and (out[..., hi] == 0).all()
    np.testing.assert_array_equal(out[..., lo.stop:hi.start], x[:, ::2, ::2, :])

    torch = pytest.importorskip("torch")
    from reference.torch_cifar_resnet import ShortcutA

    ref = ShortcutA(planes, 2)(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_array_equal(out, ref.transpose(0, 2, 3, 1))


# ---------------------------------------------------------------- the exact CIFAR-10 subset


@needs_data
@pytest.mark.parametrize(("norm", "correct"), [("imagenet", 776), ("cifar", 777)])
def test_resnet20_matches_torch_on_exact_subset(
    shared_data: Path, cifar_test: tuple, resnet20: dict, norm: str, correct: int
) -> None:
    """Logits equal PyTorch's on all 846 images; 91.73 % (ImageNet) / 91.84 % (CIFAR consts)."""
    torch = pytest.importorskip("torch")
    images, labels = cifar_test
    x = normalise(images, norm)
    got = jax_logits("resnet20", resnet20, x)
    with torch.no_grad():
        expected = torch_reference(20, shared_data)(
            torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert np.abs(got - expected).max() <= 1e-4
    assert int((expected.argmax(1) == labels).sum()) == correct
    assert int((got.argmax(1) == labels).sum()) == correct
    assert round(100 * correct / 846, 2) == {"imagenet": 91.73, "cifar": 91.84}[norm]


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize(("depth", "correct", "percent"),
                         [(32, 787, 93.03), (44, 793, 93.74), (56, 789, 93.26)])
def test_deeper_resnets_accuracy(
    shared_data: Path, cifar_test: tuple, depth: int, correct: int, percent: float
) -> None:
    images, labels = cifar_test
    variables = load(depth, shared_data)
    assert count_params(variables) == _param_count(depth)
    got = jax_logits(f"resnet{depth}", variables, normalise(images, "imagenet"))
    assert int((got.argmax(1) == labels).sum()) == correct
    assert round(100 * correct / 846, 2) == percent


def _param_count(depth: int) -> int:
    """Trainable parameters of a CIFAR ResNet-(6n+2), option A, counted layer by layer."""
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16 + 64 * 10 + 10  # stem conv, stem BN, head
    in_planes = 16
    for planes in (16, 32, 64):
        for _ in range(n):
            total += (in_planes + planes) * planes * 9 + 4 * planes  # two convs, two BNs
            in_planes = planes
    return total


def test_param_count_formula() -> None:
    assert _param_count(20) == 269_722


# ---------------------------------------------------------------- option B and random weights


def test_option_b_parity_random_weights(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from parity import check_logits_parity
    from reference.torch_cifar_resnet import resnet20_b

    variables = check_logits_parity("resnet20_b", resnet20_b(), tmp_path, batch=2)
    assert "downsample_0" in variables["params"]["layer2_0"]
    assert "fc" in variables["params"]


def test_option_a_parity_random_weights_wrapped(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from parity import check_logits_parity
    from reference.torch_cifar_resnet import resnet20

    check_logits_parity("resnet20", resnet20(), tmp_path, batch=2, wrap="state_dict", seed=1)


# ---------------------------------------------------------------- the CSG checkpoint


@needs_data
def test_csg_checkpoint(shared_data: Path, cifar_test: tuple) -> None:
    """A1 (117-entry model_state_dict, `csg` ignored), A20 (the gate tensor), and R7's subset."""
    path = _file(shared_data, "decomposing-the-deep", "best_save_CSG.pth")
    raw = load_torch_file(path)
    msd = raw["model_state_dict"]
    assert len(msd) == 117
    assert sum(k.endswith("num_batches_tracked") for k in msd) == 19
    assert raw["epoch"] == 150 and raw["model_name"] == "resnet20"
    csg = msd["csg"]
    assert csg.shape == (10, 64) and csg.dtype == np.float32
    assert csg.min() == pytest.approx(-0.0725, abs=1e-4)
    assert csg.max() == pytest.approx(0.8031, abs=1e-4)
    assert int((csg < 0).sum()) == 48
    assert list(np.argsort(-csg[0], kind="stable")[:5]) == [28, 38, 16, 43, 10]

    spec = get_spec("resnet20")
    variables = load_weights(spec, spec.create(), path)
    assert count_params(variables) == 269_722
    np.testing.assert_array_equal(variables["params"]["linear"]["kernel"],
                                  msd["linear.weight"].T)
    images, labels = cifar_test
    got = jax_logits("resnet20", variables, normalise(images, "cifar"))
    assert int((got.argmax(1) == labels).sum()) == 749  # 88.53 %, spec §5
