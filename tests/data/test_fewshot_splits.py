"""Few-shot splits read from tiny trees written in each dataset's on-disk form, and the CPU-sized splits."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from featspace.data import DatasetNotFoundError
from featspace.data import datasets as fds
from featspace.data import fewshot_splits as splits
from featspace.data import load as load_dataset
from featspace.data.fewshot_splits import cub_split_of_class, load_bundle, load_split, split_for_dataset
from tests.data import formats


def _image(path, value, size=(10, 12), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    array[..., 1] = 255 - value  # channels differ, so a channel mix-up shows
    Image.fromarray(array).save(path, format=fmt)


def _value(class_index):
    return 10 + 20 * class_index


def _check_colours(group, values):
    """Every image of class c is the uniform colour values[c] (red) / 255 − values[c] (green)."""
    for c, value in enumerate(values):
        images = group.images[group.labels == c].int()
        assert images.numel() > 0
        assert (images[:, 0] - value).abs().max() <= 2 and (images[:, 1] - (255 - value)).abs().max() <= 2


@pytest.fixture(autouse=True)
def _fresh_cache():
    splits._CACHE.clear()
    yield
    splits._CACHE.clear()


def test_mini_imagenet_from_split_csvs(tmp_path):
    root = tmp_path / "mini-imagenet"
    wnids = {"train": ["n01", "n02", "n03"], "val": ["n04", "n05"], "test": ["n06", "n07"]}
    for part, classes in wnids.items():
        rows = ["filename,label"]
        for wnid in classes:
            for k in range(4):
                name = f"{wnid}{k:08d}.jpg"
                # one class in the images/<label>/ form that some copies use
                path = root / "images" / (f"{wnid}/{name}" if wnid == "n05" else name)
                _image(path, _value(int(wnid[1:])), fmt="PNG")  # PNG bytes under .jpg: lossless colours
                rows.append(f"{name},{wnid}")
        (root / f"{part}.csv").write_text("\n".join(rows) + "\n")
    split = load_split("mini_imagenet", data_dir=tmp_path, image_size=6, holdout_fraction=0.25)
    assert split.train.class_names == ["n01", "n02", "n03"] and split.test.class_names == ["n06", "n07"]
    assert split.train.images.shape == (9, 3, 6, 6) and split.base_test.images.shape == (3, 3, 6, 6)
    assert split.train.images.dtype == torch.uint8 and split.in_channels == 3 and split.image_size == (6, 6)
    _check_colours(split.train, [_value(i) for i in (1, 2, 3)])
    _check_colours(split.val, [_value(4), _value(5)])
    _check_colours(split.test, [_value(6), _value(7)])
    assert split.augment == "crop_flip" and len(split.mean) == 3
    bundle = split.to_bundle()
    assert bundle.name == "fewshot_mini_imagenet" and bundle.num_classes == 3 and bundle.test_images.shape[0] == 3
    # the same arguments return the cached split
    assert load_split("mini_imagenet", data_dir=tmp_path, image_size=6, holdout_fraction=0.25) is split


def test_mini_imagenet_missing_image_names_the_file(tmp_path):
    (tmp_path / "images").mkdir()
    for part in ("train", "val", "test"):
        (tmp_path / f"{part}.csv").write_text("filename,label\nmissing.jpg,n01\n")
    with pytest.raises(DatasetNotFoundError, match="missing.jpg"):
        load_split("mini_imagenet", data_dir=tmp_path)


def test_tiered_imagenet_from_class_folders_and_the_memory_check(tmp_path):
    root = tmp_path / "tiered-imagenet"
    layout = {"train": ["a", "b", "c"], "val": ["d", "e"], "test": ["f", "g", "h"]}
    for part, classes in layout.items():
        for c in classes:
            for k in range(3):
                _image(root / part / c / f"{k}.png", _value(ord(c) - ord("a")), size=(7, 5))
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    split = load_split("tiered_imagenet", data_dir=tmp_path, image_size=5, holdout_fraction=0.34)
    assert split.test.class_names == ["f", "g", "h"] and split.val.num_classes == 2
    assert len(split.train) + len(split.base_test) == 9 and len(split.base_test) == 3
    _check_colours(split.test, [_value(5), _value(6), _value(7)])
    with pytest.raises(MemoryError, match="max_bytes"):
        load_split("tiered_imagenet", data_dir=tmp_path, image_size=84, max_bytes=1000)


def test_cub_split_follows_chen_et_al(tmp_path):
    assert [cub_split_of_class(i) for i in range(8)] == ["train", "val", "train", "test"] * 2
    assert sorted({p: [cub_split_of_class(i) for i in range(200)].count(p) for p in ("train", "val", "test")}.items()) \
        == [("test", 50), ("train", 100), ("val", 50)]
    root = tmp_path / "CUB_200_2011"
    names = [f"{i + 1:03d}.Bird_{chr(ord('A') + i)}" for i in range(8)]
    classes, images, labels = [], [], []
    image_id = 0
    for i, name in enumerate(names):
        classes.append(f"{i + 1} {name}")
        for k in range(3):
            image_id += 1
            relative = f"{name}/{name}_{k}.jpg"
            _image(root / "images" / relative, _value(i), fmt="PNG")
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {i + 1}")
    (root / "classes.txt").write_text("\n".join(reversed(classes)) + "\n")  # order in the file does not matter
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    split = load_split("cub", data_dir=tmp_path, image_size=4, holdout_fraction=0.3)
    assert split.train.class_names == [names[i] for i in (0, 2, 4, 6)]
    assert split.val.class_names == [names[1], names[5]] and split.test.class_names == [names[3], names[7]]
    _check_colours(split.test, [_value(3), _value(7)])
    _check_colours(split.val, [_value(1), _value(5)])
    assert len(split.train) + len(split.base_test) == 12


def _cifar_fs_split_files(directory, wanted):
    directory.mkdir(parents=True, exist_ok=True)
    for part, classes in wanted.items():
        (directory / f"{part}.txt").write_text("\n".join(classes) + "\n")


def test_cifar_fs_folder_form(tmp_path):
    root = tmp_path / "CIFAR-FS"
    wanted = {"train": ["apple", "bee", "cup"], "val": ["dog"], "test": ["eel", "fox"]}
    _cifar_fs_split_files(root / "splits" / "bertinetto", wanted)
    for i, cls in enumerate(["apple", "bee", "cup", "dog", "eel", "fox", "unused"]):
        for k in range(4):
            _image(root / "data" / cls / f"{cls}_{k}.png", _value(i), size=(32, 32))
    split = load_split("cifar_fs", data_dir=tmp_path)
    assert split.image_size == (32, 32) and split.train.class_names == ["apple", "bee", "cup"]
    assert split.test.class_names == ["eel", "fox"] and len(split.test) == 8
    _check_colours(split.test, [_value(4), _value(5)])


def test_cifar_fs_from_the_cifar100_pickles(tmp_path):
    root = tmp_path / "CIFAR-FS"
    fine_names = ["apple", "bee", "cup", "dog", "eel", "fox"]
    _cifar_fs_split_files(root, {"train": ["cup", "apple"], "val": ["dog"], "test": ["fox", "bee"]})
    pickles = root / "cifar-100-python"
    pickles.mkdir(parents=True)
    for part, per_class in (("train", 5), ("test", 1)):
        fine = np.repeat(np.arange(6), per_class)
        data = np.stack([np.concatenate([np.full(1024, _value(c)), np.full(1024, 255 - _value(c)), np.zeros(1024)])
                         for c in fine]).astype(np.uint8)
        with open(pickles / part, "wb") as handle:
            pickle.dump({"data": data, "fine_labels": fine.tolist(), "coarse_labels": [0] * len(fine)}, handle)
    with open(pickles / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": fine_names, "coarse_label_names": ["all"]}, handle)
    split = load_split("cifar_fs", data_dir=tmp_path, image_size=16, holdout_fraction=0.2)
    assert split.train.class_names == ["cup", "apple"] and split.test.class_names == ["fox", "bee"]
    assert split.image_size == (16, 16) and len(split.test) == 12  # train + test pickles: 6 per class
    _check_colours(split.test, [_value(5), _value(1)])
    _check_colours(split.train, [_value(2), _value(0)])
    # a pickle that would run code is refused
    with open(pickles / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": fine_names, "hook": print}, handle)
    splits._CACHE.clear()
    with pytest.raises(DatasetNotFoundError, match="refusing"):
        load_split("cifar_fs", data_dir=tmp_path)


def test_missing_dataset_says_what_and_where(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="looked for.*classes.txt"):
        load_split("cub", data_dir=tmp_path)
    with pytest.raises(ValueError, match="valid"):
        load_split("omniglot")


def test_digits_split_is_class_disjoint():
    split = load_split("digits")
    assert split.train.class_names == ["0", "1", "2", "3", "4"] and split.test.class_names == ["5", "6", "7", "8", "9"]
    assert len(split.train) + len(split.val) + len(split.base_test) + len(split.test) == 1797
    assert split.image_size == (8, 8) and split.in_channels == 1
    counts = torch.bincount(split.test.labels)
    assert counts.min() >= 170  # enough for 5-shot episodes with 15 queries
    assert split_for_dataset("fewshot_digits") == "digits" and split_for_dataset("digits") is None
    bundle = load_bundle("fewshot_digits")
    assert bundle.num_classes == 5 and torch.equal(bundle.test_labels, split.base_test.labels)


def test_fashion_split_uses_classes_0_to_4_as_base():
    try:
        split = load_split("fashion")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not on this machine")
    assert split.test.class_names == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert len(split.train) == 27000 and len(split.val) == 3000 and len(split.base_test) == 5000
    assert torch.bincount(split.test.labels).tolist() == [1000] * 5


def test_fewshot_fashion_base_classes_find_debian_fashion_mnist_with_no_data_folder(tmp_path, monkeypatch):
    # the training path loads fewshot_fashion through featspace.data.load, which defaults data_dir to ./data;
    # on a fresh checkout ./data does not exist and Debian's copy must still be found (a bench failed here)
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    formats.write_mnist(debian, n_train=200, n_test=50, gz=True)  # 20 a class: every class in the 10 % validation
    monkeypatch.setattr(fds, "DEBIAN_FASHION_MNIST_DIR", debian)
    monkeypatch.delenv(fds.DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data here
    bundle = load_dataset("fewshot_fashion")
    assert bundle.num_classes == 5 and bundle.source == str(debian)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("fewshot_fashion", data_dir=tmp_path / "typo")  # an explicit folder is still never skipped
