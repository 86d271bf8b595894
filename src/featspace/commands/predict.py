"""``featspace predict RUN_DIR INPUT... [--out predictions.csv] [--top-k K]``: classify image files or folders with
a trained run (``featspace.train.load_run``); one CSV row per image. An unreadable file is reported and skipped,
never the end of the job."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import Any

from featspace.commands._imports import add_import_option, import_modules

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="classify images (files or folders) with a trained run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)")
    p.add_argument("--out", default="predictions.csv", help="the CSV to write (default predictions.csv)")
    p.add_argument("--top-k", dest="top_k", type=int, default=3, help="classes listed per image (default 3)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_import_option(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from featspace.data import find_images
    from featspace.io import write_text
    from featspace.report.tables import csv_text
    from featspace.train import load_run

    if args.top_k < 1 or args.batch_size < 1:
        raise ValueError("--top-k and --batch-size must be at least 1")
    import_modules(args.imports)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_run(args.run_dir, map_location=device)
    paths = find_images(args.inputs)
    if not paths:
        raise ValueError(f"no image files in {', '.join(args.inputs)}")
    k = min(args.top_k, len(model.class_names))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "predicted", "score", *[f"top{i}" for i in range(1, k + 1)],
                     *[f"top{i}_score" for i in range(1, k + 1)]])
    skipped = 0
    bar = tqdm(total=len(paths), unit="img", disable=args.no_progress, file=sys.stderr)
    for start in range(0, len(paths), args.batch_size):
        batch, kept = [], []
        for path in paths[start:start + args.batch_size]:
            try:
                batch.append(model.read(path))
                kept.append(path)
            except (OSError, ValueError) as err:  # unreadable, not an image, a decompression bomb
                skipped += 1
                print(f"featspace predict: skipped {path}: {' '.join(str(err).split())[:200]}", file=sys.stderr)
        if batch:
            scores, classes = model.predict(torch.stack(batch)).float().topk(k, dim=1)
            for path, top_scores, top_classes in zip(kept, scores.tolist(), classes.tolist()):
                names = [csv_text(model.class_names[c]) for c in top_classes]
                writer.writerow([csv_text(path), names[0], repr(top_scores[0]), *names, *map(repr, top_scores)])
        bar.update(len(paths[start:start + args.batch_size]))
    bar.close()
    write_text(args.out, buffer.getvalue())
    print(f"predicted {len(paths) - skipped} image(s) into {args.out}" + (f"; {skipped} skipped" if skipped else ""))
    return 0
