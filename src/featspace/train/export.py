"""A finished run as one model file, from images to scores: ONNX, TorchScript or a ``torch.export`` program.

    float images [B, C, H, W] in [0, 1] ─► (images − mean) / std ─► backbone ─► embeddings [B, d]
                                                                                ─► head.predict ─► scores [B, C]

The input contract, the same for every format:

- ``images``: float32 [B, C, H, W], pixel values in [0, 1] (uint8 pixels / 255), C the run's channels (RGB or
  grey, as its training images were), H × W exactly the run's image size: resize first as
  ``featspace.data.read_image`` does (PIL decoding, bilinear resize with antialiasing). Any batch size B ≥ 1.
- The run's per-channel mean/std normalisation is *inside* the model: do not normalise the images yourself.
- Two outputs, in this order: ``scores`` [B, C_classes] (the head's ``predict``; argmax is the class, in the
  order of the sidecar's ``class_names``) and ``embeddings`` [B, d] (the backbone's output).

``export_run`` writes the file atomically (``featspace.io``), checks it (unless ``check=False``) by running it
with onnxruntime, ``torch.jit.load`` or ``torch.export.load`` on random images against the eager model of
``load_run`` — the model ``featspace predict`` uses — and refuses a file that differs by more than the
tolerance; then it writes a JSON sidecar beside it (``<file>.json``: class names, input shape and range, the
mean/std already applied, the output names and the check). The run's training data is never read.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from featspace.io import atomic_path, write_json
from featspace.rundir import RunDir
from featspace.train.inference import TrainedRun, load_run

__all__ = ["FORMATS", "INPUT_NAME", "OUTPUT_NAMES", "ExportResult", "InferenceModel", "default_out", "export_run",
           "load_exported", "sidecar_path"]

#: export format -> the file suffix it is written with by default (".pt2" is what torch.export.load expects)
FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
INPUT_NAME = "images"
OUTPUT_NAMES = ("scores", "embeddings")
#: images of the batch the model is exported with: 2, not 1, so the batch dimension stays symbolic
EXAMPLE_BATCH = 2
#: images of the check batch: another size than the example's, so the check also covers a dynamic batch
CHECK_BATCH = 3
#: the largest |exported − eager| accepted, relative to the output's largest magnitude (at least 1)
CHECK_TOLERANCE = 1e-4


class InferenceModel(nn.Module):
    """Backbone + head's predict path with the run's normalisation: float images [B, C, H, W] in [0, 1] ->
    (scores [B, C_classes], embeddings [B, d]). The module every export format holds."""

    def __init__(self, backbone: nn.Module, head: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        mean_t = torch.tensor(mean, dtype=torch.float32)
        std_t = torch.tensor(std, dtype=torch.float32)
        # x·(1/std) − mean/std: featspace.data.normalize's arithmetic, for pixels already divided by 255
        self.register_buffer("scale", (1.0 / std_t).view(1, -1, 1, 1))
        self.register_buffer("shift", (-mean_t / std_t).view(1, -1, 1, 1))

    @classmethod
    def of_run(cls, run: TrainedRun) -> InferenceModel:
        return cls(run.backbone, run.head, run.mean, run.std).eval()

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        embeddings = self.backbone(images * self.scale + self.shift)
        return self.head.predict(embeddings), embeddings


@dataclass
class ExportResult:
    """What ``export_run`` wrote: the model file, its sidecar, the file's size, and the check (None when skipped):
    ``max_abs_diff`` and ``tolerance`` per output name."""

    path: Path
    sidecar: Path
    format: str
    bytes: int
    info: dict[str, Any]
    max_abs_diff: dict[str, float] | None
    tolerance: dict[str, float] | None


def default_out(format: str) -> Path:
    """``model.onnx``, ``model.pt`` or ``model.pt2`` in the current directory."""
    return Path("model" + FORMATS[_check_format(format)])


def sidecar_path(out: str | os.PathLike[str]) -> Path:
    """The JSON beside an exported file: ``model.onnx`` -> ``model.onnx.json``."""
    out = Path(out)
    return out.with_name(out.name + ".json")


def export_run(run_dir: str | os.PathLike[str], format: str, out: str | os.PathLike[str] | None = None, *,
               check: bool = True) -> ExportResult:
    """Export the run in ``run_dir`` as ``format`` (one of :data:`FORMATS`) to ``out`` (default
    :func:`default_out`), check it against the eager model unless ``check`` is False, and write its sidecar.

    One-line ``ValueError`` for an unknown format, an ``out`` that cannot be written, a run the exporter cannot
    capture, or a file that fails its check (then nothing is left at ``out``); ``FileNotFoundError`` for a run
    directory without its config, model.json or weights.
    """
    format = _check_format(format)
    out = Path(out) if out is not None else default_out(format)
    _check_writable(out, format)
    run = load_run(run_dir, map_location="cpu")
    config = RunDir(run_dir).read_config()
    model = InferenceModel.of_run(run)
    channels, (height, width) = run.in_channels, run.image_size
    example = torch.rand(EXAMPLE_BATCH, channels, height, width, generator=torch.Generator().manual_seed(0))
    diffs = tolerance = None
    with atomic_path(out) as tmp:
        extra = _write(model, format, example, tmp, str(run_dir))
        if check:
            diffs, tolerance = _check(run, tmp, format)
            failed = [name for name in OUTPUT_NAMES if not diffs[name] <= tolerance[name]]
            if failed:
                worst = ", ".join(f"{name} by {diffs[name]:.3g} (tolerance {tolerance[name]:.3g})" for name in failed)
                raise ValueError(f"the {format} export of {run_dir} differs from the eager model in {worst}; "
                                 f"nothing written to {out}; try another --format")
    info = _sidecar(run, config, format, out, run_dir, diffs, tolerance, extra)
    sidecar = sidecar_path(out)
    write_json(sidecar, info)
    return ExportResult(out, sidecar, format, out.stat().st_size, info, diffs, tolerance)


def load_exported(path: str | os.PathLike[str], format: str) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """The exported file as a function: float images [B, C, H, W] in [0, 1] -> (scores, embeddings), run by
    onnxruntime (CPU), ``torch.jit.load`` or ``torch.export.load`` — what a deployment would do with it."""
    format = _check_format(format)
    path = str(path)
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run_onnx(images: Tensor) -> tuple[Tensor, Tensor]:
            scores, embeddings = session.run(list(OUTPUT_NAMES), {INPUT_NAME: images.numpy()})
            return torch.from_numpy(scores), torch.from_numpy(embeddings)

        return run_onnx
    if format == "torchscript":
        with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export (a FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(path, map_location="cpu")
    else:
        module = torch.export.load(path).module()

    def run_torch(images: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            scores, embeddings = module(images)
        return scores, embeddings

    return run_torch


# --------------------------------------------------------------------------------------------- the parts
def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


def _check_writable(out: Path, format: str) -> None:
    """Refuse an ``out`` that cannot take the file before the (slow) export, in one line."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give the file to write, e.g. {out / default_out(format)}")
    if format == "exported-program" and out.suffix != ".pt2":
        raise ValueError(f"--out {out}: an exported program is a .pt2 file (torch.export.load reads only those); "
                         f"name it {out.with_suffix('.pt2')}")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot write --out {out}: {err.strerror or err} ({err.filename or parent})") from None
    if not os.access(parent, os.W_OK):
        raise ValueError(f"cannot write --out {out}: the directory {parent} is not writable")


