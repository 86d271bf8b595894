"""Writers of tiny datasets in the real on-disk formats, for the loader tests.

Each writer produces the files torchvision's dataset class reads (same names, layout, encoding), with a
handful of images whose pixels encode their index and label so a test can check nothing was reordered.
torchvision checks CIFAR's and SVHN's files against the MD5s of the official release; ``checksums``
returns the MD5s of the tiny files so a test can install them in torchvision's tables (monkeypatch) and
still run torchvision's integrity check.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def pattern_images(n: int, shape: tuple[int, ...], offset: int = 0) -> np.ndarray:
    """uint8 images whose first pixel is the image index (+ offset) and the rest a fixed pattern."""
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    images.reshape(n, -1)[:, 0] = (np.arange(n) + offset) % 256
    return images


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (ubyte payload): magic 0x0000 08 <ndim>, big-endian dims, then the data."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_mnist(directory: Path, n_train: int = 20, n_test: int = 10, gz: bool = False, size: int = 28,
                classes: int = 10) -> dict[str, np.ndarray]:
    """The four MNIST IDX files in ``directory`` (torchvision's ``<root>/<Class>/raw`` or a plain folder)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": pattern_images(n_train, (size, size), 0),
        "train-labels-idx1-ubyte": (np.arange(n_train) % classes).astype(np.uint8),
        "t10k-images-idx3-ubyte": pattern_images(n_test, (size, size), 100),
        "t10k-labels-idx1-ubyte": ((np.arange(n_test) * 3) % classes).astype(np.uint8),
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return arrays


def _dump(obj: object, path: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_batch: int = 6, n_test: int = 8) -> dict[str, np.ndarray]:
    """cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: dicts with 'data' [n, 3072] (RGB
    planes, row-major) and 'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_images, train_labels = [], []
    for b in range(1, 6):
        images = pattern_images(per_batch, (3, 32, 32), offset=b * per_batch)
        labels = [(b * per_batch + i) % 10 for i in range(per_batch)]
        _dump({"batch_label": f"training batch {b} of 5", "data": images.reshape(per_batch, -1),
               "labels": labels, "filenames": [f"img{i}.png" for i in range(per_batch)]}, folder / f"data_batch_{b}")
        train_images.append(images)
        train_labels.extend(labels)
    test_images = pattern_images(n_test, (3, 32, 32), offset=200)
    test_labels = [(7 * i) % 10 for i in range(n_test)]
    _dump({"data": test_images.reshape(n_test, -1), "labels": test_labels}, folder / "test_batch")
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, folder / "batches.meta")
    return {"train_images": np.concatenate(train_images), "train_labels": np.array(train_labels),
            "test_images": test_images, "test_labels": np.array(test_labels)}


def write_cifar100(root: Path, n_train: int = 30, n_test: int = 12) -> dict[str, np.ndarray]:
    """cifar-100-python/{train, test, meta} with fine and coarse labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 300)):
        images = pattern_images(n, (3, 32, 32), offset=offset)
        fine = [(offset + 7 * i) % 100 for i in range(n)]
        coarse = [f % 20 for f in fine]  # any fixed fine -> coarse map will do
        _dump({"filenames": [f"{i}.png" for i in range(n)], "batch_label": split, "fine_labels": fine,
               "coarse_labels": coarse, "data": images.reshape(n, -1)}, folder / split)
        out.update({f"{split}_images": images, f"{split}_fine": np.array(fine), f"{split}_coarse": np.array(coarse)})
    _dump({"fine_label_names": [f"fine{i}" for i in range(100)],
           "coarse_label_names": [f"coarse{i}" for i in range(20)]}, folder / "meta")
    return out


