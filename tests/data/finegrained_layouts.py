"""Tiny copies of SeaM's five target data sets in their official archives' exact layout (tests only).

Each ``write_*`` function writes one data set under ``base/<the original's folder name>`` with tiny
JPEGs (6×5 RGB) and its official list / split files — the .mat files with ``scipy.io.savemat`` in
the official structure (cell arrays of file names, numeric label and id vectors) — and returns a
:class:`Layout`: what the reader must give back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat


@dataclass(frozen=True)
class Layout:
    """A written data set: its folder, class names and each split's (image path relative to the
    folder, 0-based label) in the reader's order."""

    root: Path
    class_names: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]

    def split(self, name: str) -> list[tuple[str, int]]:
        return self.train if name == "train" else self.test


def write_jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def _cell(strings: list[str]) -> np.ndarray:
    """An N×1 MATLAB cell array of strings, as savemat writes it (the official lists' shape)."""
    cell = np.empty((len(strings), 1), dtype=object)
    for k, text in enumerate(strings):
        cell[k, 0] = np.array([text])
    return cell


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]


def write_cub200(base: Path) -> Layout:
    """Four images a class, ids 1..12 class by class; the second of each class is a test image."""
    root = base / "CUB_200_2011"
    images, labels, flags = [], [], []
    train: list[tuple[str, int]] = []
    test: list[tuple[str, int]] = []
    image_id = 0
    for label, name in enumerate(CUB_CLASSES):
        bird = name.split(".", 1)[1]
        for k in range(4):
            image_id += 1
            relative = f"{name}/{bird}_{k + 1:04d}_{image_id}.jpg"
            write_jpeg(root / "images" / relative, image_id)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {label + 1}")
            is_train = int(k != 1)
            flags.append(f"{image_id} {is_train}")
            (train if is_train else test).append((f"images/{relative}", label))
    _write_lines(root / "images.txt", images)
    _write_lines(root / "image_class_labels.txt", labels)
    _write_lines(root / "train_test_split.txt", flags)
    _write_lines(root / "classes.txt", [f"{k + 1} {name}" for k, name in enumerate(CUB_CLASSES)])
    return Layout(root, list(CUB_CLASSES), train, test)


DOG_BREEDS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02085936-Maltese_dog"]


def write_dogs120(base: Path) -> Layout:
    """Three training and two test images a breed, listed breed by breed as the official lists."""
    root = base / "stanford_dog"
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    seed = 100
    for label, breed in enumerate(DOG_BREEDS):
        synset = breed.split("-", 1)[0]
        for split, count in (("train", 3), ("test", 2)):
            for _ in range(count):
                seed += 1
                relative = f"{breed}/{synset}_{seed}.jpg"
                write_jpeg(root / "Images" / relative, seed)
                splits[split].append((relative, label))
    for split, items in splits.items():
        files = [relative for relative, _ in items]
        savemat(root / f"{split}_list.mat", {
            "file_list": _cell(files),
            "annotation_list": _cell([f.removesuffix(".jpg") for f in files]),
            "labels": np.array([[label + 1] for _, label in items], dtype=np.uint8),
        })
    return Layout(root, list(DOG_BREEDS), [(f"Images/{r}", c) for r, c in splits["train"]],
                  [(f"Images/{r}", c) for r, c in splits["test"]])


FLOWER_TRNID, FLOWER_VALID, FLOWER_TSTID = [2, 3, 4], [1, 5, 6], [7, 8, 9, 10, 11, 12]


def write_flowers102(base: Path) -> Layout:
    """Twelve images, image i of class (i - 1) % 3; train = trnid then valid, test = tstid."""
    root = base / "Flower_102"
    labels = [(i - 1) % 3 for i in range(1, 13)]
    for i in range(1, 13):
        write_jpeg(root / "jpg" / f"image_{i:05d}.jpg", 200 + i)
    savemat(root / "imagelabels.mat", {"labels": np.array([[label + 1 for label in labels]], dtype=np.float64)})
    savemat(root / "setid.mat", {key: np.array([ids], dtype=np.uint16) for key, ids in
                                 (("trnid", FLOWER_TRNID), ("valid", FLOWER_VALID), ("tstid", FLOWER_TSTID))})

    def items(ids: list[int]) -> list[tuple[str, int]]:
        return [(f"jpg/image_{i:05d}.jpg", labels[i - 1]) for i in ids]

    return Layout(root, ["label_001", "label_002", "label_003"], items(FLOWER_TRNID + FLOWER_VALID),
                  items(FLOWER_TSTID))


MIT_CLASSES = ["airport_inside", "bakery", "kitchen"]  # sorted: the class ids


def write_mit67(base: Path) -> Layout:
    """Three training and two test images a class; the lists start with the LAST class (sorting,
    not list order, gives the ids)."""
    root = base / "MIT_67"
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    seed = 300
    for label in (2, 0, 1):
        scene = MIT_CLASSES[label]
        for split, count in (("train", 3), ("test", 2)):
            for _ in range(count):
                seed += 1
                relative = f"{scene}/{scene}_{seed:04d}.jpg"
                write_jpeg(root / "Images" / relative, seed)
                splits[split].append((relative, label))
    _write_lines(root / "TrainImages.txt", [r for r, _ in splits["train"]])
    _write_lines(root / "TestImages.txt", [r for r, _ in splits["test"]])
    return Layout(root, list(MIT_CLASSES), [(f"Images/{r}", c) for r, c in splits["train"]],
                  [(f"Images/{r}", c) for r, c in splits["test"]])


ACTIONS = ["applauding", "blowing_bubbles", "brushing_teeth"]


def write_actions40(base: Path) -> Layout:
    """Three training and two test images an action; actions.txt with its header line."""
    root = base / "stanford_40"
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, action in enumerate(ACTIONS):
        for split, numbers in (("train", (1, 3, 4)), ("test", (2, 5))):
            names = [f"{action}_{n:03d}.jpg" for n in numbers]
            for name in names:
                write_jpeg(root / "JPEGImages" / name, 400 + 10 * label + int(name[-7:-4]))
                splits[split].append((f"JPEGImages/{name}", label))
            _write_lines(root / "ImageSplits" / f"{action}_{split}.txt", names)
    _write_lines(root / "ImageSplits" / "actions.txt",
                 ["Action name\tNumber of images", *(f"{a}\t5" for a in ACTIONS)])
    return Layout(root, list(ACTIONS), splits["train"], splits["test"])


WRITERS = {"cub200": write_cub200, "dogs120": write_dogs120, "flowers102": write_flowers102,
           "mit67": write_mit67, "actions40": write_actions40}