def _write(model: InferenceModel, format: str, example: Tensor, path: Path, run_dir: str) -> dict[str, Any]:
    """Export ``model`` to ``path``; returns what the sidecar adds for this format."""
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            if format == "onnx":
                # the dynamo exporter (torch.export underneath); weights inside the file, not in a sidecar
                # .data file that would be named after the temporary file
                program = torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME],
                                            output_names=list(OUTPUT_NAMES), dynamic_shapes={"images": {0: batch}},
                                            external_data=False, verbose=False)
                return {"opset": _onnx_opset(program)}
            if format == "torchscript":
                # torch.jit is deprecated in favour of torch.export (a FutureWarning) and warns about every
                # shape it records; the check below runs the saved trace on another batch size instead
                warnings.simplefilter("ignore")
                torch.jit.save(torch.jit.trace(model, example), str(path))
                return {}
            program = torch.export.export(model, (example,), dynamic_shapes={"images": {0: batch}})
            torch.export.save(program, str(path))
            return {}
    except (ValueError, OSError):
        raise
    except Exception as err:  # the exporters raise many types; the first line says what they could not capture
        first = " ".join(str(err).strip().splitlines()[0].split())[:300] if str(err).strip() else type(err).__name__
        raise ValueError(f"cannot export {run_dir} as {format}: {first}; try another --format") from err


