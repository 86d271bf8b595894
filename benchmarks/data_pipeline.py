"""Throughput and memory of featspace's streamed image-folder pipeline beside a plain torchvision ``ImageFolder`` +
``DataLoader`` with the same transforms, measured in the same run.

    .venv/bin/python benchmarks/data_pipeline.py                      # 224 px, 0 and 2 workers, 200 and 600 JPEGs
    .venv/bin/python benchmarks/data_pipeline.py --sizes 300 --workers 0 --passes 2

It writes JPEGs of ImageNet-like sizes (320–500 × 240–375 px, 4 classes) into a temporary directory, then for each
(dataset size, workers, pipeline) starts a fresh Python process that builds the training loader at 224 px with the
``imagenet`` policy (RandomResizedCrop + flip, normalised float32 batches of 32) and times full passes over it
(the median of ``--passes`` after one warm-up pass). Memory is the peak resident set of that process (its
``ru_maxrss``) and of its largest loader worker; memory that did not depend on the number of images is what
streaming promises, so it is measured at two dataset sizes.

- ``featspace``: ``featspace.data.load("imagefolder")`` (file lists and header checks) + ``DataModule``'s
  training loader (per-sample seeded torchvision.transforms.v2, batch normalised at once);
- ``plain``: ``torchvision.datasets.ImageFolder`` with ``v2.Compose([RandomResizedCrop, RandomHorizontalFlip,
  PILToTensor, ToDtype(float32, scale=True), Normalize])`` and a shuffling ``DataLoader`` (persistent workers).

Prints a table and writes JSON (``--out``, default ``benchmarks/results/data_pipeline.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

SIDE = 224
BATCH = 32
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def write_images(root: Path, count: int, classes: int = 4, seed: int = 0) -> None:
    """``count`` JPEGs in ``root/train/<class>/`` (and one per class in ``test/``): smooth random colour fields,
    which compress like photographs rather than like noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", count), ("test", classes)):
        for i in range(n):
            w, h = int(rng.integers(320, 501)), int(rng.integers(240, 376))
            coarse = rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
            image = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
            folder = root / split / f"class{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{i:05d}.jpg", quality=90)


def _loader(pipeline: str, root: Path, workers: int):
    import torch
    from torchvision import datasets
    from torchvision.transforms import v2

    if pipeline == "featspace":
        from featspace import data

        bundle = data.load("imagefolder", data_dir=root)
        module = data.DataModule(bundle, batch_size=BATCH, image_size=SIDE, augment="imagenet", val_fraction=0.0,
                                 num_workers=workers, normalization=(MEAN, STD), pin_memory=False, drop_last=False)
        return module.train_dataloader()
    transform = v2.Compose([v2.RandomResizedCrop(SIDE, antialias=True), v2.RandomHorizontalFlip(), v2.PILToTensor(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])
    folder = datasets.ImageFolder(str(root / "train"), transform=transform)
    return torch.utils.data.DataLoader(folder, batch_size=BATCH, shuffle=True, num_workers=workers,
                                       persistent_workers=workers > 0)


def child(pipeline: str, root: Path, workers: int, passes: int) -> dict:
    """One measurement in this (fresh) process: passes over the training loader, then the peak memory."""
    import torch

    torch.set_num_threads(1)  # the work is per-image decoding; one thread per process is what loaders use
    started = time.perf_counter()
    loader = _loader(pipeline, root, workers)
    setup = time.perf_counter() - started
    times, images = [], 0
    for p in range(passes + 1):
        started, seen = time.perf_counter(), 0
        for x, _ in loader:
            seen += x.shape[0]
        if p > 0:  # the first pass starts the workers and warms the file cache
            times.append(time.perf_counter() - started)
        images = seen
    del loader  # persistent workers exit here, so their peak is in RUSAGE_CHILDREN
    import gc

    gc.collect()
    time.sleep(0.5)
    return {"images": images, "pass_seconds": times, "setup_seconds": setup,
            "main_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if workers else 0.0}


def measure(pipeline: str, root: Path, workers: int, passes: int) -> dict:
    command = [sys.executable, __file__, "--child", pipeline, str(root), str(workers), str(passes)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["images_per_second"] = result["images"] / statistics.median(result["pass_seconds"])
    return result


def print_table(rows: list[dict]) -> None:
    header = ["images", "workers", "featspace img/s", "plain img/s", "ratio", "featspace MB (main / worker)",
              "plain MB (main / worker)"]
    lines = [header]
    for r in rows:
        f, p = r["featspace"], r["plain"]
        lines.append([str(r["count"]), str(r["workers"]), f"{f['images_per_second']:.0f}",
                      f"{p['images_per_second']:.0f}", f"{r['ratio']:.2f}",
                      f"{f['main_peak_mb']:.0f} / {f['worker_peak_mb']:.0f}",
                      f"{p['main_peak_mb']:.0f} / {p['worker_peak_mb']:.0f}"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[200, 600], help="training images per dataset")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    parser.add_argument("--passes", type=int, default=3, help="timed passes per measurement (after a warm-up)")
    parser.add_argument("--note", default="", help="recorded in the JSON (e.g. what else ran on the machine)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "data_pipeline.json"))
    parser.add_argument("--child", nargs=4, metavar=("PIPELINE", "ROOT", "WORKERS", "PASSES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        pipeline, root, workers, passes = args.child
        print(json.dumps(child(pipeline, Path(root), int(workers), int(passes))))
        return 0

    import torch
    import torchvision

    from featspace import __version__
    from featspace.io import write_json

    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="featspace-bench-") as tmp:
        for count in args.sizes:
            root = Path(tmp) / f"n{count}"
            write_images(root, count)
            for workers in args.workers:
                # both pipelines back to back on the same files, featspace first then plain, then again in the
                # other order: the machine's load drifts, and the ratio should not carry the drift
                first = {p: measure(p, root, workers, args.passes) for p in ("featspace", "plain")}
                second = {p: measure(p, root, workers, args.passes) for p in ("plain", "featspace")}
                row = {"count": count, "workers": workers}
                for p in ("featspace", "plain"):
                    runs = [first[p], second[p]]
                    row[p] = {"images_per_second": statistics.mean(r["images_per_second"] for r in runs),
                              "main_peak_mb": max(r["main_peak_mb"] for r in runs),
                              "worker_peak_mb": max(r["worker_peak_mb"] for r in runs),
                              "setup_seconds": statistics.mean(r["setup_seconds"] for r in runs), "runs": runs}
                row["ratio"] = row["featspace"]["images_per_second"] / row["plain"]["images_per_second"]
                rows.append(row)
                print(f"  {count} images, {workers} workers: ratio {row['ratio']:.2f}", file=sys.stderr)
    print_table(rows)
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, "featspace": __version__,
            "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
            "side": SIDE, "batch": BATCH, "policy": "imagenet", "note": args.note,
            "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
            "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
