"""Class-disjoint few-shot splits: base (training), validation and novel (test) classes, held in memory.

The direct-sum paper (003_3b01b74d9ee629e7.txt, Sec. 3.1 and Table 2) evaluates on four benchmarks whose
training / validation / test sets are disjoint in classes: mini-ImageNet (64/16/20), tiered-ImageNet
(351/97/160), CUB-200 (100/50/50, the split of Chen et al., "A Closer Look at Few-shot Classification") and
CIFAR-FS (64/16/20, Bertinetto et al.). ``load_split(name)`` reads one of them from its usual on-disk form into
a :class:`FewShotSplit`; ``FewShotSplit.to_bundle()`` turns its base classes into a
``featspace.data.DatasetBundle`` so the ordinary training path trains any head on them; importing this module
registers each split's base classes as the dataset ``fewshot_<split>`` of ``featspace.data.load``. Two
CPU-sized splits of data present on any featspace install run the whole protocol on two cores: ``fashion``
and ``digits``.

On-disk forms accepted (``data_dir``; default ``$FEATSPACE_DATA_DIR`` or ``./data``, then the sub-folders named)

- ``mini_imagenet`` (``data_dir`` or ``data_dir/{mini-imagenet, mini_imagenet, miniImageNet, miniimagenet}``):
  the Ravi & Larochelle split files ``train.csv``, ``val.csv``, ``test.csv`` (header, then ``filename,label``
  rows, label a WordNet id) and the images in ``images/<filename>`` (or ``images/<label>/<filename>``).
  Classes are numbered in order of first appearance in each file.
- ``tiered_imagenet`` (``data_dir`` or ``data_dir/{tiered-imagenet, tiered_imagenet, tieredImageNet}``): image
  folders ``train/<class>/*``, ``val/<class>/*``, ``test/<class>/*`` (the form the LaplacianShot and many other
  repositories unpack it to); classes sorted by folder name. Not the ``.pkl``/``.npz`` caches some code uses.
- ``cub`` (``data_dir`` or ``data_dir/CUB_200_2011``): the official ``CUB_200_2011`` folder with ``images.txt``,
  ``image_class_labels.txt``, ``classes.txt`` and ``images/``. The split is Chen et al.'s
  ``write_CUB_filelist.py``: the 200 class folders sorted by name (``001.Black_footed_Albatross`` …), class
  index i (0-based) goes to base if i % 2 == 0, to validation if i % 4 == 1, to novel if i % 4 == 3 — 100/50/50.
  Whole images are resized (no bounding-box crop), as Chen et al. do.
- ``cifar_fs`` (``data_dir`` or ``data_dir/{CIFAR-FS, cifar-fs, cifar_fs, CIFAR_FS}``): the split files
  ``train.txt``, ``val.txt``, ``test.txt`` (one CIFAR-100 fine class name per line; looked for in the folder,
  in ``splits/bertinetto/`` and in ``splits/``), and either the folder form ``data/<class>/*.png`` of
  Bertinetto et al.'s release or the CIFAR-100 python pickles (``cifar-100-python/{train,test,meta}``), of
  which both train and test images are used (600 per class, as in CIFAR-FS).

CPU-sized splits (no download beyond what ``featspace.data`` already finds)

- ``fashion``: Fashion-MNIST classes 0–4 (T-shirt/top, Trouser, Pullover, Dress, Coat) are the base classes,
  5–9 (Sandal, Shirt, Sneaker, Bag, Ankle boot) the novel ones. Base training images: the official training
  images of classes 0–4 minus a stratified 10% held out as *validation*; base test images: the official test
  images of classes 0–4; novel: the official test images of classes 5–9 (1,000 per class). Ten classes leave no
  room for separate validation classes, so this validation set shares the base classes: it measures fit to the
  base classes, not transfer, and must not be read as the benchmarks' validation classes.
- ``digits``: scikit-learn's 8×8 digits, classes 0–4 base and 5–9 novel (about 180 images per class); of the
  base images a stratified 20% is the base test set and 10% of the rest the validation set (base classes too).

Memory: images are decoded once, resized to ``image_size`` (84 for mini/tiered/CUB, 32 for CIFAR-FS by the
usual convention) and held as uint8, ``N · 3 · s²`` bytes: mini-ImageNet (60,000 images) 1.3 GB at 84 px,
CUB (11,788) 0.25 GB, CIFAR-FS (60,000) 0.18 GB, tiered-ImageNet (779,165) 16.5 GB. Before decoding, the
loader checks this figure against ``max_bytes`` (default 8 GiB) and stops with a clear error — so
tiered-ImageNet at 84 px needs ``max_bytes`` raised on a machine with the memory (or a smaller image_size).
Decoding uses a thread pool (PIL releases the GIL); mini-ImageNet takes minutes on two cores.

The last split loaded is cached in the process (``load_split`` with the same arguments returns the same
object), so evaluating a run does not decode the images twice; treat its tensors as read-only.
"""

