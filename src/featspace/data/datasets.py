"""Datasets as in-memory uint8 tensors: the registry, ``load`` and ``DatasetBundle``.

Every dataset the papers use (Fashion-MNIST, MNIST, CIFAR-10, CIFAR-100 fine and coarse, SVHN) is read
through torchvision's own dataset classes (their on-disk layouts, checksums and ``download``), then held
as one uint8 tensor ``[N, C, H, W]`` per split, so a CPU epoch is spent in the model rather than in
per-image PIL conversions. scikit-learn's bundled 8×8 digits are the embedded default that needs no
download. The image folders (``imagefolder``, ``tinyimagenet``, ``imagenet``) are not held in memory:
``featspace.data.folders`` lists their files and the data loader's workers decode them.

Failures never surface as a traceback from inside torchvision: a missing, incomplete or corrupt dataset
raises :class:`DatasetNotFoundError`, whose message names the files looked for, every directory tried,
and how to get them.

Departures: torchvision's CIFAR100 reads only the fine labels; ``cifar100_coarse`` reads the 20 coarse
labels from the same pickle files itself (with an unpickler that accepts only the numpy types those
files contain). Fashion-MNIST is also looked for as the gzipped IDX files that Debian's
``dataset-fashion-mnist`` installs, which featspace reads with its own small IDX reader.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from featspace.data.split import stratified_split
from featspace.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetBundle",
    "DatasetNotFoundError",
    "DEBIAN_FASHION_MNIST_DIR",
    "channel_stats",
    "default_data_dir",
    "describe",
    "load",
    "names",
    "read_idx",
]

#: where Debian's ``dataset-fashion-mnist`` package puts the original gzipped IDX files
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: environment variable naming the default data directory (``data_dir=None``)
DATA_DIR_ENV = "FEATSPACE_DATA_DIR"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing, incomplete or corrupt. The message says what was looked for, where, and how
    to get it; the original loader error, if any, is chained as ``__cause__``."""


