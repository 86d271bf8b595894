"""t-SNE of a run's embeddings: openTSNE against scikit-learn, time and final KL divergence, in the same run.

    .venv/bin/python benchmarks/tsne.py                        # synthetic clusters (3000 × 64) and 2-D / 3-D
    .venv/bin/python benchmarks/tsne.py --run runs/RUN_DIR     # a trained run's test embeddings

Both minimise the same objective (perplexity 30, cosine metric, PCA initialisation, the run's seed) through
``featspace.report.plots.tsne_projection``; the KL divergence each reaches says whether the faster one is as good.
Prints a table and writes JSON (``--out``, default ``benchmarks/results/tsne.json``).
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
from featspace.report.plots import tsne_projection


def _points(run: Path | None, n: int) -> tuple[str, np.ndarray]:
    if run is None:
        from sklearn.datasets import make_blobs

        x, _ = make_blobs(n, n_features=64, centers=10, cluster_std=3.0, random_state=0)
        return f"synthetic clusters {n}×64", x
    with np.load(run / "embeddings.npz") as arrays:
        x = arrays["test_embeddings"]
    chosen = np.random.default_rng(0).permutation(len(x))[:n]
    return f"{run.name} test embeddings {len(chosen)}×{x.shape[1]}", x[chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a run directory (its embeddings.npz)")
    parser.add_argument("--points", type=int, default=3000, help="points of the 2-D projection (3-D: half)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "tsne.json")
    args = parser.parse_args(argv)
    source, x = _points(args.run, args.points)
    rows = []
    for dim, n in ((2, args.points), (3, args.points // 2)):
        for method in ("sklearn", "opentsne"):
            started = time.perf_counter()
            _, kl = tsne_projection(x[:n], dim=dim, method=method)
            rows.append({"dim": dim, "points": int(min(n, len(x))), "method": method,
                         "seconds": time.perf_counter() - started, "kl_divergence": kl})
    print(f"{source}\n{'dim':>3} {'points':>6} {'method':<9} {'seconds':>8} {'KL':>7} {'× sklearn':>9}")
    for row in rows:
        base = next(r for r in rows if r["dim"] == row["dim"] and r["method"] == "sklearn")
        row["ratio_to_sklearn"] = row["seconds"] / base["seconds"]
        print(f"{row['dim']:>3} {row['points']:>6} {row['method']:<9} {row['seconds']:>8.1f} "
              f"{row['kl_divergence']:>7.3f} {row['ratio_to_sklearn']:>9.2f}")
    import openTSNE
    import sklearn

    meta = {"featspace": __version__, "source": source, "machine": platform.machine(), "cpus": os.cpu_count(),
            "opentsne": openTSNE.__version__, "sklearn": sklearn.__version__, "date": time.strftime("%Y-%m-%d")}
    write_json(args.out, {"meta": meta, "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