from __future__ import annotations

import csv
import functools
import os
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from featspace.data.datasets import (
    DATASETS,
    DatasetBundle,
    DatasetNotFoundError,
    channel_stats,
    default_data_dir,
    load,
    not_found_error,
    safe_unpickle,
)
from featspace.data.images import IMAGE_SUFFIXES
from featspace.data.split import stratified_split
from featspace.registry import Registry

__all__ = [
    "DATASET_PREFIX",
    "SPLITS",
    "ClassSet",
    "FewShotSplit",
    "SplitTooLargeError",
    "cub_split_of_class",
    "describe",
    "load_bundle",
    "load_split",
    "names",
    "split_for_dataset",
]

#: the ``featspace.data`` dataset name of a split's base classes is DATASET_PREFIX + split name
DATASET_PREFIX = "fewshot_"
DEFAULT_MAX_BYTES = 8 * 2**30
T = TypeVar("T", bound=Callable[..., Any])


class SplitTooLargeError(MemoryError, ValueError):
    """The images of a split would take more memory than ``max_bytes`` allows (a ValueError too, so the
    command line reports it in one line)."""


@dataclass
class ClassSet:
    """Images of one group of classes: ``images`` uint8 [N, C, H, W], ``labels`` int64 [N] in
    0..len(class_names)−1, and the ``class_names``."""

    images: Tensor
    labels: Tensor
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.numel())

    def __repr__(self) -> str:
        return f"ClassSet({len(self)} images, {self.num_classes} classes, {tuple(self.images.shape[1:])})"


@dataclass
class FewShotSplit:
    """A class-disjoint few-shot split held in memory.

    ``train``: base-class training images, labels 0..C_base−1; ``base_test``: held-out images of the same base
    classes and labels (the ordinary test set of the training path); ``val`` and ``test``: validation and novel
    classes, each labelled from 0 with its own class names. ``mean`` / ``std``: per-channel statistics of
    ``train`` on the [0, 1] scale (as ``DatasetBundle``); ``augment``: the training augmentation policy.
    """

    name: str
    train: ClassSet
    base_test: ClassSet
    val: ClassSet
    test: ClassSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"
    source: str = ""

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    @property
    def dataset_name(self) -> str:
        """The ``featspace.data`` name of this split's base classes (``fewshot_<name>``)."""
        return DATASET_PREFIX + self.name

    def to_bundle(self) -> DatasetBundle:
        """The base classes as a ``DatasetBundle``: train = ``train``, test = ``base_test`` (same classes, so the
        ordinary test accuracy of a run still means something). The tensors are shared, not copied."""
        return DatasetBundle(name=self.dataset_name, train_images=self.train.images, train_labels=self.train.labels,
                             test_images=self.base_test.images, test_labels=self.base_test.labels,
                             num_classes=self.train.num_classes, class_names=list(self.train.class_names),
                             mean=self.mean, std=self.std, augment=self.augment, source=self.source)

    def __repr__(self) -> str:
        return (f"FewShotSplit({self.name!r}, base={self.train.num_classes} classes/{len(self.train)} images, "
                f"val={self.val.num_classes}/{len(self.val)}, novel={self.test.num_classes}/{len(self.test)}, "
                f"image={self.in_channels}×{self.image_size[0]}×{self.image_size[1]})")


# ---------------------------------------------------------------------------------------------- registry
#: every split by name, written with ``-`` or ``_`` in any case; each entry's extras: ``folders`` (sub-folders
#: of data_dir searched) and ``image_size`` (the default side)
SPLITS = Registry("few-shot split", normalize=lambda name: name.replace("-", "_").lower())
_CACHE: dict[tuple, FewShotSplit] = {}


