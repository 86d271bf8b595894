"""Image files as the models see them: one decoding path for image folders at training time and for new images at
prediction time, so a trained run sees a new image exactly as it saw its training (test) images.

Two ways of bringing a file to the model's square side ``S``:

- ``"stretch"``: resize to ``S × S`` whatever the aspect ratio (the in-memory datasets, whose images are square);
- ``"shorter_side"``: resize the shorter side to ``round(S / crop_pct)`` keeping the aspect ratio, then take the
  central ``S × S`` (the streaming image folders; ``crop_pct`` 0.875 is ImageNet's "scale to 256, centre-crop
  224", 002 Sec. 4).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torch import Tensor

__all__ = ["IMAGE_SUFFIXES", "RESIZE_MODES", "CorruptImageError", "UnsafeImageError",
           "check_image", "find_images", "open_image", "read_image"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

#: how an image is brought to the model's side (module docstring)
RESIZE_MODES = ("stretch", "shorter_side")



class UnsafeImageError(ValueError):
    """An image file that PIL refuses to decode (a decompression bomb)."""


class CorruptImageError(ValueError):
    """A file in an image folder that is not a readable image; the message starts with its path.

    Raised in a DataLoader worker, torch re-creates it in the main process from a message that holds the whole
    worker traceback; only the original one-line message is kept, so the command line still prints one line."""

    def __init__(self, message: str = "") -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:  # torch's ExceptionWrapper.reraise
            message = message.rsplit(marker, 1)[1].strip().splitlines()[0]
        super().__init__(message)


def open_image(path: str | Path, *, channels: int = 3) -> Any:
    """The file decoded by PIL (fully loaded, the file closed) and converted to RGB (3 channels) or grey (1).
    Raises :class:`UnsafeImageError` for a decompression bomb and :class:`CorruptImageError` (naming the file)
    for a file PIL cannot read."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"images have 1 or 3 channels, got {channels}")
    try:
        with open(path, "rb") as handle:
            return Image.open(handle).convert("RGB" if channels == 3 else "L")
    except Image.DecompressionBombError as err:  # PIL's guard against a few KB that decode to gigabytes
        raise UnsafeImageError(f"{path}: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError (an OSError), truncated, ...
        if isinstance(err, FileNotFoundError):
            raise
        reason = str(err).replace(repr(str(path)), "").strip()  # PIL repeats the path
        raise CorruptImageError(f"{path}: not a readable image ({type(err).__name__}: {reason})") from None


def check_image(path: str | Path) -> str | None:
    """Why ``path`` is not a readable image, or None: PIL identifies its format from the header and ``verify``
    checks the file's structure (PNG chunk checksums; for JPEG little beyond the header) without decoding the
    pixels — a start-up check cheap enough for a whole image folder."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Image.DecompressionBombError as err:
        return f"refused by PIL's decompression-bomb guard ({err})"
    except Exception as err:  # noqa: BLE001 (PIL raises OSError, SyntaxError, struct.error, ... on bad files)
        return f"{type(err).__name__}: {str(err).replace(repr(str(path)), '').strip()}"  # the path is said once
    return None


def read_image(path: str | Path, *, channels: int, size: tuple[int, int], resize: str = "stretch",
               crop_pct: float = 1.0, interpolation: str = "bilinear") -> Tensor:
    """uint8 [channels, H, W]: the file decoded by PIL, converted to RGB (3 channels) or grey (1) and brought to
    ``size`` = (H, W) by ``resize`` (module docstring; antialiased ``interpolation``), as a run's test images are.
    Raises :class:`UnsafeImageError` for a decompression bomb and :class:`CorruptImageError` / OSError for a file
    PIL cannot read."""
    from torchvision.transforms import v2

    from featspace.data.transforms import eval_transform

    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    image = open_image(path, channels=channels)
    if resize == "shorter_side":
        if size[0] != size[1]:
            raise ValueError(f"shorter_side resizing makes square images, got size {size}")
        return eval_transform(size[0], crop_pct=crop_pct, interpolation=interpolation)(image)
    mode = v2.InterpolationMode(interpolation)
    return v2.functional.pil_to_tensor(v2.functional.resize(image, list(size), interpolation=mode, antialias=True))


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
