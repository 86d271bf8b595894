"""Image folders streamed from disk: ``imagefolder``, ``tinyimagenet`` and ``imagenet`` as lists of files.

Loading one of these datasets reads no pixels: it lists the files of each split with their labels (a
:class:`FolderBundle`), checks every file's header (``featspace.data.images.check_image``: PIL identifies the
format and ``verify``s the structure without decoding) and leaves the decoding, resizing and augmentation to the
data loader's workers (``featspace.data.module.ImageFileDataset``). Memory does not grow with the number of images
beyond the list of paths, and start-up costs one header read per file.

Splits. ``train/`` is the training split. The test split is ``test/``; a tree without a labelled ``test/`` uses
``val/`` as its test split (as ImageNet's and Tiny ImageNet's validation sets serve as their test sets in the
papers, 002 Sec. 4). ``val/`` *beside* a ``test/`` is the validation split; otherwise the validation split is the
stratified ``val_fraction`` hold-out of ``train/`` (``featspace.data.DataModule``).

Corrupt files. A file that is not a readable image (or a file in a class folder without an image suffix) stops the
load with a one-line :class:`~featspace.data.images.CorruptImageError` naming it; with ``skip_corrupt`` such files
are left out, listed in :attr:`FolderBundle.skipped` (a run writes them to ``skipped_files.txt``) and counted in
the log. Hidden files (``.DS_Store``) are ignored. ``verify=False`` skips the header check (a slow network disk):
a bad file then stops training when a worker first reads it, naming it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from featspace.data.datasets import DATASETS, DatasetNotFoundError
from featspace.data.images import IMAGE_SUFFIXES, CorruptImageError, check_image

__all__ = ["FolderBundle", "ImageFiles", "scan_class_folders"]

log = logging.getLogger(__name__)

#: how to tell the user to skip bad files
_SKIP_HINT = "remove it, or set skip_corrupt: true (--set skip_corrupt=true) to skip such files"


@dataclass
class ImageFiles:
    """One split as files: ``paths`` (N strings) and their ``labels`` (int64 [N], ``0 .. num_classes-1``)."""

    paths: list[str]
    labels: Tensor

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class FolderBundle:
    """An image-folder dataset as lists of files, decoded by the data loader (module docstring).

    ``val`` is the validation split when the tree has one beside its test split, else None (a hold-out of train
    is used). ``augment`` is the dataset's standard policy (``augment: true``), ``image_size`` its default side
    (a config's ``image_size`` replaces it), ``crop_pct`` the share of the resized image its test view keeps
    (1: resize the shorter side to the side; 0.875: ImageNet's 256 → 224). ``skipped``: (path, reason) of the
    files left out with ``skip_corrupt``."""

    name: str
    train: ImageFiles
    test: ImageFiles
    class_names: list[str]
    val: ImageFiles | None = None
    augment: str = "crop_flip"
    image_size: int = 32
    crop_pct: float = 1.0
    source: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    in_channels = 3  # every image is converted to RGB

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_labels(self) -> Tensor:
        return self.train.labels

    def __repr__(self) -> str:
        val = f", val={len(self.val)}" if self.val is not None else ""
        return (f"FolderBundle({self.name!r}, train={len(self.train)}{val}, test={len(self.test)}, "
                f"classes={self.num_classes}, augment={self.augment!r}, skipped={len(self.skipped)})")


# ---------------------------------------------------------------------------------------------- scanning


def _visible_files(folder: Path) -> list[Path]:
    """Every file under ``folder`` (recursively, following links as torchvision's ImageFolder does), sorted,
    without hidden files and folders."""
    found = []
    for directory, subdirs, files in os.walk(folder, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory) / f for f in files if not f.startswith("."))
    return sorted(found)


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def scan_class_folders(split_dir: Path, class_to_idx: dict[str, int], *, inner: str = "",
                       ) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """(path, label) of the image files in ``split_dir/<class>/[inner/]`` for the classes of ``class_to_idx``,
    and (path, reason) of the files there without an image suffix. Class folders not in ``class_to_idx`` are
    the caller's to refuse."""
    samples: list[tuple[str, int]] = []
    bad: list[tuple[str, str]] = []
    for name in sorted(class_to_idx):
        folder = split_dir / name / inner if inner else split_dir / name
        if not folder.is_dir():
            continue
        for path in _visible_files(folder):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append((str(path), class_to_idx[name]))
            else:
                bad.append((str(path), f"not an image file (suffix {path.suffix or 'none'!r})"))
    return samples, bad


def _verify(samples: Sequence[tuple[str, int]], verify: bool) -> list[tuple[str, str]]:
    """(path, reason) of the samples whose header PIL cannot read; threads, as the work is file reads."""
    if not verify or not samples:
        return []
    from tqdm.auto import tqdm

    paths = [p for p, _ in samples]
    with ThreadPoolExecutor(max_workers=min(16, 2 * (os.cpu_count() or 1))) as pool:
        reasons = list(tqdm(pool.map(check_image, paths, chunksize=256), total=len(paths), unit="file",
                            desc="checking image headers", disable=len(paths) < 5000, leave=False))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def _keep(name: str, samples: list[tuple[str, int]], bad: list[tuple[str, str]], *, skip_corrupt: bool,
          verify: bool, skipped: list[tuple[str, str]]) -> ImageFiles:
    """The readable samples as :class:`ImageFiles`; a bad file is a one-line error unless ``skip_corrupt``, when
    it joins ``skipped``."""
    bad = sorted(bad + _verify(samples, verify))
    if bad and not skip_corrupt:
        path, reason = bad[0]
        more = f" ({len(bad) - 1} more such files)" if len(bad) > 1 else ""
        raise CorruptImageError(f"{path}: {reason}{more}; {_SKIP_HINT}")
    dropped = {p for p, _ in bad}
    skipped.extend(bad)
    kept = [(p, y) for p, y in samples if p not in dropped]
    return ImageFiles([p for p, _ in kept], torch.tensor([y for _, y in kept], dtype=torch.int64))


def _missing_folder(name: str, root: Path, what: str, layout: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(f"{name}: {root} has no {what}; arrange the images as {layout}")


def _first_classes(name: str, available: list[str], classes: int | None, where: Path) -> list[str]:
    """The first ``classes`` of the sorted ``available`` class folders (ImageNet(N) of 002 Tables 3 and 6)."""
    if classes is None:
        return available
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"{name}: dataset_params.classes must be an int >= 2, got {classes!r}")
    if classes > len(available):
        raise ValueError(f"{name}: dataset_params.classes = {classes} but {where} holds only {len(available)} "
                         "class folders")
    return available[:classes]


def _finish(name: str, splits: dict[str, ImageFiles], class_names: list[str], skipped: list[tuple[str, str]], *,
            augment: str, image_size: int, crop_pct: float, source: str) -> FolderBundle:
    for split, files in splits.items():
        if len(files) == 0 and (split == "train" or split == "test"):
            raise DatasetNotFoundError(f"{name}: the {split} split of {source} holds no readable images")
    if skipped:
        log.info("%s: skipped %d unreadable or non-image files (skip_corrupt)", name, len(skipped))
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0.0 < float(crop_pct) <= 1.0:
        raise ValueError(f"{name}: dataset_params.crop_pct must lie in (0, 1], got {crop_pct!r}")
    return FolderBundle(name, splits["train"], splits["test"], class_names, val=splits.get("val"), augment=augment,
                        image_size=image_size, crop_pct=float(crop_pct), source=source, skipped=skipped)


def _scan_split(name: str, split_dir: Path, train_dir: Path, class_to_idx: dict[str, int], *, inner: str = "",
                limit_to_known: bool = False) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    present = _class_dirs(split_dir)
    unknown = [c for c in present if c not in class_to_idx]
    if unknown and not limit_to_known:
        raise DatasetNotFoundError(f"{name}: {split_dir} has classes not in {train_dir}: {', '.join(unknown[:10])}"
                                   f"{' ...' if len(unknown) > 10 else ''}")
    return scan_class_folders(split_dir, class_to_idx, inner=inner)


def _class_folder_splits(name: str, root: Path, *, classes: int | None, skip_corrupt: bool, verify: bool,
                         layout: str) -> tuple[dict[str, ImageFiles], list[str], list[tuple[str, str]]]:
    """train/ + test/ and/or val/ class folders (module docstring's split rule)."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise _missing_folder(name, root, "train/ folder", layout)
    has_test, has_val = (root / "test").is_dir(), (root / "val").is_dir()
    if not has_test and not has_val:
        raise _missing_folder(name, root, "test/ or val/ folder", layout)
    available = _class_dirs(train_dir)
    if not available:
        raise _missing_folder(name, train_dir, "class folders", layout)
    class_names = _first_classes(name, available, classes, train_dir)
    class_to_idx = {c: i for i, c in enumerate(class_names)}
    roles = {"train": train_dir, "test": root / "test" if has_test else root / "val"}
    if has_test and has_val:
        roles["val"] = root / "val"
    skipped: list[tuple[str, str]] = []
    splits = {}
    for role, directory in roles.items():
        if role == "train":
            samples, bad = scan_class_folders(directory, class_to_idx)
        else:  # with classes: N, the other classes' folders are simply not read
            samples, bad = _scan_split(name, directory, train_dir, class_to_idx, limit_to_known=classes is not None)
        splits[role] = _keep(name, samples, bad, skip_corrupt=skip_corrupt, verify=verify, skipped=skipped)
    return splits, class_names, skipped


# ---------------------------------------------------------------------------------------------- loaders


_FOLDER_LAYOUT = "DATA_DIR/train/<class>/<image> and DATA_DIR/test/<class>/<image> (and/or val/<class>/<image>)"


@DATASETS.register("imagefolder", description="any train/ + test/ (and/or val/) tree of class folders of images, "
                   "streamed from disk (32 px by default)",
                   needs_data_dir="a directory with train/ and test/ (and/or val/) subfolders")
def _load_imagefolder(root: Path, image_size: int = 32, skip_corrupt: bool = False, verify: bool = True,
                      crop_pct: float = 1.0, classes: int | None = None) -> FolderBundle:
    """``root/train/<class>/*`` with ``test/<class>/*`` and/or ``val/<class>/*`` (module docstring), classes in
    sorted order of the training folders. Images are decoded by the loader's workers, converted to RGB and
    resized keeping their aspect ratio (shorter side to ``image_size / crop_pct``, centre crop). Standard
    augmentation: ``crop_flip``. A test or validation folder may lack some classes; a class absent from train/
    is an error."""
    splits, class_names, skipped = _class_folder_splits("imagefolder", root, classes=classes,
                                                        skip_corrupt=skip_corrupt, verify=verify,
                                                        layout=_FOLDER_LAYOUT)
    return _finish("imagefolder", splits, class_names, skipped, augment="crop_flip", image_size=image_size,
                   crop_pct=crop_pct, source=str(root))


_IMAGENET_LAYOUT = "DATA_DIR/train/<wnid>/<image>.JPEG and DATA_DIR/val/<wnid>/<image>.JPEG"


def _synset_words(root: Path, wnids: Iterable[str]) -> list[str]:
    """Readable class names from ``words.txt`` (``wnid<TAB>names``) or Kaggle's ``LOC_synset_mapping.txt``
    (``wnid names``) when the tree has one: the first synonym, with the wnid added where two classes would share
    a name (ImageNet has two "crane"s); else the wnids themselves."""
    wnids = list(wnids)
    words: dict[str, str] = {}
    for file, sep in (("words.txt", "\t"), ("LOC_synset_mapping.txt", " ")):
        if (root / file).is_file():
            for line in (root / file).read_text(encoding="utf-8", errors="replace").splitlines():
                wnid, _, text = line.partition(sep)
                if text.strip():
                    words[wnid.strip()] = text.split(",")[0].strip()
            break
    names = [words.get(w, w) for w in wnids]
    counts = {n: names.count(n) for n in names}
    return [f"{n} ({w})" if counts[n] > 1 and n != w else n for n, w in zip(names, wnids)]


@DATASETS.register("imagenet", description="ImageNet in its train/<wnid>/ + val/<wnid>/ folder layout, streamed "
                   "from disk at 224 px; dataset_params.classes: N takes the first N classes (ImageNet(N))",
                   needs_data_dir="the directory with ImageNet's train/ and val/ class folders")
def _load_imagenet(root: Path, image_size: int = 224, skip_corrupt: bool = False, verify: bool = True,
                   crop_pct: float = 0.875, classes: int | None = None) -> FolderBundle:
    """ILSVRC-2012 as ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (the validation images sorted
    into class folders, as torchvision's and timm's ImageNet folders are); ``val/`` is the test split (002 Sec. 4:
    "51000 test images"), the validation split a hold-out of train. ``classes: N`` keeps the first N wnids in
    sorted order — the "ImageNet(N)" of 002 Tables 3 and 6. Standard augmentation ``imagenet``
    (RandomResizedCrop + flip; test: shorter side to 256, centre crop 224 = ``crop_pct`` 0.875)."""
    if not (root / "val").is_dir() and (root / "test").is_dir():
        raise _missing_folder("imagenet", root, "val/ folder (ImageNet's labelled test split)", _IMAGENET_LAYOUT)
    splits, wnids, skipped = _class_folder_splits("imagenet", root, classes=classes, skip_corrupt=skip_corrupt,
                                                  verify=verify, layout=_IMAGENET_LAYOUT)
    return _finish("imagenet", splits, _synset_words(root, wnids), skipped, augment="imagenet",
                   image_size=image_size, crop_pct=crop_pct, source=str(root))


_TINY_LAYOUT = ("Tiny ImageNet's release: DATA_DIR/wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
                "val/images/*.JPEG and val/val_annotations.txt")


@DATASETS.register("tinyimagenet", description="Tiny ImageNet (200 classes, 64 px, 100k train / 10k val) in its "
                   "release layout, streamed from disk; its val/ is the test split",
                   needs_data_dir="the tiny-imagenet-200 directory (wnids.txt, train/, val/)")
def _load_tinyimagenet(root: Path, image_size: int = 64, skip_corrupt: bool = False, verify: bool = True,
                       crop_pct: float = 1.0, classes: int | None = None) -> FolderBundle:
    """Tiny ImageNet as released (``tiny-imagenet-200.zip``): classes are the wnids of ``wnids.txt`` in sorted
    order, named from ``words.txt``; training images in ``train/<wnid>/images/``, the labelled validation images
    in ``val/images/`` with their wnids in ``val/val_annotations.txt`` (filename, wnid, box) — the test split, as
    002 Sec. 4 reports 10,000 test images; ``test/`` has no labels and is not read. Standard augmentation
    ``crop_flip`` at 64 px (002 Sec. 4)."""
    name = "tinyimagenet"
    for required in ("wnids.txt", "train", "val/images", "val/val_annotations.txt"):
        if not (root / required).exists():
            raise _missing_folder(name, root, required, _TINY_LAYOUT)
    listed = sorted({w.strip() for w in (root / "wnids.txt").read_text(encoding="utf-8").split() if w.strip()})
    wnids = _first_classes(name, listed, classes, root / "wnids.txt")
    class_to_idx = {w: i for i, w in enumerate(wnids)}
    missing = [w for w in wnids if not (root / "train" / w / "images").is_dir()]
    if missing:
        raise _missing_folder(name, root / "train", f"{missing[0]}/images/ folder for wnid {missing[0]} of "
                              f"wnids.txt ({len(missing)} missing)", _TINY_LAYOUT)
    skipped: list[tuple[str, str]] = []
    samples, bad = scan_class_folders(root / "train", class_to_idx, inner="images")
    train = _keep(name, samples, bad, skip_corrupt=skip_corrupt, verify=verify, skipped=skipped)
    val_samples: list[tuple[str, int]] = []
    annotations = root / "val" / "val_annotations.txt"
    for number, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2:
            raise DatasetNotFoundError(f"{name}: {annotations} line {number} is not 'filename<TAB>wnid...': "
                                       f"{line[:80]!r}")
        filename, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in class_to_idx:
            if wnid in listed:  # a class left out by classes: N
                continue
            raise DatasetNotFoundError(f"{name}: {annotations} line {number} names wnid {wnid!r}, not in wnids.txt")
        path = root / "val" / "images" / filename
        if not path.is_file():
            raise DatasetNotFoundError(f"{name}: {annotations} line {number} names {path}, which does not exist")
        val_samples.append((str(path), class_to_idx[wnid]))
    test = _keep(name, sorted(val_samples), [], skip_corrupt=skip_corrupt, verify=verify, skipped=skipped)
    return _finish(name, {"train": train, "test": test}, _synset_words(root, wnids), skipped, augment="crop_flip",
                   image_size=image_size, crop_pct=crop_pct, source=str(root))