def write_svhn(root: Path, n_train: int = 9, n_test: int = 5) -> dict[str, np.ndarray]:
    """train_32x32.mat and test_32x32.mat: 'X' uint8 [32, 32, 3, N] and 'y' [N, 1] with 10 for the digit 0."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 50)):
        images = pattern_images(n, (3, 32, 32), offset=offset)  # NCHW, the layout featspace returns
        digits = (np.arange(n) + offset) % 10
        y = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": images.transpose(2, 3, 1, 0), "y": y})
        out.update({f"{split}_images": images, f"{split}_labels": digits})
    return out


def write_imagefolder(root: Path, split: str, classes: dict[str, int], size: tuple[int, int] = (20, 12),
                      gray: bool = False) -> None:
    """``root/split/<class>/<i>.png`` with ``classes[name]`` images each; every pixel of an image of class
    k has the value 20·k + i in each channel, so the class survives resizing."""
    from PIL import Image

    for k, (name, count) in enumerate(sorted(classes.items())):
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            value = 20 * k + i
            if gray:
                image = Image.fromarray(np.full((size[1], size[0]), value, np.uint8), mode="L")
            else:
                image = Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8), mode="RGB")
            image.save(folder / f"{i}.png")


def _save(path: Path, value: int, size: tuple[int, int], fmt: str | None = None) -> None:
    """A flat RGB image of ``value`` (width, height = ``size``), JPEG or PNG by suffix (or ``fmt``)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8), mode="RGB").save(path, format=fmt)


def write_mixed_folder(root: Path, splits: dict[str, dict[str, int]]) -> list[Path]:
    """``root/<split>/<class>/<i>.{png,jpg}``: PNG and JPEG alternately, sizes and aspect ratios varying (wide,
    tall, square, 20–70 px), every pixel of class k at 40·k + 10 so that the class survives resizing and JPEG.
    Returns the files written."""
    shapes = [(40, 24), (24, 40), (33, 33), (70, 20), (20, 52)]
    written = []
    for split, classes in splits.items():
        for k, (name, count) in enumerate(sorted(classes.items())):
            for i in range(count):
                path = root / split / name / f"{i}.{'png' if i % 2 == 0 else 'jpg'}"
                _save(path, 40 * k + 10, shapes[(i + k) % len(shapes)])
                written.append(path)
    return written


def write_tinyimagenet(root: Path, wnids: list[str], n_train: int = 3, n_val: int = 2) -> None:
    """Tiny ImageNet's release layout: wnids.txt, words.txt, train/<wnid>/images/<wnid>_<i>.JPEG (+ the boxes
    file), val/images/val_<i>.JPEG with val/val_annotations.txt, test/images/ (unlabelled), 64×64 JPEGs."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (root / "words.txt").write_text("".join(f"{w}\tword{w[-2:]}, synonym\n" for w in wnids) + "n99999999\tother\n")
    for k, wnid in enumerate(sorted(wnids)):
        boxes = []
        for i in range(n_train):
            _save(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 30 * k + 5, (64, 64), "JPEG")
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63\n")
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    lines = []
    number = 0
    for k, wnid in enumerate(sorted(wnids)):
        for _ in range(n_val):
            name = f"val_{number}.JPEG"
            _save(root / "val" / "images" / name, 30 * k + 5, (64, 64), "JPEG")
            lines.append(f"{name}\t{wnid}\t1\t2\t60\t61\n")
            number += 1
    (root / "val" / "val_annotations.txt").write_text("".join(lines[::-1]))  # not in class order, as released
    _save(root / "test" / "images" / "test_0.JPEG", 7, (64, 64), "JPEG")


def write_imagenet(root: Path, wnids: list[str], n_train: int = 2, n_val: int = 1) -> None:
    """ImageNet's folder layout: train/<wnid>/<wnid>_<i>.JPEG and val/<wnid>/ILSVRC2012_val_<n>.JPEG, images of
    varying aspect ratio larger than 32 px."""
    number = 0
    for k, wnid in enumerate(sorted(wnids)):
        for i in range(n_train):
            _save(root / "train" / wnid / f"{wnid}_{i}.JPEG", 10 * k + 5, (48 + 8 * i, 36), "JPEG")
        for _ in range(n_val):
            number += 1
            _save(root / "val" / wnid / f"ILSVRC2012_val_{number:08d}.JPEG", 10 * k + 5, (40, 56), "JPEG")