def _register(name: str, description: str, folders: tuple[str, ...], image_size: int) -> Callable[[T], T]:
    return SPLITS.register(name, description=description, folders=folders, image_size=image_size)


def names() -> list[str]:
    """Names of the few-shot splits."""
    return SPLITS.names()


def describe(name: str) -> str:
    """One-line description of a split."""
    return SPLITS.describe(name)


def split_for_dataset(dataset: str) -> str | None:
    """The split behind a ``featspace.data`` dataset name (``fewshot_cub`` → ``cub``), or None."""
    if dataset.startswith(DATASET_PREFIX) and dataset[len(DATASET_PREFIX):] in SPLITS:
        return SPLITS.entry(dataset[len(DATASET_PREFIX):]).name
    return None


def load_split(name: str, *, data_dir: str | os.PathLike[str] | None = None, image_size: int | None = None,
               holdout_fraction: float | None = None, seed: int = 0,
               max_bytes: int = DEFAULT_MAX_BYTES) -> FewShotSplit:
    """Load few-shot split ``name`` (see :func:`names` and the module docstring for the on-disk forms).

    image_size: side of the square images in memory (default 84 for mini/tiered/CUB, 32 for CIFAR-FS, the
        native 28 / 8 for fashion / digits). holdout_fraction: the stratified share of base-class images held out
        as ``base_test`` (default 0.05; digits 0.2; fashion uses its official test images and ignores it).
    seed: fixes the hold-outs. max_bytes: refuse to decode more image bytes than this (see the module docstring).
    Raises ``featspace.data.DatasetNotFoundError`` when files are missing or unreadable.
    """
    entry = SPLITS.entry(name)
    size = entry.extras["image_size"] if image_size is None else image_size
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    fraction = holdout_fraction
    if fraction is not None and not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"holdout_fraction must lie in (0, 1), got {holdout_fraction!r}")
    key = (entry.name, str(data_dir), size, fraction, int(seed), int(max_bytes))
    if key in _CACHE:
        return _CACHE[key]
    split = entry.obj(data_dir=data_dir, folders=entry.extras["folders"], image_size=size,
                      holdout_fraction=fraction, seed=int(seed), max_bytes=int(max_bytes))
    _CACHE.clear()  # one split at a time: mini-ImageNet alone is 1.3 GB
    _CACHE[key] = split
    return split


def load_bundle(name: str, *, data_dir: str | os.PathLike[str] | None = None, image_size: int | None = None,
                **kwargs: Any) -> DatasetBundle:
    """``load_split(name, ...).to_bundle()``; ``name`` may carry the ``fewshot_`` prefix. The entry point for
    ``featspace.data.load("fewshot_<split>")``."""
    split = split_for_dataset(name) or name
    return load_split(split, data_dir=data_dir, image_size=image_size, **kwargs).to_bundle()


# ---------------------------------------------------------------------------------------------- helpers
_not_found = functools.partial(not_found_error, kind="few-shot split")


def _roots(data_dir: str | os.PathLike[str] | None, folders: Sequence[str]) -> list[Path]:
    base = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return [base, *(base / f for f in folders)]


def _check_memory(name: str, count: int, channels: int, size: int, max_bytes: int) -> None:
    needed = count * channels * size * size
    if needed > max_bytes:
        raise SplitTooLargeError(
            f"{name}: {count:,} images at {channels}×{size}×{size} need {needed / 2**30:.1f} GiB in memory, more than "
            f"max_bytes = {max_bytes / 2**30:.1f} GiB; pass a larger max_bytes on a machine with the memory, "
            "or a smaller image_size")


def _decode(name: str, paths: Sequence[Path], size: int, max_bytes: int) -> Tensor:
    """Decode image files to RGB, resize each to size × size (bilinear, antialiased) → uint8 [N, 3, size, size]."""
    from PIL import Image

    _check_memory(name, len(paths), 3, size, max_bytes)
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)

    def decode_one(i: int) -> None:
        try:
            with Image.open(paths[i]) as image:
                rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                out[i] = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)
        except (OSError, ValueError) as err:
            raise DatasetNotFoundError(f"{name}: cannot read image {paths[i]}: {err}") from err

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(decode_one, range(len(paths))))
    return out