@dataclass
class DatasetBundle:
    """One dataset held in memory.

    train_images / test_images: uint8 ``[N, C, H, W]`` (0–255); train_labels / test_labels: int64 ``[N]``
    in ``0 .. num_classes-1``. ``mean`` / ``std``: per-channel statistics of ``train_images`` on the
    [0, 1] scale (pixel / 255), so a normalized image is ``(pixel / 255 − mean) / std``. ``augment`` names
    the dataset's standard training augmentation policy: ``"none"``, ``"crop"`` (pad 4 + random crop) or
    ``"crop_flip"`` (the same plus a horizontal flip with probability ½), see ``featspace.data.transforms``.
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    num_classes: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    source: str = ""  # where the files were read from, for logs

    @property
    def in_channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    def __repr__(self) -> str:
        return (
            f"DatasetBundle({self.name!r}, train={tuple(self.train_images.shape)}, "
            f"test={tuple(self.test_images.shape)}, classes={self.num_classes}, augment={self.augment!r})"
        )


# ---------------------------------------------------------------------------------------------- registry

#: every dataset ``load`` knows: a loader ``(root: Path, [download: bool], [image_size: int]) -> DatasetBundle``
#: registered with its description; ``featspace.data.fewshot_splits`` adds the ``fewshot_<split>`` ones
DATASETS = Registry("dataset", fixed=("root",), parameter="option")


def names() -> list[str]:
    """Registered dataset names, in registration order (digits first: it needs no download), then the
    base classes of the few-shot splits as ``fewshot_<split>``."""
    return DATASETS.names()


def describe(name: str) -> str:
    """One-line description of a dataset."""
    return DATASETS.describe(name)


def default_data_dir() -> Path:
    """``$FEATSPACE_DATA_DIR`` if set, else ``./data`` (ignored by featspace's own ``.gitignore``)."""
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def load(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    image_size: int | None = None,
    skip_corrupt: bool = False,
    **params: Any,
) -> Any:
    """Load dataset ``name``: a :class:`DatasetBundle` held in memory, or for the image folders a
    ``featspace.data.folders.FolderBundle`` of file lists that the data loader streams.

    data_dir: the root that holds the dataset in torchvision's layout (default :func:`default_data_dir`);
        for ``imagefolder`` the directory with ``train/`` and ``test/`` (and/or ``val/``) class folders.
    download: let torchvision fetch the files into ``data_dir`` when no local copy is found (needs internet).
        MNIST and Fashion-MNIST are looked for first in torchvision's layout (``data_dir/MNIST/raw``,
        ``data_dir/FashionMNIST/raw``), then as IDX files, gzipped or not, in ``data_dir/<Class>``,
        ``data_dir/<name>`` and ``data_dir`` itself, and Fashion-MNIST also in
        ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
    image_size: the image side, for the datasets whose loader takes one (the image folders, the few-shot
        splits); the others have a fixed size (``DataModule(image_size=...)`` resizes their batches instead).
    skip_corrupt: image folders: leave unreadable files out (listed in the bundle's ``skipped``) instead of
        stopping at the first; the datasets held in whole files ignore it.
    params: the dataset's own options (a config's ``dataset_params``), e.g. ``classes=100`` for ``imagenet``;
        an option the dataset does not take is a ValueError listing those it does.

    Raises :class:`DatasetNotFoundError` when the files are missing or corrupt or an explicit ``data_dir`` does
    not exist (it never falls back on another copy), ``ValueError`` for an
    unknown name or an option the dataset does not take.
    """
    entry = DATASETS.entry(name)
    options = DATASETS.parameters(name)
    # what a loader accepts is read from its signature, so a new loader needs no case here
    if image_size is not None and "image_size" not in options:
        sized = ", ".join(n for n in names() if "image_size" in DATASETS.parameters(n))
        raise ValueError(f"{name!r} has a fixed image size; image_size applies to {sized} only")
    reserved = sorted(set(params) & {"root", "download", "image_size", "skip_corrupt"})
    if reserved:
        raise ValueError(f"dataset_params may not set {', '.join(reserved)}: they are config fields of their own")
    DATASETS.check(name, params)
    if data_dir is None and entry.extras.get("needs_data_dir"):
        raise ValueError(f"{name} needs data_dir: {entry.extras['needs_data_dir']}")
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None and not download and not root.is_dir():
        # an explicit directory that is not there is a typo, never a reason to fall back on another copy
        raise DatasetNotFoundError(f"data_dir {root} for {name!r} does not exist (or is not a directory)")
    kwargs: dict[str, object] = dict(params)
    if "download" in options:
        kwargs["download"] = download
    if image_size is not None:
        kwargs["image_size"] = image_size
    if "skip_corrupt" in options:
        kwargs["skip_corrupt"] = skip_corrupt
    return DATASETS.build(name, root, **kwargs)


# ---------------------------------------------------------------------------------------------- helpers


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images ``[N, C, H, W]`` on the [0, 1] scale.

    Accumulated in float64 over chunks, so a 50k×3×32×32 set never needs a float copy of itself.
    """
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"expected non-empty images [N, C, H, W], got shape {tuple(images.shape)}")
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += block.sum(dim=(0, 2, 3))
        total_sq += block.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    # a constant channel (std 0) would divide by zero when normalizing; 1 leaves it merely centred
    std = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _bundle(
    name: str,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    class_names: list[str],
    augment: str,
    source: str,
) -> DatasetBundle:
    """Validate the tensors every loader produces and compute the normalization statistics."""
    for split, (images, labels) in (("train", train), ("test", test)):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DatasetNotFoundError(f"{name}: {split} images must be uint8 [N, C, H, W], got "
                                       f"{images.dtype} {tuple(images.shape)} (from {source})")
        if labels.shape != (images.shape[0],):
            raise DatasetNotFoundError(f"{name}: {split} has {images.shape[0]} images but {labels.numel()} labels "
                                       f"(from {source}); the files are inconsistent or truncated")
        if images.shape[0] and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
            raise DatasetNotFoundError(f"{name}: {split} labels outside 0..{len(class_names) - 1} (from {source})")
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DatasetNotFoundError(f"{name}: train images {tuple(train[0].shape[1:])} and test images "
                                   f"{tuple(test[0].shape[1:])} differ in shape (from {source})")
    if train[0].shape[0] == 0:
        raise DatasetNotFoundError(f"{name}: the training split is empty (from {source})")
    mean, std = channel_stats(train[0])
    return DatasetBundle(
        name=name,
        train_images=train[0].contiguous(),
        train_labels=train[1].to(torch.int64).contiguous(),
        test_images=test[0].contiguous(),
        test_labels=test[1].to(torch.int64).contiguous(),
        num_classes=len(class_names),
        class_names=list(class_names),
        mean=mean,
        std=std,
        augment=augment,
        source=source,
    )


def not_found_error(name: str, looked_for: str | Sequence[str], tried: Sequence[Path], how: str, cause: str = "",
                    *, kind: str = "dataset") -> DatasetNotFoundError:
    """The error for missing or unreadable files: what (``kind`` ``name``) was looked for, where, the problem
    found, and how to get the files. Shared with the few-shot splits (``kind="few-shot split"``)."""
    lines = [f"{kind} {name!r} not found or unreadable."]
    if cause:
        lines.append(f"  problem: {cause}")
    lines.append(f"  looked for: {looked_for if isinstance(looked_for, str) else ', '.join(looked_for)}")
    lines.append("  in: " + "; ".join(str(p) for p in tried))
    lines.append(f"  how to get it: {how}")
    return DatasetNotFoundError("\n".join(lines))


def _missing(directory: Path, files: list[str]) -> list[str]:
    return [f for f in files if not (directory / f).is_file()]


_DOWNLOAD_HINT = "pass download=True (`featspace train ... --download`, needs internet) to fetch it into {root}"


# ---------------------------------------------------------------------------------------------- IDX files


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


#: the largest IDX payload read (the MNIST family's biggest file is 47 MB): a header declaring more is refused
#: before anything is decompressed
MAX_IDX_BYTES = 2 << 30


def read_idx(path: str | os.PathLike[str], *, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (the MNIST format: big-endian header, gzip or not) into a numpy array.

    Raises ``ValueError`` on a bad magic number, a header declaring more than ``max_bytes`` of data, or a payload
    whose size disagrees with the header (what a truncated download looks like). The payload is read as a
    stream, at most one byte past what the header declares, so a gzip bomb is never decompressed whole.
    """
    path = Path(path)
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
            magic = handle.read(4)
            if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES \
                    or not 1 <= magic[3] <= 4:
                raise ValueError(f"{path}: not an IDX file (bad magic number {magic.hex()})")
            dtype = np.dtype(_IDX_DTYPES[magic[2]])
            ndim = magic[3]
            dims = handle.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header")
            shape = struct.unpack(f">{ndim}I", dims)
            expected = math.prod(shape) * dtype.itemsize
            if expected > max_bytes:
                raise ValueError(f"{path}: IDX header declares shape {shape} ({expected} bytes), more than the "
                                 f"{max_bytes} bytes featspace reads; not a dataset file it can load")
            payload = handle.read(expected + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip stream ({err})") from err
    if len(payload) != expected:
        held = f"{len(payload)}" if len(payload) <= expected else f"more than {expected}"
        raise ValueError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file holds "
                         f"{held} bytes of data; it is truncated or corrupt")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx_split(directory: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for stem in _IDX_FILES[split]:
        candidates = [directory / stem, directory / f"{stem}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def _load_idx_dir(directory: Path) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]] | None:
    """The four MNIST-format IDX files (gzipped or not) directly in ``directory``, or None if absent."""
    splits = {}
    for split in ("train", "test"):
        paths = _find_idx_split(directory, split)
        if paths is None:
            return None
        images, labels = read_idx(paths[0]), read_idx(paths[1])
        if images.ndim != 3 or labels.ndim != 1 or images.dtype != np.uint8:
            raise ValueError(f"{paths[0]}: expected uint8 images [N, H, W] and labels [N], got {images.shape}, "
                             f"{labels.shape}")
        splits[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    return splits["train"], splits["test"]


# ---------------------------------------------------------------------------------------------- digits


@DATASETS.register("digits", description="scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes); "
                   "needs no download")
def _load_digits(root: Path, download: bool = False) -> DatasetBundle:
    """The 8×8 digits of scikit-learn (UCI optdigits test set), split 80/20 stratified with seed 0.

    Values 0–16 become uint8 by ``round(v · 255 / 16)``; nothing is upsampled.
    """
    from sklearn.datasets import load_digits  # scikit-learn is slow to import: only when this loader runs

    digits = load_digits()
    images = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = stratified_split(labels, 0.2, seed=0)
    return _bundle(
        "digits",
        (images[train_idx], labels[train_idx]),
        (images[test_idx], labels[test_idx]),
        [str(i) for i in range(10)],
        augment="none",
        source="sklearn.datasets.load_digits",
    )


# ---------------------------------------------------------------------------------------------- MNIST family


def _load_mnist_family(name: str, tv_class_name: str, root: Path, download: bool, extra_dirs: list[Path],
                       how: str) -> DatasetBundle:
    """MNIST-format datasets, from the first place that has them: torchvision's ``root/<Class>/raw``
    layout, then plain IDX directories (gzipped or not, e.g. Debian's package), then a download."""
    from torchvision import datasets

    tv_class = getattr(datasets, tv_class_name)
    raw = root / tv_class_name / "raw"
    stems = [s for split in ("train", "test") for s in _IDX_FILES[split]]
    tried: list[Path] = [raw]

    def through_torchvision(fetch: bool) -> DatasetBundle:
        try:
            train = tv_class(str(root), train=True, download=fetch)
            test = tv_class(str(root), train=False, download=fetch)
        except Exception as err:  # torchvision raises RuntimeError, AssertionError, URLError, ... here
            cause = f"torchvision's {tv_class_name} failed: {type(err).__name__}: {err}"
            raise not_found_error(name, stems, tried, how, cause) from err
        return _bundle(name, (train.data.unsqueeze(1), train.targets), (test.data.unsqueeze(1), test.targets),
                       list(train.classes), augment="none", source=str(raw))

    if not _missing(raw, stems):
        return through_torchvision(fetch=False)
    # IDX files that were never arranged in torchvision's layout: a copy in data_dir, or the Debian package
    for directory in [raw, root / tv_class_name, root / name, root, *extra_dirs]:
        if directory not in tried:
            tried.append(directory)
        try:
            splits = _load_idx_dir(directory)
        except (OSError, ValueError) as err:
            raise not_found_error(name, stems, tried, how, f"{err}") from err
        if splits is not None:
            return _bundle(name, splits[0], splits[1], list(tv_class.classes), augment="none",
                           source=str(directory))
    if download:
        return through_torchvision(fetch=True)
    partial = _missing(raw, stems) if raw.is_dir() else []
    cause = f"{raw} lacks {', '.join(partial)}" if partial else ""
    raise not_found_error(name, [f"{s}[.gz]" for s in stems], tried, how, cause)


@DATASETS.register("mnist", description="MNIST handwritten digits, 28×28 grayscale, 60k train / 10k test, 10 classes")
def _load_mnist(root: Path, download: bool = False) -> DatasetBundle:
    how = _DOWNLOAD_HINT.format(root=root) + f", or place the four IDX files in {root / 'MNIST' / 'raw'}"
    return _load_mnist_family("mnist", "MNIST", root, download, [], how)


@DATASETS.register("fashion_mnist", description="Fashion-MNIST clothing images, 28×28 grayscale, 60k train / 10k "
                   "test, 10 classes")
def _load_fashion_mnist(root: Path, download: bool = False) -> DatasetBundle:
    how = (_DOWNLOAD_HINT.format(root=root) + f", or `apt install dataset-fashion-mnist` (IDX files in "
           f"{DEBIAN_FASHION_MNIST_DIR}), or place the four IDX files in {root / 'FashionMNIST' / 'raw'}")
    return _load_mnist_family("fashion_mnist", "FashionMNIST", root, download, [DEBIAN_FASHION_MNIST_DIR], how)


# ---------------------------------------------------------------------------------------------- CIFAR


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR python batches: dicts, lists, strings, bytes and numpy arrays, nothing else,
    so a crafted file cannot run code when featspace reads its coarse labels."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def safe_unpickle(path: Path) -> dict:
    """A CIFAR-style python pickle (a dict of numpy arrays and lists), refusing anything that could run code."""
    with open(path, "rb") as f:
        obj = _NumpyOnlyUnpickler(io.BufferedReader(f), encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")
    return obj


def _load_cifar(name: str, tv_class_name: str, root: Path, download: bool, coarse: bool = False) -> DatasetBundle:
    from torchvision import datasets

    tv_class = getattr(datasets, tv_class_name)
    folder = root / tv_class.base_folder
    files = [f for f, _ in tv_class.train_list + tv_class.test_list] + [tv_class.meta["filename"]]
    how = (_DOWNLOAD_HINT.format(root=root) + f", or extract {tv_class.filename} "
           f"({tv_class.url}) into {root} so that {folder} holds {', '.join(files)}")
    missing = _missing(folder, files)
    if missing and not download:
        raise not_found_error(name, files, [folder], how, f"missing {', '.join(missing)}")
    try:
        train = tv_class(str(root), train=True, download=download)
        test = tv_class(str(root), train=False, download=download)
    except Exception as err:  # torchvision: RuntimeError on a failed checksum, URLError offline, ...
        cause = f"torchvision's {tv_class_name} failed: {type(err).__name__}: {err}"
        if not missing:
            cause += " (the files exist, so at least one is corrupt or not the official release)"
        raise not_found_error(name, files, [folder], how, cause) from err

    def as_tensors(ds: object) -> tuple[Tensor, Tensor]:
        images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2)  # HWC -> CHW
        return images, torch.as_tensor(ds.targets, dtype=torch.int64)

    train_t, test_t = as_tensors(train), as_tensors(test)
    class_names = list(train.classes)
    if coarse:
        # torchvision verified these files' checksums above; the unpickler is still restricted
        try:
            train_t = (train_t[0], _coarse_labels([folder / f for f, _ in tv_class.train_list]))
            test_t = (test_t[0], _coarse_labels([folder / f for f, _ in tv_class.test_list]))
            class_names = [str(n) for n in safe_unpickle(folder / tv_class.meta["filename"])["coarse_label_names"]]
        except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as err:
            raise not_found_error(name, files, [folder], how, f"cannot read the coarse labels: {err}") from err
    augment = "crop_flip"
    return _bundle(name, train_t, test_t, class_names, augment=augment, source=str(folder))


def _coarse_labels(paths: list[Path]) -> Tensor:
    labels: list[int] = []
    for path in paths:
        labels.extend(int(v) for v in safe_unpickle(path)["coarse_labels"])
    return torch.tensor(labels, dtype=torch.int64)


@DATASETS.register("cifar10", description="CIFAR-10 natural images, 32×32 RGB, 50k train / 10k test, 10 classes")
def _load_cifar10(root: Path, download: bool = False) -> DatasetBundle:
    return _load_cifar("cifar10", "CIFAR10", root, download)


@DATASETS.register("cifar100", description="CIFAR-100 natural images, 32×32 RGB, 50k train / 10k test, "
                   "100 fine classes")
def _load_cifar100(root: Path, download: bool = False) -> DatasetBundle:
    return _load_cifar("cifar100", "CIFAR100", root, download)


@DATASETS.register("cifar100_coarse", description="CIFAR-100 with its 20 coarse superclass labels, 32×32 RGB, "
                   "50k train / 10k test")
def _load_cifar100_coarse(root: Path, download: bool = False) -> DatasetBundle:
    return _load_cifar("cifar100_coarse", "CIFAR100", root, download, coarse=True)


# ---------------------------------------------------------------------------------------------- SVHN


@DATASETS.register("svhn", description="SVHN street-view house numbers, 32×32 RGB, 73k train / 26k test, "
                   "10 classes (no extra set)")
def _load_svhn(root: Path, download: bool = False) -> DatasetBundle:
    from torchvision import datasets

    files = [datasets.SVHN.split_list[s][1] for s in ("train", "test")]
    # torchvision keeps SVHN's .mat files directly in its root; a root/svhn subfolder is accepted too
    candidates = [root, root / "svhn", root / "SVHN"]
    folder = next((d for d in candidates if not _missing(d, files)), None)
    how = (_DOWNLOAD_HINT.format(root=root) + f", or put {' and '.join(files)} from "
           "http://ufldl.stanford.edu/housenumbers/ in " + str(root))
    if folder is None and not download:
        missing = _missing(root, files)
        raise not_found_error("svhn", files, candidates, how, f"missing {', '.join(missing)}")
    folder = folder or root
    try:
        train = datasets.SVHN(str(folder), split="train", download=download)
        test = datasets.SVHN(str(folder), split="test", download=download)
    except Exception as err:  # torchvision: RuntimeError on a failed checksum, scipy errors on a bad .mat, ...
        cause = f"torchvision's SVHN failed: {type(err).__name__}: {err}"
        raise not_found_error("svhn", files, [folder], how, cause) from err

    def as_tensors(ds: object) -> tuple[Tensor, Tensor]:
        return torch.from_numpy(np.ascontiguousarray(ds.data)), torch.from_numpy(np.asarray(ds.labels, np.int64))

    # digits are not mirror-symmetric, so SVHN's standard augmentation crops but never flips
    return _bundle("svhn", as_tensors(train), as_tensors(test), [str(i) for i in range(10)], augment="crop",
                   source=str(folder))
