"""``featspace export RUN_DIR [--format onnx|torchscript|exported-program] [--out FILE] [--no-check]``: a trained
run as one model file from images to scores and embeddings (``featspace.train.export``), checked against the
eager model by running the file, with a JSON sidecar beside it."""

from __future__ import annotations

import argparse
from typing import Any

from featspace.commands._imports import add_import_option, import_modules

__all__ = ["add_parser", "run"]

_RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch.jit.load", "exported-program": "torch.export.load"}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="write a trained run as an ONNX, TorchScript or torch.export file",
        description="Export backbone + head as one model: float images [B, C, H, W] in [0, 1] at the run's image "
                    "size (normalisation inside) -> scores [B, classes] and embeddings [B, d]. A sidecar "
                    "FILE.json says so, with the class names.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--format", default="onnx", metavar="FORMAT",
                   help="onnx (default), torchscript or exported-program")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="the file to write (default model.onnx, model.pt or model.pt2 by format)")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="do not run the written file against the eager model")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from featspace.train.export import CHECK_TOLERANCE, export_run

    import_modules(args.imports)  # the run's own backbone, before its name is resolved
    result = export_run(args.run_dir, args.format, args.out, check=args.check)
    info = result.info
    shape = info["input"]["shape"]
    outputs = ", ".join(f"{o['name']} [{', '.join(map(str, o['shape']))}]" for o in info["outputs"])
    print(f"wrote {result.path} ({result.format}, {_size(result.bytes)}) and {result.sidecar}")
    print(f"input:   {info['input']['name']} float32 [{', '.join(map(str, shape))}] in [0, 1], "
          f"{info['input']['channels']}, normalised inside the model")
    print(f"outputs: {outputs}")
    if result.max_abs_diff is None:
        print("check:   skipped (--no-check)")
    else:
        diffs = ", ".join(f"{name} {value:.2g}" for name, value in result.max_abs_diff.items())
        print(f"check:   {_RUNTIMES[result.format]} against the eager model on {info['check']['images']} random "
              f"images: max abs difference {diffs} (accepted up to {CHECK_TOLERANCE:.0e} x the output's scale)")
    return 0


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    return f"{count / 1024:.1f} KiB" if count < 1024**2 else f"{count / 1024**2:.1f} MiB"
