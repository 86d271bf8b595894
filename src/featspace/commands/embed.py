"""``featspace embed RUN_DIR [INPUT... | --split train|test] [--out FILE.npz] [--tensorboard DIR]``: embeddings of
image files, folders or one of the run's own splits (``featspace.train.embedding``), as an ``.npz`` and as a
TensorBoard projector. An unreadable file is reported and skipped, never the end of the job."""

from __future__ import annotations

import argparse
from typing import Any

from featspace.commands._imports import add_import_option, import_modules

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "embed", help="embeddings of images (files, folders or a split of the run's dataset) as .npz and a "
                      "TensorBoard projector",
        description="Embed images with a trained run: embeddings, the head's scores, labels (from class folders "
                    "named after the run's classes, or the split's; -1 where unknown) and paths, in an .npz; with "
                    "--tensorboard, a projector with the labels as metadata and thumbnails of the images.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--split", choices=("train", "test"),
                   help="embed the run's own training split (less its validation hold-out) or test split instead; "
                        "needs the run's dataset")
    p.add_argument("--out", default="embeddings.npz", help="the .npz to write (default embeddings.npz)")
    p.add_argument("--tensorboard", metavar="DIR", help="also write a TensorBoard projector into DIR")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from featspace.rundir import RunDir
    from featspace.train import load_run
    from featspace.train.embedding import embed_files, embed_split, write_npz, write_projector
    from featspace.train.fit import quiet_lightning

    import_modules(args.imports)  # the run's own backbone, before its name is resolved
    if bool(args.inputs) == bool(args.split):
        raise ValueError("give image files or folders, or --split train|test (one of the two)")
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    thumbnails = bool(args.tensorboard)
    if args.split:
        quiet_lightning()
        embedded = embed_split(args.run_dir, args.split, batch_size=args.batch_size, device=device,
                               thumbnails=thumbnails, progress=not args.no_progress)
    else:
        model = load_run(args.run_dir, map_location=device)
        embedded = embed_files(model, args.inputs, batch_size=args.batch_size, thumbnails=thumbnails,
                               progress=not args.no_progress)
    write_npz(args.out, embedded)
    count, known = len(embedded.paths), int((embedded.labels >= 0).sum())
    print(f"embedded {count} image(s) into {args.out} (d = {embedded.embeddings.shape[1]}, labels known for "
          f"{known})" + (f"; {len(embedded.skipped)} skipped" if embedded.skipped else ""))
    if args.tensorboard:
        folder = write_projector(args.tensorboard, embedded, tag=RunDir(args.run_dir).name)
        print(f"projector: tensorboard --logdir {folder}")
    return 0