def _resize(images: Tensor, size: int) -> Tensor:
    """Resize uint8 [N, C, H, W] to size × size (bilinear, antialiased), in chunks."""
    if images.shape[2] == size and images.shape[3] == size:
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], 4096):
        block = images[start:start + 4096].float()
        resized = torch.nn.functional.interpolate(block, size=(size, size), mode="bilinear", antialias=True,
                                                  align_corners=False)
        out[start:start + 4096] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def _class_set(images: Tensor, labels: Sequence[int] | Tensor, class_names: Sequence[str]) -> ClassSet:
    return ClassSet(images.contiguous(), torch.as_tensor(labels, dtype=torch.int64).reshape(-1), list(class_names))


def _subset(images: Tensor, labels: Tensor, index: Tensor, class_names: Sequence[str]) -> ClassSet:
    return _class_set(images[index], labels[index], class_names)


def _assemble(name: str, base: ClassSet, val: ClassSet, test: ClassSet, *, holdout: float, seed: int,
              augment: str, source: str, base_test: ClassSet | None = None) -> FewShotSplit:
    """Hold ``holdout`` of the base images out as base_test (unless given) and compute the statistics."""
    if base_test is None:
        keep, held = stratified_split(base.labels, holdout, seed=seed)
        base_test = _subset(base.images, base.labels, held, base.class_names)
        base = _subset(base.images, base.labels, keep, base.class_names)
    if len(base) == 0 or len(test) == 0:
        raise DatasetNotFoundError(f"{name}: the base or the novel classes hold no images (from {source})")
    for part, group in (("base", base), ("validation", val), ("novel", test)):
        if len(group) and group.labels.unique().numel() != group.num_classes:
            missing = sorted(set(range(group.num_classes)) - set(group.labels.unique().tolist()))
            raise DatasetNotFoundError(f"{name}: {part} class(es) {[group.class_names[i] for i in missing][:5]} "
                                       f"have no images (from {source})")
    mean, std = channel_stats(base.images)
    return FewShotSplit(name=name, train=base, base_test=base_test, val=val, test=test, mean=mean, std=std,
                        augment=augment, source=source)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _first_with(roots: Sequence[Path], required: Sequence[str]) -> Path | None:
    return next((r for r in roots if all((r / f).exists() for f in required)), None)


# ---------------------------------------------------------------------------------------------- mini-ImageNet
@_register("mini_imagenet", "mini-ImageNet, Ravi & Larochelle split CSVs + images/, 64/16/20 classes, 84 px",
           ("mini-imagenet", "mini_imagenet", "miniImageNet", "miniimagenet"), 84)
