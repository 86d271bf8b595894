"""Image files as the models see them: one decoding and resizing path for image folders at training time and
for new images at prediction time, so a trained run sees a new image exactly as it saw its training images."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "UnsafeImageError", "find_images", "read_image"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class UnsafeImageError(ValueError):
    """An image file that PIL refuses to decode (a decompression bomb)."""


def read_image(path: str | Path, *, channels: int, size: tuple[int, int]) -> Tensor:
    """uint8 [channels, H, W]: the file decoded by PIL, converted to RGB (3 channels) or grey (1), resized to
    ``size`` = (H, W) bilinearly with antialiasing (torchvision's ``Resize``). Raises :class:`UnsafeImageError`
    for a decompression bomb and OSError for a file PIL cannot read."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    if channels not in (1, 3):
        raise ValueError(f"images have 1 or 3 channels, got {channels}")
    try:
        with open(path, "rb") as handle:
            image = Image.open(handle).convert("RGB" if channels == 3 else "L")
    except Image.DecompressionBombError as err:  # PIL's guard against a few KB that decode to gigabytes
        raise UnsafeImageError(f"{path}: {err}") from None
    resized = TF.resize(image, list(size), antialias=True)
    return TF.pil_to_tensor(resized).to(torch.uint8)


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files among ``inputs``: files as given, folders searched recursively for image suffixes, sorted
    within each folder. A path that does not exist raises FileNotFoundError."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no image or folder at {path}")
    return found
