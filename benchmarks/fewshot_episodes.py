"""Speed of few-shot evaluation on cached features: vectorized episodes against a per-episode loop, same run.

    .venv/bin/python benchmarks/fewshot_episodes.py                       # 10,000 episodes, 640-d, CPU
    .venv/bin/python benchmarks/fewshot_episodes.py --episodes 2000 --dim 512 --device cuda

Features: 20 novel classes × 600 samples (the size of mini-ImageNet's test split), ``--dim`` wide (640, the
ResNet-12 width of 003 Sec. 3.1), non-negative Gaussian clusters like post-ReLU features, float32.
For 5-way {1, 5}-shot with 15 queries it times

- ``featspace.metrics.evaluate_episodes`` over ``--episodes`` episodes (sampling included, CL2N normalization;
  the median of ``--repeats`` timings);
- a simple per-episode loop in the style of the SimpleShot / LaplacianShot evaluation code: Python
  ``random.sample`` per class, numpy per episode, and for LaplacianShot scikit-learn's NearestNeighbors and a
  SciPy sparse affinity with the same bound updates — over ``--loop-episodes`` episodes (it is slow), then
  expressed as episodes per second.

The ratio is vectorized episodes/s over loop episodes/s. The two accuracies come from different random
episodes and should agree within their confidence intervals (a check that both compute the same thing).
Prints a table and writes JSON (``--out``, default ``benchmarks/results/fewshot_episodes.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from featspace import __version__
from featspace.io import write_json
from featspace.metrics.fewshot import confidence_interval, evaluate_episodes


def make_features(classes: int, per_class: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=g) * 0.35
    labels = torch.arange(classes).repeat_interleave(per_class)
    features = (centres[labels] + torch.randn(classes * per_class, dim, generator=g)).relu()
    return features, labels


def _softmax_rows(a: np.ndarray) -> np.ndarray:
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


def loop_episodes(features: np.ndarray, labels: np.ndarray, base_mean: np.ndarray, *, method: str, shots: int,
                  episodes: int, ways: int = 5, queries: int = 15, lam: float = 1.0, knn: int = 3,
                  seed: int = 0) -> list[float]:
    """The per-episode baseline: one episode at a time, as the authors' evaluation scripts do."""
    from scipy import sparse
    from sklearn.neighbors import NearestNeighbors

    rng = random.Random(seed)
    by_class = {int(c): np.nonzero(labels == c)[0].tolist() for c in np.unique(labels)}
    accuracies = []
    for _ in range(episodes):
        chosen = rng.sample(list(by_class), ways)
        support, query = [], []
        for c in chosen:
            picked = rng.sample(by_class[c], shots + queries)
            support.append(features[picked[:shots]])
            query.append(features[picked[shots:]])
        support_x = np.concatenate(support) - base_mean
        query_x = np.concatenate(query) - base_mean
        support_x /= np.linalg.norm(support_x, axis=1, keepdims=True)
        query_x /= np.linalg.norm(query_x, axis=1, keepdims=True)
        prototypes = support_x.reshape(ways, shots, -1).mean(1)
        distance = np.linalg.norm(prototypes[:, None, :] - query_x[None], axis=-1)  # [N, M]
        truth = np.repeat(np.arange(ways), queries)
        if method == "ncc":
            predicted = distance.argmin(0)
        else:
            unary = distance.T ** 2
            m = query_x.shape[0]
            _, neighbours = NearestNeighbors(n_neighbors=knn).fit(query_x).kneighbors(query_x)
            kernel = sparse.csc_matrix((np.ones(m * (knn - 1)), (np.repeat(np.arange(m), knn - 1),
                                                                 neighbours[:, 1:].flatten())), shape=(m, m))
            y = _softmax_rows(-unary)
            previous = float("inf")
            for step in range(20):
                y = _softmax_rows(-unary + lam * kernel.dot(y))
                energy = float(np.sum(y * np.log(np.maximum(y, 1e-20)) + unary * y - lam * kernel.dot(y) * y))
                if step > 1 and abs(energy - previous) <= 1e-6 * abs(previous):
                    break
                previous = energy
            predicted = y.argmax(1)
        accuracies.append(float((predicted == truth).mean()))
    return accuracies


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    features, labels = make_features(args.classes, args.per_class, args.dim, seed=args.seed)
    base_mean = features.mean(0)  # stands in for the base-class mean of CL2N
    device = torch.device(args.device)
    features_dev, base_mean_dev = features.to(device), base_mean.to(device)
    np_features, np_labels, np_mean = features.numpy(), labels.numpy(), base_mean.numpy()
    # warm-up: first calls pay for thread pools, kernels and imports, in both implementations
    for method in ("ncc", "laplacianshot"):
        evaluate_episodes(features_dev, labels, episodes=50, method=method, norm="cl2n", base_mean=base_mean_dev)
        loop_episodes(np_features, np_labels, np_mean, method=method, shots=1, episodes=10, seed=args.seed + 1)
    rows = []
    for method in ("ncc", "laplacianshot"):
        for shots in (1, 5):
            timings = []
            for _ in range(args.repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                result = evaluate_episodes(features_dev, labels, episodes=args.episodes, shots=shots, method=method,
                                           norm="cl2n", base_mean=base_mean_dev, seed=args.seed)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                timings.append(time.perf_counter() - started)
            seconds = statistics.median(timings)
            loop_n = args.loop_episodes if method == "ncc" else max(1, args.loop_episodes // 2)
            started = time.perf_counter()
            loop_acc = loop_episodes(np_features, np_labels, np_mean, method=method, shots=shots, episodes=loop_n,
                                     seed=args.seed)
            loop_seconds = time.perf_counter() - started
            loop_mean, loop_ci, _ = confidence_interval(torch.tensor(loop_acc))
            row = {
                "method": method, "shots": shots, "ways": 5, "queries": 15, "dim": args.dim, "device": str(device),
                "episodes": args.episodes, "seconds": seconds, "timings": timings,
                "episodes_per_s": args.episodes / seconds,
                "loop_episodes": loop_n, "loop_seconds": loop_seconds, "loop_episodes_per_s": loop_n / loop_seconds,
                "speedup": (args.episodes / seconds) / (loop_n / loop_seconds),
                "accuracy": result.mean, "ci95": result.ci95, "loop_accuracy": loop_mean, "loop_ci95": loop_ci,
            }
            rows.append(row)
            print(f"  {method:<14} {shots}-shot  {seconds:7.2f} s  {row['episodes_per_s']:9.0f} ep/s   loop "
                  f"{row['loop_episodes_per_s']:7.0f} ep/s   ×{row['speedup']:6.1f}   acc {100 * result.mean:.2f} ± "
                  f"{100 * result.ci95:.2f} (loop {100 * loop_mean:.2f} ± {100 * loop_ci:.2f})", flush=True)
    return rows


def print_table(rows: list[dict[str, object]], episodes: int) -> None:
    header = (f"{'method':<14} {'K':>2} {f'{episodes} ep. (s)':>14} {'episodes/s':>11} {'loop ep./s':>11} "
              f"{'speed-up':>9} {'accuracy % (vectorized)':>24} {'accuracy % (loop)':>18}")
    print("\n" + header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['method']:<14} {r['shots']:>2} {r['seconds']:>14.2f} {r['episodes_per_s']:>11.0f} "
              f"{r['loop_episodes_per_s']:>11.0f} {r['speedup']:>8.1f}× "
              f"{100 * r['accuracy']:>15.2f} ± {100 * r['ci95']:.2f} {100 * r['loop_accuracy']:>10.2f} ± "
              f"{100 * r['loop_ci95']:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10000)
    parser.add_argument("--loop-episodes", type=int, default=400, help="episodes of the per-episode loop (ncc; "
                        "half as many for LaplacianShot)")
    parser.add_argument("--repeats", type=int, default=3, help="timings of the vectorized path (median reported)")
    parser.add_argument("--dim", type=int, default=640)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=600)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "fewshot_episodes.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"5-way K-shot, 15 queries, {args.classes}×{args.per_class} features of d = {args.dim} on {args.device}, "
          f"{torch.get_num_threads()} threads")
    rows = run(args)
    print_table(rows, args.episodes)
    meta = {"torch": torch.__version__, "featspace": __version__, "machine": platform.machine(),
            "processor": platform.processor(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d"),
            # other processes share small machines; the load says how much the timings may have suffered
            "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
