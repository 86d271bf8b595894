"""Loaders on tiny files written in the real on-disk formats, read through torchvision's own classes;
and the errors a user sees when files are missing or corrupt."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd

from featspace import data
from featspace.data import datasets as fds
from tests.data import formats


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Hide the system's Fashion-MNIST package so tests see only their own files."""
    monkeypatch.setattr(fds, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-here")


def install_md5s(monkeypatch, cls, folder):
    """Put the MD5s of the tiny files in torchvision's tables, so its integrity check runs and passes."""
    monkeypatch.setattr(cls, "train_list", [[f, formats.md5(folder / f)] for f, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[f, formats.md5(folder / f)] for f, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": formats.md5(folder / cls.meta["filename"])})


def check_bundle(bundle, n_train, n_test, channels, size, num_classes):
    assert bundle.train_images.shape == (n_train, channels, size, size)
    assert bundle.test_images.shape == (n_test, channels, size, size)
    assert bundle.train_images.dtype == torch.uint8 and bundle.train_labels.dtype == torch.int64
    assert bundle.num_classes == num_classes == len(bundle.class_names)
    assert bundle.in_channels == channels and bundle.image_size == (size, size)
    assert len(bundle.mean) == len(bundle.std) == channels
    expected_mean = bundle.train_images.double().div(255).mean(dim=(0, 2, 3))
    expected_std = bundle.train_images.double().div(255).std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(torch.tensor(bundle.mean, dtype=torch.float64), expected_mean, atol=1e-9)
    assert torch.allclose(torch.tensor(bundle.std, dtype=torch.float64), expected_std, atol=1e-9)


def test_registry_lists_every_dataset_with_a_description():
    expected = ["digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "cifar100_coarse", "svhn", "imagefolder",
                "tinyimagenet", "imagenet"]
    fewshot = [f"fewshot_{s}" for s in ("mini_imagenet", "tiered_imagenet", "cub", "cifar_fs", "fashion", "digits")]
    assert sorted(data.names()) == sorted(expected + fewshot)
    for name in expected + fewshot:
        line = data.describe(name)
        assert line and "\n" not in line


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid datasets: .*digits.*cifar10"):
        data.load("imagenet21k")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.describe("nope")


def test_load_passes_the_options_a_registered_loader_declares(tmp_path):
    """``load`` reads a loader's signature: no per-dataset case in it, so a new loader needs none."""
    seen = {}

    @data.DATASETS.register("test_tiny", description="two 1×s×s images per split")
    def tiny(root, image_size: int = 4):
        seen.update(root=root, image_size=image_size)
        images = torch.zeros(2, 1, image_size, image_size, dtype=torch.uint8)
        return fds._bundle("test_tiny", (images, torch.tensor([0, 1])), (images, torch.tensor([1, 0])), ["a", "b"],
                           augment="none", source=str(root))

    try:
        assert data.load("test_tiny", data_dir=tmp_path, image_size=3).image_size == (3, 3)
        assert seen == {"root": tmp_path, "image_size": 3}
        assert data.load("test_tiny", data_dir=tmp_path, download=True).image_size == (4, 4)  # takes no download
        assert "test_tiny" in data.names() and data.describe("test_tiny") == "two 1×s×s images per split"
    finally:
        data.DATASETS.unregister("test_tiny")
    with pytest.raises(ValueError, match="fixed image size"):
        data.load("mnist", image_size=16)
    with pytest.raises(ValueError, match="cannot be downloaded"):
        data.load("fewshot_digits", download=True)


def test_digits_is_the_bundled_default():
    bundle = data.load("digits")
    check_bundle(bundle, 1438, 359, 1, 8, 10)
    assert bundle.augment == "none"
    # 0..16 mapped onto 0..255 exactly at the ends
    assert int(bundle.train_images.max()) == 255 and int(bundle.train_images.min()) == 0
    # stratified 80/20: every class in both splits, about a fifth of each class in test
    counts_test = torch.bincount(bundle.test_labels, minlength=10)
    counts_all = counts_test + torch.bincount(bundle.train_labels, minlength=10)
    assert torch.all((counts_test.double() - 0.2 * counts_all.double()).abs() < 1.0)
    # the same split every time
    again = data.load("digits")
    assert torch.equal(again.test_images, bundle.test_images) and torch.equal(again.test_labels, bundle.test_labels)


@pytest.mark.parametrize("name,cls", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_family_through_torchvision_layout(tmp_path, no_debian, name, cls):
    arrays = formats.write_mnist(tmp_path / cls / "raw", n_train=20, n_test=10)
    bundle = data.load(name, data_dir=tmp_path)
    check_bundle(bundle, 20, 10, 1, 28, 10)
    assert torch.equal(bundle.train_images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert torch.equal(bundle.test_labels, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    assert bundle.class_names == list(getattr(tvd, cls).classes)
    assert bundle.augment == "none"


def test_fashion_mnist_from_gzipped_idx_as_debian_installs_them(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    arrays = formats.write_mnist(debian, n_train=12, n_test=6, gz=True)
    monkeypatch.setattr(fds, "DEBIAN_FASHION_MNIST_DIR", debian)
    (tmp_path / "empty").mkdir()  # a data_dir that exists but holds no copy: Debian's is found
    bundle = data.load("fashion_mnist", data_dir=tmp_path / "empty")
    check_bundle(bundle, 12, 6, 1, 28, 10)
    assert torch.equal(bundle.train_images[:, 0], torch.from_numpy(arrays["train-images-idx3-ubyte"]))
    assert bundle.source == str(debian)
    assert bundle.class_names[0] == "T-shirt/top"


def test_real_debian_fashion_mnist_when_installed(tmp_path):
    if not (fds.DEBIAN_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian's dataset-fashion-mnist is not installed here")
    bundle = data.load("fashion_mnist", data_dir=tmp_path)
    check_bundle(bundle, 60000, 10000, 1, 28, 10)
    assert torch.equal(torch.bincount(bundle.train_labels), torch.full((10,), 6000))
    assert abs(bundle.mean[0] - 0.2860) < 1e-3 and abs(bundle.std[0] - 0.3530) < 1e-3  # the published values


def test_idx_reader_matches_torchvision(tmp_path):
    arrays = formats.write_mnist(tmp_path, n_train=5, n_test=3)
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for stem in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        assert np.array_equal(data.read_idx(tmp_path / stem), read_image_file(str(tmp_path / stem)).numpy())
    stem = "train-labels-idx1-ubyte"
    assert np.array_equal(data.read_idx(tmp_path / stem), read_label_file(str(tmp_path / stem)).numpy())
    (tmp_path / "x.gz").write_bytes(gzip.compress((tmp_path / stem).read_bytes()))
    assert np.array_equal(data.read_idx(tmp_path / "x.gz"), arrays[stem])


def test_cifar10(tmp_path, monkeypatch):
    arrays = formats.write_cifar10(tmp_path)
    install_md5s(monkeypatch, tvd.CIFAR10, tmp_path / "cifar-10-batches-py")
    bundle = data.load("cifar10", data_dir=tmp_path)
    check_bundle(bundle, 30, 8, 3, 32, 10)
    assert torch.equal(bundle.train_images, torch.from_numpy(arrays["train_images"]))  # CHW kept, order kept
    assert torch.equal(bundle.test_labels, torch.from_numpy(arrays["test_labels"]))
    assert bundle.class_names[1] == "automobile" and bundle.augment == "crop_flip"


@pytest.mark.parametrize("coarse", [False, True])
def test_cifar100_fine_and_coarse(tmp_path, monkeypatch, coarse):
    arrays = formats.write_cifar100(tmp_path)
    install_md5s(monkeypatch, tvd.CIFAR100, tmp_path / "cifar-100-python")
    bundle = data.load("cifar100_coarse" if coarse else "cifar100", data_dir=tmp_path)
    check_bundle(bundle, 30, 12, 3, 32, 20 if coarse else 100)
    key = "coarse" if coarse else "fine"
    assert torch.equal(bundle.train_labels, torch.from_numpy(arrays[f"train_{key}"]))
    assert torch.equal(bundle.test_labels, torch.from_numpy(arrays[f"test_{key}"]))
    assert torch.equal(bundle.test_images, torch.from_numpy(arrays["test_images"]))
    assert bundle.class_names[3] == f"{key}3"


def test_cifar100_coarse_refuses_a_pickle_that_runs_code(tmp_path, monkeypatch):
    formats.write_cifar100(tmp_path)
    folder = tmp_path / "cifar-100-python"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": Evil()}, f)
    install_md5s(monkeypatch, tvd.CIFAR100, folder)
    with pytest.raises(data.DatasetNotFoundError, match="refusing to load builtins.print"):
        data.load("cifar100_coarse", data_dir=tmp_path)


def test_svhn(tmp_path, monkeypatch):
    arrays = formats.write_svhn(tmp_path / "svhn")
    split_list = {k: [v[0], v[1], formats.md5(tmp_path / "svhn" / v[1]) if k != "extra" else v[2]]
                  for k, v in tvd.SVHN.split_list.items()}
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    bundle = data.load("svhn", data_dir=tmp_path)  # found in the svhn/ subfolder
    check_bundle(bundle, 9, 5, 3, 32, 10)
    assert torch.equal(bundle.train_images, torch.from_numpy(arrays["train_images"]))
    assert torch.equal(bundle.train_labels, torch.from_numpy(arrays["train_labels"]))  # label 10 -> digit 0
    assert bundle.augment == "crop"  # digits are not flipped


def test_imagefolder_lists_files_and_keeps_train_class_indices(tmp_path):
    formats.write_imagefolder(tmp_path, "train", {"ant": 2, "bee": 3, "cat": 2})
    formats.write_imagefolder(tmp_path, "val", {"bee": 2, "cat": 1}, size=(9, 30), gray=True)  # no "ant"
    bundle = data.load("imagefolder", data_dir=tmp_path, image_size=16)
    assert isinstance(bundle, data.FolderBundle) and bundle.image_size == 16 and bundle.in_channels == 3
    assert bundle.class_names == ["ant", "bee", "cat"] and bundle.num_classes == 3
    assert bundle.train.labels.tolist() == [0, 0, 1, 1, 1, 2, 2]
    # the val tree's writer numbered its classes 0 (bee), 1 (cat); featspace maps them to train's 1, 2; with no
    # test/, val/ is the test split
    assert bundle.test.labels.tolist() == [1, 1, 2] and bundle.val is None
    assert bundle.test.paths[2].endswith("val/cat/0.png")
    assert bundle.augment == "crop_flip" and bundle.skipped == []
    assert data.load("imagefolder", data_dir=tmp_path).image_size == 32


# ---------------------------------------------------------------------------------------------- errors


def test_missing_cifar_says_what_where_and_how(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("cifar10", data_dir=tmp_path)
    message = str(info.value)
    assert "cifar10" in message and "data_batch_1" in message and "batches.meta" in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "download" in message and "cifar-10-python.tar.gz" in message
    assert isinstance(info.value, FileNotFoundError)


def test_corrupt_cifar_is_reported_with_the_loader_error_chained(tmp_path, monkeypatch):
    formats.write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    install_md5s(monkeypatch, tvd.CIFAR10, folder)
    (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:-100])  # truncated copy
    with pytest.raises(data.DatasetNotFoundError, match="corrupt") as info:
        data.load("cifar10", data_dir=tmp_path)
    assert isinstance(info.value.__cause__, RuntimeError)  # torchvision's checksum failure, chained


def test_official_checksums_reject_files_that_are_not_the_release(tmp_path):
    formats.write_cifar100(tmp_path)  # no md5 patching: torchvision compares with the real release
    with pytest.raises(data.DatasetNotFoundError, match="not the official release"):
        data.load("cifar100", data_dir=tmp_path)


def test_truncated_mnist_idx(tmp_path, no_debian):
    raw = tmp_path / "MNIST" / "raw"
    formats.write_mnist(raw)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-28])
    with pytest.raises(data.DatasetNotFoundError, match="mnist") as info:
        data.load("mnist", data_dir=tmp_path)
    assert info.value.__cause__ is not None


def test_truncated_gzipped_idx_in_a_plain_folder(tmp_path, no_debian):
    formats.write_mnist(tmp_path / "fashion_mnist", gz=True)
    path = tmp_path / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    with pytest.raises(data.DatasetNotFoundError, match="truncated or corrupt"):
        data.load("fashion_mnist", data_dir=tmp_path)


def test_missing_fashion_mnist_names_every_place_tried_and_the_debian_package(tmp_path, no_debian):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("fashion_mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message
    assert str(fds.DEBIAN_FASHION_MNIST_DIR) in message
    assert "dataset-fashion-mnist" in message and "download" in message
    assert "train-images-idx3-ubyte" in message


def test_missing_svhn(tmp_path):
    with pytest.raises(data.DatasetNotFoundError, match="train_32x32.mat") as info:
        data.load("svhn", data_dir=tmp_path)
    assert str(tmp_path / "svhn") in str(info.value)


def test_corrupt_svhn_mat(tmp_path, monkeypatch):
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    split_list = {k: [v[0], v[1], formats.md5(tmp_path / v[1]) if k != "extra" else v[2]]
                  for k, v in tvd.SVHN.split_list.items()}
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    with pytest.raises(data.DatasetNotFoundError, match="SVHN failed") as info:
        data.load("svhn", data_dir=tmp_path)
    assert info.value.__cause__ is not None


def test_imagefolder_errors(tmp_path):
    with pytest.raises(ValueError, match="needs data_dir"):
        data.load("imagefolder")
    with pytest.raises(data.DatasetNotFoundError, match="test"):
        formats.write_imagefolder(tmp_path, "train", {"a": 1, "b": 1})
        data.load("imagefolder", data_dir=tmp_path)
    formats.write_imagefolder(tmp_path, "test", {"a": 1, "zebra": 1})
    with pytest.raises(data.DatasetNotFoundError, match="classes not in .*zebra"):
        data.load("imagefolder", data_dir=tmp_path)
    with pytest.raises(ValueError, match="imagefolder"):
        data.load("digits", image_size=16)


def test_channel_stats_of_a_constant_channel_do_not_divide_by_zero():
    images = torch.zeros(3, 2, 4, 4, dtype=torch.uint8)
    images[:, 1] = 255
    mean, std = data.channel_stats(images)
    assert mean == (0.0, 1.0) and std == (1.0, 1.0)


@pytest.mark.parametrize("name,module", [("cifar10", "cifar"), ("mnist", "mnist")])
def test_failed_download_is_reported_not_raised_from_torchvision(tmp_path, monkeypatch, no_debian, name, module):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("no route to host")

    monkeypatch.setattr(f"torchvision.datasets.{module}.download_and_extract_archive", offline)
    with pytest.raises(data.DatasetNotFoundError, match="no route to host") as info:
        data.load(name, data_dir=tmp_path, download=True)
    assert "download" in str(info.value) and info.value.__cause__ is not None


def test_local_copy_wins_over_download(tmp_path, monkeypatch):
    debian = tmp_path / "debian"
    formats.write_mnist(debian, n_train=4, n_test=2, gz=True)
    monkeypatch.setattr(fds, "DEBIAN_FASHION_MNIST_DIR", debian)

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when a local copy exists")

    monkeypatch.setattr("torchvision.datasets.mnist.download_and_extract_archive", no_network)
    assert data.load("fashion_mnist", data_dir=tmp_path / "empty", download=True).source == str(debian)


def test_an_idx_gzip_bomb_is_refused_from_its_header(tmp_path):
    """Issue 17, item 6: a small .gz whose header declares a huge payload (or that inflates past what its header
    declares) is refused without decompressing it whole."""
    import gzip
    import struct

    declared = tmp_path / "huge-idx3-ubyte.gz"
    declared.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + struct.pack(">3I", 60000, 4096, 4096)))
    with pytest.raises(ValueError, match="declares shape .* more than the"):
        data.read_idx(declared)
    inflating = tmp_path / "inflating-idx1-ubyte.gz"
    with gzip.open(inflating, "wb") as handle:  # 10 labels declared, 50 MB of zeros behind them
        handle.write(b"\x00\x00\x08\x01" + struct.pack(">I", 10))
        handle.write(bytes(50 << 20))
    assert inflating.stat().st_size < 200_000
    with pytest.raises(ValueError, match=r"holds more than 10 bytes of data; it is truncated or corrupt"):
        data.read_idx(inflating)


def test_an_explicit_data_dir_that_does_not_exist_is_an_error_not_a_fallback(tmp_path):
    """Issue 17, item 10: a mistyped --data-dir silently used Debian's Fashion-MNIST while config.yaml recorded
    the typo."""
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.load("fashion_mnist", data_dir=tmp_path / "typo")
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.load("digits", data_dir=tmp_path / "typo")
