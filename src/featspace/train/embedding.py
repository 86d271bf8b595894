"""Embeddings of a trained run for images it was not evaluated on, or for one of its own splits, written as an
``.npz`` and as a TensorBoard projector (``featspace embed``).

    image files / folders ─► TrainedRun.read (decoded and resized as in training) ─► embed, head scores ─┐
    the run's train or test split (its dataset, via load_trained) ─► extract ──────────────────────────────┴─►
        Embedded(embeddings [N, d], scores [N, C], labels [N] (-1: unknown), paths [N], class names)
        ─► write_npz (atomic)  ─► write_projector (SummaryWriter.add_embedding: labels as metadata,
                                                   thumbnails as the sprite)

A folder of class folders named after the run's classes (``test/cat/1.png``, ``test/dog/2.png``) gives its
images' labels; any other image has label -1.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from featspace.data import find_images
from featspace.io import atomic_path, write_text
from featspace.train.evaluate import extract, image_batches
from featspace.train.inference import TrainedRun
from featspace.train.parts import load_trained

__all__ = ["SPLITS", "UNKNOWN", "Embedded", "embed_files", "embed_split", "folder_labels", "thumbnail_size",
           "write_npz", "write_projector"]

#: the label of an image whose class is not known
UNKNOWN = -1
#: the splits of a run's dataset ``embed_split`` reads (train: the training split less its validation hold-out)
SPLITS = ("train", "test")
#: TensorBoard's projector draws its sprite image up to this many pixels a side
_SPRITE_PIXELS = 8192


@dataclass
class Embedded:
    """Embeddings of N images: ``embeddings`` [N, d] and ``scores`` [N, C] (the head's, argmax = the predicted class)
    float32, ``labels`` [N] int64 (``UNKNOWN`` where not known), ``paths`` (the files, or ``dataset:split/index``
    for a split), ``class_names`` [C]; ``thumbnails`` uint8 [N, channels, s, s] when asked for; ``skipped``: the
    files that could not be read."""

    embeddings: Tensor
    scores: Tensor
    labels: Tensor
    paths: list[str]
    class_names: list[str]
    thumbnails: Tensor | None = None
    skipped: list[str] = field(default_factory=list)


def thumbnail_size(count: int, image_size: Sequence[int], *, largest: int = 64) -> int:
    """The side of the square thumbnails of ``count`` images in one projector sprite: the image's own size up to
    ``largest`` pixels, smaller when ⌈√count⌉ of them would not fit in the sprite's 8192 pixels."""
    per_row = max(1, math.ceil(math.sqrt(count)))
    return max(1, min(largest, max(int(s) for s in image_size), _SPRITE_PIXELS // per_row))


def _thumbnails(images: Tensor, side: int) -> Tensor:
    from torchvision.transforms import functional as TF

    return TF.resize(images, [side, side], antialias=True)


def folder_labels(inputs: Iterable[str | Path], class_names: Sequence[str]) -> tuple[list[Path], list[int]]:
    """The image files of ``inputs`` (as ``featspace.data.find_images`` finds them) and their labels: an input
    folder whose sub-folders are all named after classes of the run labels the images inside them; every other
    image is ``UNKNOWN``."""
    index = {name: i for i, name in enumerate(class_names)}
    paths: list[Path] = []
    labels: list[int] = []
    for item in inputs:
        found = find_images([item])
        folder = Path(item)
        subfolders = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        by_class = bool(subfolders) and all(name in index for name in subfolders)
        for path in found:
            parts = path.relative_to(folder).parts if by_class else ()
            labels.append(index[parts[0]] if len(parts) > 1 else UNKNOWN)
            paths.append(path)
    return paths, labels


def embed_files(model: TrainedRun, inputs: Iterable[str | Path], *, batch_size: int = 256,
                thumbnails: bool = False, progress: bool = True) -> Embedded:
    """Embeddings and scores of the image files and folders ``inputs``, read and resized as the run's training
    images were, ``batch_size`` at a time. An unreadable file is reported in one line on stderr, listed in
    ``skipped`` and left out; no readable image at all is a ValueError."""
    from tqdm import tqdm

    paths, labels = folder_labels(inputs, model.class_names)
    side = thumbnail_size(len(paths), model.image_size)
    out: dict[str, list] = {"embeddings": [], "scores": [], "labels": [], "paths": [], "thumbnails": [],
                            "skipped": []}
    bar = tqdm(total=len(paths), unit="img", disable=not progress, file=sys.stderr)
    for start in range(0, len(paths), batch_size):
        batch, kept = [], []
        for path, label in zip(paths[start:start + batch_size], labels[start:start + batch_size]):
            try:
                batch.append(model.read(path))
                kept.append((path, label))
            except (OSError, ValueError) as err:  # unreadable, not an image, a decompression bomb
                out["skipped"].append(str(path))
                print(f"featspace embed: skipped {path}: {' '.join(str(err).split())[:200]}", file=sys.stderr)
        if batch:
            images = torch.stack(batch)
            with torch.no_grad():
                embeddings = model.embed(images)
                scores = model.head.predict(embeddings)
            out["embeddings"].append(embeddings.float().cpu())
            out["scores"].append(scores.float().cpu())
            out["labels"].extend(label for _, label in kept)
            out["paths"].extend(str(path) for path, _ in kept)
            if thumbnails:
                out["thumbnails"].append(_thumbnails(images, side))
        bar.update(len(paths[start:start + batch_size]))
    bar.close()
    if not out["paths"]:
        raise ValueError(f"no readable image files in {', '.join(map(str, inputs))}")
    return Embedded(torch.cat(out["embeddings"]), torch.cat(out["scores"]),
                    torch.tensor(out["labels"], dtype=torch.int64), out["paths"], list(model.class_names),
                    torch.cat(out["thumbnails"]) if thumbnails else None, out["skipped"])


def embed_split(run_dir: str | Path, split: str, *, batch_size: int = 256, device: str | torch.device = "cpu",
                thumbnails: bool = False, progress: bool = True) -> Embedded:
    """Embeddings, scores and labels of the run's ``split`` ("train": its training split less the validation
    hold-out, in order and without augmentation; "test"), with the weights it is evaluated with. Needs the run's
    dataset: a missing one is a one-line ValueError."""
    from tqdm import tqdm

    from featspace.data import DatasetNotFoundError

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    try:
        module, datamodule, _ = load_trained(run_dir)
    except DatasetNotFoundError as err:
        raise ValueError(f"--split {split} needs the run's dataset: {' '.join(str(err).split())}") from None
    bundle = datamodule.bundle
    if split == "train":
        indices = datamodule.train_idx
        images, labels = bundle.train_images[indices], bundle.train_labels[indices]
    else:
        indices = torch.arange(bundle.test_images.shape[0])
        images, labels = bundle.test_images, bundle.test_labels
    module.to(device)
    batches = image_batches(images, labels, bundle.mean, bundle.std, batch_size=batch_size)
    total = math.ceil(images.shape[0] / batch_size)
    found = extract(module.backbone, module.head, tqdm(batches, total=total, unit="batch", disable=not progress,
                                                       file=sys.stderr), device)
    side = thumbnail_size(images.shape[0], images.shape[-2:])
    dataset = module.config.dataset
    return Embedded(found.embeddings, found.scores, found.labels.to(torch.int64),
                    [f"{dataset}:{split}/{int(i)}" for i in indices], list(datamodule.class_names),
                    _thumbnails(images, side) if thumbnails else None)


def write_npz(path: str | Path, embedded: Embedded) -> None:
    """``embeddings``, ``scores``, ``labels``, ``paths``, ``class_names`` (unicode arrays: no pickles), atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, embeddings=embedded.embeddings.numpy(), scores=embedded.scores.numpy(),
                            labels=embedded.labels.numpy(), paths=np.array(embedded.paths, dtype=str),
                            class_names=np.array(embedded.class_names, dtype=str))


def _cell(text: str) -> str:
    return " ".join(text.split()) or "-"  # the projector's metadata is tab-separated, one line per point


def write_projector(log_dir: str | Path, embedded: Embedded, *, tag: str = "embeddings") -> Path:
    """A TensorBoard projector of the embeddings in ``log_dir`` (``tensorboard --logdir LOG_DIR``, Projector tab):
    each point's metadata is its label (class name, or ``?``), the predicted class and its path; its image is
    its thumbnail when there are any. Returns ``log_dir``, which holds ``projector_config.pbtxt``."""
    from torch.utils.tensorboard import SummaryWriter

    names = embedded.class_names
    predicted = embedded.scores.argmax(1).tolist()
    metadata = [[_cell(names[label]) if label != UNKNOWN else "?", _cell(names[guess]), _cell(path)]
                for label, guess, path in zip(embedded.labels.tolist(), predicted, embedded.paths)]
    label_img = embedded.thumbnails.float() / 255.0 if embedded.thumbnails is not None else None
    config_path = Path(log_dir) / "projector_config.pbtxt"
    earlier = config_path.read_text(encoding="utf-8") if config_path.is_file() else ""
    writer = SummaryWriter(str(log_dir))
    try:
        # add_embedding prints a warning about global_step when the tag's folder exists: here it is the same
        # run embedded again, whose files are replaced
        with contextlib.redirect_stdout(io.StringIO()):
            writer.add_embedding(embedded.embeddings, metadata=metadata, label_img=label_img, tag=tag,
                                 metadata_header=["label", "predicted", "path"], global_step=0)
    finally:
        writer.close()
    if earlier:
        _keep_earlier_embeddings(config_path, earlier)
    return Path(log_dir)


def _keep_earlier_embeddings(config_path: Path, earlier: str) -> None:
    """The writer's projector config lists only what it wrote; keep the other runs embedded into the same folder
    before (a tag embedded again is replaced)."""
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    new = text_format.Parse(config_path.read_text(encoding="utf-8"), ProjectorConfig())
    old = text_format.Parse(earlier, ProjectorConfig())
    written = {e.tensor_name for e in new.embeddings}
    merged = ProjectorConfig()
    merged.embeddings.extend([e for e in old.embeddings if e.tensor_name not in written])
    merged.embeddings.extend(new.embeddings)
    write_text(config_path, text_format.MessageToString(merged))