def _onnx_opset(program: Any) -> int | None:
    model = getattr(program, "model_proto", None)
    for entry in getattr(model, "opset_import", ()):
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def _check(run: TrainedRun, path: Path, format: str) -> tuple[dict[str, float], dict[str, float]]:
    """Max |exported − eager| per output on random uint8 images, the eager side being ``TrainedRun`` (uint8
    in, its own normalisation), and the tolerance of each output."""
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (CHECK_BATCH, run.in_channels, *run.image_size), dtype=torch.uint8,
                           generator=generator)
    eager = {"scores": run.predict(pixels).float(), "embeddings": run.embed(pixels).float()}
    exported = dict(zip(OUTPUT_NAMES, load_exported(path, format)(pixels.float() / 255.0)))
    diffs, tolerance = {}, {}
    for name in OUTPUT_NAMES:
        if exported[name].shape != eager[name].shape:
            raise ValueError(f"the {format} export gives {name} of shape {tuple(exported[name].shape)} for "
                             f"{CHECK_BATCH} images, the eager model {tuple(eager[name].shape)}")
        diffs[name] = float((exported[name].float() - eager[name]).abs().max())
        tolerance[name] = CHECK_TOLERANCE * max(1.0, float(eager[name].abs().max()))
    return diffs, tolerance


def _sidecar(run: TrainedRun, config: Any, format: str, out: Path, run_dir: str | os.PathLike[str],
             diffs: dict[str, float] | None, tolerance: dict[str, float] | None,
             extra: dict[str, Any]) -> dict[str, Any]:
    channels, (height, width) = run.in_channels, run.image_size
    num_classes, dim = len(run.class_names), int(run.head.embedding_dim)
    runtime = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "exported-program": "torch.export.load"}[format]
    return {
        "format": format,
        "file": out.name,
        "run_dir": str(run_dir),
        "head": config.head,
        "backbone": config.backbone,
        "class_names": run.class_names,
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", channels, height, width],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "channels": "RGB" if channels == 3 else "grey",
            "resize": "to height x width, bilinear with antialiasing, as featspace.data.read_image",
        },
        "normalization": {"mean": list(run.mean), "std": list(run.std), "applied_inside_the_model": True,
                          "formula": "(images - mean) / std per channel"},
        "outputs": [
            {"name": "scores", "shape": ["batch", num_classes], "dtype": "float32",
             "meaning": "the head's scores; argmax is the class, indexing class_names"},
            {"name": "embeddings", "shape": ["batch", dim], "dtype": "float32",
             "meaning": "the backbone's embeddings, which the head scores"},
        ],
        "check": None if diffs is None else {"runtime": runtime, "images": CHECK_BATCH, "max_abs_diff": diffs,
                                             "tolerance": tolerance, "against": "featspace.train.load_run (eager)"},
        "torch_version": torch.__version__,
        **extra,
    }
