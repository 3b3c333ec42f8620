"""Spec §9 checks 9 (epoch labels), 17 (label noise), 18 (pixel shuffle), 19 (split sizes) and
20 (snapshot schedule of `jaxnets train`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxnets.methods.hyperplanes.labels import epoch_label


def test_epoch_labels():  # check 9
    assert epoch_label("vgg19_init_0.pt") == "0"
    assert epoch_label("pretrained_alexnet") == "-1"
    assert epoch_label("alexnet_pretrained_0.pt") == "-1"
    assert epoch_label("vgg19_9.tar") == "10"
    assert epoch_label("vgg19_20.pt") == "20"
    assert epoch_label("vgg19_20.pt", legacy=True) == "21"
    assert epoch_label("runs/x/snapshots/lenet_final_30") == "30"
    assert epoch_label("runs/x/snapshots/lenet_4") == "5"
    # reinit, legacy: the full path is split and there is no 'pretrained' rule
    assert epoch_label("/m/cifar10/vgg19_9.tar", tool="reinit", legacy=True) == "10"
    assert epoch_label("/m/vgg19_pretrained_0.pt", tool="reinit", legacy=True) == "1"
    assert epoch_label("/m/vgg19_pretrained_0.pt", tool="reinit") == "-1"
    assert epoch_label("/m/vgg19_init_0.pt", tool="reinit", legacy=True) == "0"


def _original_label_noise(labels: np.ndarray, r: float, c: int, seed: int) -> np.ndarray:
    np.random.seed(seed)  # the original's global-RNG draw order
    y = labels.copy()
    corrupt = np.random.rand(len(y)) <= r
    offsets = np.random.choice(range(1, c), corrupt.sum())
    y[corrupt] = (y[corrupt] + offsets) % c
    return y


def test_label_noise_reproduces_the_original():  # check 17
    from jaxnets.data.corruption import noisy_labels

    labels = np.random.RandomState(1).randint(0, 10, 50_000)
    for r, seed in ((0.2, 0), (0.5, 7)):
        ours = noisy_labels(labels, r, 10, seed)
        assert np.array_equal(ours, _original_label_noise(labels, r, 10, seed))
        changed = ours != labels
        assert abs(changed.mean() - r) <= 0.01  # within ±0.01 of r (at 50k labels)


def test_pixel_shuffle_permutation_per_training_image():  # check 18
    from jaxnets.data.corruption import pixel_shuffle_permutations

    train = np.array([0, 2, 3, 5])
    perms = pixel_shuffle_permutations(6, train, 1024, seed=11)
    prng = np.random.RandomState(11)
    expected = {i: prng.permutation(1024) for i in train}  # draw k = rank among training indices
    for i in range(6):
        if i in expected:
            assert np.array_equal(perms[i], expected[i])
        else:
            assert perms[i] is None
    img = np.arange(32 * 32 * 3, dtype=np.float32).reshape(1, 32, 32, 3)
    out = perms.apply(img, np.array([2]))
    flat_in, flat_out = img.reshape(1024, 3), out.reshape(1024, 3)
    for ch in range(3):  # the same permutation on every channel
        assert np.array_equal(flat_out[:, ch], flat_in[expected[2], ch])


def test_split_sizes():  # check 19
    from jaxnets.data.splits import validation_split

    tr, va = validation_split(60_000, None, 0.1, shuffle=False, seed=None, stratified=False)
    assert (len(tr), len(va)) == (54_000, 6_000)
    assert np.array_equal(va, np.arange(54_000, 60_000))  # the last floor(N·s) indices
    tr, va = validation_split(50_000, None, 0.2, shuffle=True, seed=3, stratified=False)
    assert (len(tr), len(va)) == (40_000, 10_000)
    idx = np.arange(50_000)
    np.random.seed(3)
    np.random.shuffle(idx)
    assert np.array_equal(va, idx[-10_000:]) and np.array_equal(tr, idx[:40_000])


@pytest.mark.slow
def test_snapshot_schedule_300_10_10(tmp_path, monkeypatch):  # check 20
    import jaxnets.io
    from jaxnets.train.command import run_train

    saved: list[str] = []
    # the schedule is the point here, not orbax: record the snapshot names only
    monkeypatch.setattr(jaxnets.io, "save_variables", lambda path, v, meta: saved.append(path.name))
    opts = {
        "model": "digits_cnn", "data": "digits", "epochs": 300, "batch_size": 8, "optimizer": "sgd",
        "lr": 0.0, "lr_step": 0, "lr_decay": 0.0, "weight_decay": 0.0, "momentum": 0.0,
        "augmentation": False, "noise": 0.0, "noise_seed": None, "subsample_classes": 0,
        "class_sample_seed": None, "split": 0.0, "stratified": False, "split_seed": None,
        "shuffle": False, "snapshot_every": 10, "snapshot_all_until": 10, "kill_plateaus": False,
        "train_acc": False, "pretrained": None, "evaluate": False, "evaluate_train": False,
        "unnormalize": False, "normalize": None, "num_classes": None, "limit": 8, "classes": None,
        "precision": "fp32", "resume": None, "checkpoint_every": None, "out": tmp_path,
        "seed": 0, "devices": "1", "config": None, "verbose": 0, "quiet": True,
    }
    run_train(opts)
    epochs = [n.split("_")[-1] for n in saved if n.split("_")[-2] == "cnn"]
    labels = sorted(int(epoch_label(f"digits_cnn_{e}.tar")) for e in epochs)
    assert labels == list(range(1, 11)) + list(range(20, 301, 10))
    assert len(labels) == 39
    assert saved[0] == "digits_cnn_init_0" and saved[-1] == "digits_cnn_final_300"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert sum("test_top1" in r for r in rows) == 39