def _load_mini_imagenet(*, data_dir: Any, folders: Sequence[str], image_size: int, holdout_fraction: float | None,
                        seed: int, max_bytes: int) -> FewShotSplit:
    roots = _roots(data_dir, folders)
    files = ["train.csv", "val.csv", "test.csv", "images"]
    how = ("place the Ravi & Larochelle split files train.csv, val.csv, test.csv and the images/ folder of "
           "mini-ImageNet in DATA_DIR/mini-imagenet (or pass data_dir)")
    root = _first_with(roots, files)
    if root is None:
        raise _not_found("mini_imagenet", ", ".join(files), roots, how)
    parts: dict[str, tuple[list[Path], list[int], list[str]]] = {}
    for part in ("train", "val", "test"):
        paths, labels, classes = [], [], {}
        with open(root / f"{part}.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows or [c.strip() for c in rows[0][:2]] != ["filename", "label"]:
            raise _not_found("mini_imagenet", f"{part}.csv with a 'filename,label' header", [root], how,
                             f"{root / f'{part}.csv'} does not start with filename,label")
        for row in rows[1:]:
            if len(row) < 2:
                continue
            filename, label = row[0].strip(), row[1].strip()
            path = root / "images" / filename
            if not path.is_file():
                path = root / "images" / label / filename
            if not path.is_file():
                raise _not_found("mini_imagenet", f"images/{filename}", [root / "images"], how,
                                 f"{part}.csv names {filename}, which is not in images/ nor images/{label}/")
            paths.append(path)
            labels.append(classes.setdefault(label, len(classes)))
        parts[part] = (paths, labels, list(classes))
    return _from_files("mini_imagenet", parts, image_size, holdout_fraction, seed, max_bytes, str(root))


def _from_files(name: str, parts: dict[str, tuple[list[Path], list[int], list[str]]], image_size: int,
                holdout: float | None, seed: int, max_bytes: int, source: str) -> FewShotSplit:
    _check_memory(name, sum(len(p[0]) for p in parts.values()), 3, image_size, max_bytes)
    sets = {part: _class_set(_decode(name, paths, image_size, max_bytes), labels, classes)
            for part, (paths, labels, classes) in parts.items()}
    return _assemble(name, sets["train"], sets["val"], sets["test"], holdout=0.05 if holdout is None else holdout,
                     seed=seed, augment="crop_flip", source=source)


# ---------------------------------------------------------------------------------------------- tiered-ImageNet
@_register("tiered_imagenet", "tiered-ImageNet as train/ val/ test/ class folders, 351/97/160 classes, 84 px",
           ("tiered-imagenet", "tiered_imagenet", "tieredImageNet", "tieredimagenet"), 84)
def _load_tiered_imagenet(*, data_dir: Any, folders: Sequence[str], image_size: int,
                          holdout_fraction: float | None, seed: int, max_bytes: int) -> FewShotSplit:
    roots = _roots(data_dir, folders)
    how = "unpack tiered-ImageNet as DATA_DIR/tiered-imagenet/{train,val,test}/<class>/<images> (or pass data_dir)"
    root = _first_with(roots, ["train", "val", "test"])
    if root is None:
        raise _not_found("tiered_imagenet", "train/<class>/*, val/<class>/*, test/<class>/*", roots, how)
    return _from_files("tiered_imagenet", _folder_parts(root, how, "tiered_imagenet"), image_size, holdout_fraction,
                       seed, max_bytes, str(root))


_FileParts = dict[str, tuple[list[Path], list[int], list[str]]]


def _folder_parts(root: Path, how: str, name: str) -> _FileParts:
    out = {}
    for part in ("train", "val", "test"):
        classes = sorted(d.name for d in (root / part).iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise _not_found(name, f"{part}/<class>/<images>", [root / part], how,
                             f"{root / part} has no class folders")
        paths, labels = [], []
        for index, cls in enumerate(classes):
            files = _images_in(root / part / cls)
            paths.extend(files)
            labels.extend([index] * len(files))
        out[part] = (paths, labels, classes)
    return out


# ---------------------------------------------------------------------------------------------- CUB-200
def cub_split_of_class(index: int) -> str:
    """Chen et al.'s CUB split of the class at 0-based position ``index`` among the 200 sorted class folders:
    ``"train"`` (i % 2 == 0), ``"val"`` (i % 4 == 1) or ``"test"`` (i % 4 == 3)."""
    return "train" if index % 2 == 0 else "val" if index % 4 == 1 else "test"


@_register("cub", "CUB-200-2011 with Chen et al.'s 100/50/50 class split, 84 px", ("CUB_200_2011",), 84)
def _load_cub(*, data_dir: Any, folders: Sequence[str], image_size: int, holdout_fraction: float | None,
              seed: int, max_bytes: int) -> FewShotSplit:
    roots = _roots(data_dir, folders)
    files = ["images.txt", "image_class_labels.txt", "classes.txt", "images"]
    how = "extract CUB_200_2011.tgz into DATA_DIR so that DATA_DIR/CUB_200_2011 holds " + ", ".join(files)
    root = _first_with(roots, files)
    if root is None:
        raise _not_found("cub", ", ".join(files), roots, how)
    try:
        class_names = dict(_id_table(root / "classes.txt"))
        image_paths = dict(_id_table(root / "images.txt"))
        image_classes = dict(_id_table(root / "image_class_labels.txt"))
    except ValueError as err:
        raise _not_found("cub", ", ".join(files), [root], how, str(err)) from err
    order = sorted(class_names.values())  # Chen et al. sort the class folders by name
    position = {cls_id: order.index(cls_name) for cls_id, cls_name in class_names.items()}
    parts: dict[str, tuple[list[Path], list[int], list[str]]] = {}
    for part in ("train", "val", "test"):
        members = [i for i in range(len(order)) if cub_split_of_class(i) == part]
        local = {i: n for n, i in enumerate(members)}
        paths, labels = [], []
        for image_id, relative in image_paths.items():
            if image_id not in image_classes or image_classes[image_id] not in position:
                raise _not_found("cub", ", ".join(files), [root], how, f"image {image_id} has no known class")
            index = position[image_classes[image_id]]
            if index in local:
                paths.append(root / "images" / relative)
                labels.append(local[index])
        parts[part] = (paths, labels, [order[i] for i in members])
    return _from_files("cub", parts, image_size, holdout_fraction, seed, max_bytes, str(root))


def _id_table(path: Path) -> list[tuple[str, str]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                fields = line.split(maxsplit=1)
                if len(fields) != 2:
                    raise ValueError(f"{path}:{number}: expected '<id> <value>', got {line.strip()!r}")
                rows.append((fields[0], fields[1].strip()))
    return rows


# ---------------------------------------------------------------------------------------------- CIFAR-FS
@_register("cifar_fs", "CIFAR-FS (Bertinetto et al.): CIFAR-100 in 64/16/20 classes, 32 px",
           ("CIFAR-FS", "cifar-fs", "cifar_fs", "CIFAR_FS", "cifar100", "CIFAR100"), 32)
def _load_cifar_fs(*, data_dir: Any, folders: Sequence[str], image_size: int, holdout_fraction: float | None,
                   seed: int, max_bytes: int) -> FewShotSplit:
    roots = _roots(data_dir, folders)
    split_files = ["train.txt", "val.txt", "test.txt"]
    how = ("put Bertinetto et al.'s CIFAR-FS split files train.txt, val.txt, test.txt (class names) beside either "
           "its data/<class>/*.png folders or the CIFAR-100 python pickles (cifar-100-python/), in DATA_DIR/CIFAR-FS")
    split_dir = None
    for root in roots:
        split_dir = _first_with([root, root / "splits" / "bertinetto", root / "splits"], split_files)
        if split_dir is not None:
            break
    if split_dir is None:
        raise _not_found("cifar_fs", ", ".join(split_files) + " (also under splits/bertinetto/)", roots, how)
    wanted = {part: [line.strip() for line in (split_dir / f"{part}.txt").read_text(encoding="utf-8").splitlines()
                     if line.strip()] for part in ("train", "val", "test")}
    source = str(root)
    pickle_dir = _first_with([root / "cifar-100-python", root], ["train", "test", "meta"])
    if (root / "data").is_dir():
        parts = {}
        for part, classes in wanted.items():
            paths, labels = [], []
            for index, cls in enumerate(classes):
                if not (root / "data" / cls).is_dir():
                    raise _not_found("cifar_fs", f"data/{cls}/", [root / "data"], how, f"no folder for class {cls!r}")
                files = _images_in(root / "data" / cls)
                paths.extend(files)
                labels.extend([index] * len(files))
            parts[part] = (paths, labels, classes)
        _check_memory("cifar_fs", sum(len(p[0]) for p in parts.values()), 3, image_size, max_bytes)
        sets = {part: _class_set(_decode("cifar_fs", paths, image_size, max_bytes), labels, classes)
                for part, (paths, labels, classes) in parts.items()}
    elif pickle_dir is not None:
        try:
            fine_names = [str(n) for n in safe_unpickle(pickle_dir / "meta")["fine_label_names"]]
            batches = [safe_unpickle(pickle_dir / f) for f in ("train", "test")]
            data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
            fine = np.concatenate([np.asarray(b["fine_labels"], dtype=np.int64) for b in batches])
        except (OSError, KeyError, ValueError, pickle.UnpicklingError, EOFError) as err:
            raise _not_found("cifar_fs", "cifar-100-python/{train,test,meta}", [pickle_dir], how, str(err)) from err
        images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
        _check_memory("cifar_fs", images.shape[0], 3, image_size, max_bytes)
        unknown = sorted({c for classes in wanted.values() for c in classes} - set(fine_names))
        if unknown:
            raise _not_found("cifar_fs", "split class names among CIFAR-100's fine labels", [split_dir], how,
                             f"unknown class name(s) {unknown[:5]}")
        index_of = {n: i for i, n in enumerate(fine_names)}
        sets = {}
        for part, classes in wanted.items():
            fine_ids = torch.tensor([index_of[c] for c in classes])
            member = torch.from_numpy(fine)[:, None] == fine_ids[None, :]  # [60000, classes of part]
            rows = member.any(1).nonzero().flatten()
            sets[part] = _class_set(_resize(images[rows], image_size), member[rows].float().argmax(1), classes)
        source = str(pickle_dir)
    else:
        raise _not_found("cifar_fs", "data/<class>/*.png or cifar-100-python/{train,test,meta}", [root], how)
    return _assemble("cifar_fs", sets["train"], sets["val"], sets["test"],
                     holdout=0.05 if holdout_fraction is None else holdout_fraction, seed=seed, augment="crop_flip",
                     source=source)


# ---------------------------------------------------------------------------------------------- CPU-sized
@_register("fashion", "Fashion-MNIST, classes 0–4 base / 5–9 novel (CPU-sized), 28 px", (), 28)
def _load_fashion(*, data_dir: Any, folders: Sequence[str], image_size: int, holdout_fraction: float | None,
                  seed: int, max_bytes: int) -> FewShotSplit:
    bundle = load("fashion_mnist", data_dir=data_dir)
    names_ = list(bundle.class_names)
    train_base = bundle.train_labels < 5
    images, labels = _resize(bundle.train_images[train_base], image_size), bundle.train_labels[train_base]
    keep, val_idx = stratified_split(labels, 0.1, seed=seed)
    test_base = bundle.test_labels < 5
    novel = bundle.test_labels >= 5
    return _assemble(
        "fashion",
        _subset(images, labels, keep, names_[:5]),
        _subset(images, labels, val_idx, names_[:5]),
        _class_set(_resize(bundle.test_images[novel], image_size), bundle.test_labels[novel] - 5, names_[5:]),
        base_test=_class_set(_resize(bundle.test_images[test_base], image_size), bundle.test_labels[test_base],
                             names_[:5]),
        holdout=0.0, seed=seed, augment="none", source=bundle.source)


@_register("digits", "scikit-learn's 8×8 digits, 0–4 base / 5–9 novel (CPU-sized, no download), 8 px", (), 8)
def _load_digits(*, data_dir: Any, folders: Sequence[str], image_size: int, holdout_fraction: float | None,
                 seed: int, max_bytes: int) -> FewShotSplit:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # the same uint8 conversion as featspace.data's "digits": round(v · 255 / 16)
    images = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    images = _resize(images, image_size)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    base = labels < 5
    base_images, base_labels = images[base], labels[base]
    rest, base_test = stratified_split(base_labels, 0.2 if holdout_fraction is None else holdout_fraction, seed=seed)
    keep_in_rest, val_in_rest = stratified_split(base_labels[rest], 0.1, seed=seed)
    names_ = [str(i) for i in range(10)]
    return _assemble(
        "digits",
        _subset(base_images, base_labels, rest[keep_in_rest], names_[:5]),
        _subset(base_images, base_labels, rest[val_in_rest], names_[:5]),
        _class_set(images[~base], labels[~base] - 5, names_[5:]),
        base_test=_subset(base_images, base_labels, base_test, names_[:5]),
        holdout=0.0, seed=seed, augment="none", source="sklearn.datasets.load_digits")


# ---------------------------------------------------------------------------------------------- as datasets
def _register_base_classes(split: str) -> None:
    """Register ``fewshot_<split>``, the base (training) classes of ``split``, in ``featspace.data``'s datasets,
    so the ordinary training path trains on them and ``featspace fewshot`` evaluates on the novel classes."""

    def load_base_classes(root: Path, download: bool = False, image_size: int | None = None) -> DatasetBundle:
        if download:
            raise ValueError(f"few-shot split {split!r} cannot be downloaded by featspace; see its description")
        # featspace.data.load hands every loader a root, its default ./data when the caller gave none, and it
        # has already refused an explicit data_dir that does not exist; so a missing root here is the default,
        # and passing it on as explicit would stop the split's own fallbacks (Debian's Fashion-MNIST)
        return load_bundle(split, data_dir=root if root.is_dir() else None, image_size=image_size)

    DATASETS.register(DATASET_PREFIX + split, description=f"few-shot base classes: {describe(split)}")(
        load_base_classes)


for _split in names():
    _register_base_classes(_split)
del _split
