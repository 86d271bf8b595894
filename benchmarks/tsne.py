"""t-SNE as featspace draws it, against openTSNE's defaults and scikit-learn: time and KL divergence, same run.

    .venv/bin/python benchmarks/tsne.py                              # synthetic clusters (3000 × 64)
    .venv/bin/python benchmarks/tsne.py --run runs/RUN_DIR [--run …] # and trained runs' test embeddings

Three ways to the same objective (perplexity 30, cosine metric, PCA initialisation), each through
``featspace.report.plots.tsne_projection``:

- ``sklearn``: ``sklearn.manifold.TSNE`` (Barnes–Hut, 1000 iterations);
- ``opentsne-defaults``: openTSNE with its own defaults, Annoy's approximate neighbours and 250 early-exaggeration
  + 500 iterations (what featspace drew with before);
- ``featspace``: what ``plot_tsne`` uses now, exact neighbours and ``TSNE_ITERATIONS``.

Each method reports the KL divergence against its own affinities (approximate ones for Annoy), which do not
compare across methods; so every embedding is also scored here against one exact affinity matrix of the same
points (exact perplexity-calibrated neighbours, symmetrised, as both libraries define it) with the exact
Student-t Q over all pairs: ``kl_exact``, lower is better. Each seed draws another subset of the points and
seeds the method, so the spread over seeds says how much of a difference is noise. Prints a table and writes
JSON (``--out``, default ``benchmarks/results/tsne.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from featspace import __version__
from featspace.io import write_json
from featspace.report.plots import TSNE_ITERATIONS, tsne_projection

METHODS = {
    "sklearn": {"method": "sklearn"},
    "opentsne-defaults": {"method": "opentsne", "neighbors": "annoy", "iterations": (250, 500)},
    "featspace": {"method": "opentsne"},
}


def _sources(runs: list[Path]) -> list[tuple[str, np.ndarray]]:
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(20_000, n_features=64, centers=10, cluster_std=3.0, random_state=0)
    sources = [("synthetic clusters ×64", x)]
    for run in runs:
        with np.load(run / "embeddings.npz") as arrays:
            embeddings = arrays["test_embeddings"]
        sources.append((f"{run.name} test embeddings ×{embeddings.shape[1]}", embeddings))
    return sources


def exact_affinities(x: np.ndarray, perplexity: float, metric: str = "cosine") -> np.ndarray:
    """The dense, normalised t-SNE affinity matrix P [N, N] of ``x`` (exact neighbours, openTSNE's calibration)."""
    from openTSNE.affinity import PerplexityBasedNN

    p = PerplexityBasedNN(x, perplexity=perplexity, metric=metric, method="exact", n_jobs=os.cpu_count() or 1,
                          random_state=0).P.toarray()
    return p / p.sum()


def kl_divergence(p: np.ndarray, y: np.ndarray) -> float:
    """KL(P ‖ Q) of an embedding ``y`` [N, k], Q the Student-t (one degree of freedom) similarities of all pairs."""
    squared = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    w = 1.0 / (1.0 + squared)
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    mask = p > 0
    return float((p[mask] * np.log(p[mask] / q[mask])).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", default=[], help="a run directory (its embeddings.npz)")
    parser.add_argument("--points", type=int, default=3000, help="points of the 2-D projection (3-D: half)")
    parser.add_argument("--seeds", type=int, default=3, help="subsets and method seeds per row")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "tsne.json")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'source':<54} {'dim':>3} {'points':>6} {'method':<17} {'seconds':>8} {'KL exact (min–max)':>22} "
          f"{'× sklearn':>9}")
    for source, data in _sources(args.run):
        for dim, n in ((2, args.points), (3, args.points // 2)):
            if data.shape[1] < dim:  # a PCA start needs as many features as output dimensions
                continue
            measured: dict[str, dict[str, list[float]]] = {m: {"seconds": [], "kl_exact": [], "kl_own": []}
                                                          for m in METHODS}
            for seed in range(args.seeds):
                chosen = np.random.default_rng(seed).permutation(len(data))[:n]
                x = np.ascontiguousarray(data[chosen], dtype=np.float64)
                p = exact_affinities(x, min(30.0, (len(x) - 1) / 3))
                for name, options in METHODS.items():
                    started = time.perf_counter()
                    y, kl_own = tsne_projection(x, dim=dim, seed=seed, **options)
                    measured[name]["seconds"].append(time.perf_counter() - started)
                    measured[name]["kl_exact"].append(kl_divergence(p, y))
                    measured[name]["kl_own"].append(kl_own)
            base = float(np.mean(measured["sklearn"]["seconds"]))
            for name, values in measured.items():
                row = {"source": source, "dim": dim, "points": int(min(n, len(data))), "method": name,
                       "seeds": args.seeds, "seconds": float(np.mean(values["seconds"])),
                       "kl_exact": float(np.mean(values["kl_exact"])), "kl_exact_min": min(values["kl_exact"]),
                       "kl_exact_max": max(values["kl_exact"]), "kl_own": float(np.mean(values["kl_own"]))}
                row["ratio_to_sklearn"] = row["seconds"] / base
                rows.append(row)
                spread = f"{row['kl_exact']:.3f} ({row['kl_exact_min']:.3f}–{row['kl_exact_max']:.3f})"
                print(f"{source:<54} {dim:>3} {row['points']:>6} {name:<17} {row['seconds']:>8.1f} {spread:>22} "
                      f"{row['ratio_to_sklearn']:>9.2f}", flush=True)
    import openTSNE
    import sklearn

    meta = {"featspace": __version__, "machine": platform.machine(), "cpus": os.cpu_count(),
            "opentsne": openTSNE.__version__, "sklearn": sklearn.__version__, "date": time.strftime("%Y-%m-%d"),
            "featspace_iterations": list(TSNE_ITERATIONS), "seconds": "mean over seeds of one projection"}
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
