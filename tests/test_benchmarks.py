"""The benchmarks run end to end on tiny inputs (their numbers are not checked: tests never assert time)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_post_training_times_every_stage_of_a_finished_run(tmp_path):
    from featspace.train import load_recipe, train

    run = train(load_recipe("digits-demo", ["max_epochs=1", "tsne=false", "embedding_dim=4"]), root=tmp_path,
                progress=False).path
    out = tmp_path / "post.json"
    assert _module("post_training").main(["--run", str(run), "--repeats", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    stages = set(result["cold"])
    assert {"embed train split", "embed test split", "metrics", "write files", "figure tsne.png",
            "figure embeddings.png"} <= stages and set(result["warm"]) == stages
    assert result["total_cold"] == pytest.approx(sum(result["cold"].values()))
    assert result["ratio_cold"] == pytest.approx(result["total_cold"] / result["meta"]["train_seconds"])


def test_tsne_scores_every_method_against_one_exact_affinity_matrix(tmp_path):
    module = _module("tsne")
    out = tmp_path / "tsne.json"
    assert module.main(["--points", "80", "--seeds", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {(r["dim"], r["method"]) for r in rows} == {(d, m) for d in (2, 3) for m in module.METHODS}
    assert all(r["kl_exact"] > 0 for r in rows)


def test_the_exact_kl_is_zero_only_where_q_equals_p():
    import numpy as np

    module = _module("tsne")
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 2))
    squared = ((y[:, None] - y[None]) ** 2).sum(-1)
    q = 1 / (1 + squared)
    np.fill_diagonal(q, 0)
    q /= q.sum()
    assert module.kl_divergence(q, y) == pytest.approx(0.0, abs=1e-12)
    uniform = 1 - np.eye(30)
    assert module.kl_divergence(uniform / uniform.sum(), y) > 0.1


@pytest.mark.slow
def test_train_loop_times_every_loop_on_the_same_batches(tmp_path, monkeypatch):
    module = _module("train_loop")
    shape, classes, overrides = module.SETUPS["small_cnn"]
    # a tiny data set under a fresh name (the registry is process-wide), the small CNN's settings otherwise
    monkeypatch.setattr(module, "SETUPS", {"tiny_cnn": ((96, 1, 28, 28), classes, {**overrides, "batch_size": 32})})
    out = tmp_path / "loop.json"
    assert module.main(["--setups", "tiny_cnn", "--epochs", "2", "--repeats", "1", "--options", "channels_last",
                        "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["loop"] for r in rows] == ["featspace", "plain", "plain_linear", "lightning_bare",
                                         "featspace+channels_last"]
    assert all(len(r["steady_epochs"]) == 1 and r["seconds_per_epoch"] > 0 for r in rows)
    plain = next(r for r in rows if r["loop"] == "plain")["seconds_per_epoch"]
    assert all(r["ratio_to_plain"] == pytest.approx(r["seconds_per_epoch"] / plain) for r in rows)
    # a rerun of one setup keeps the rows of the others, with their own dates
    earlier = {"meta": {"date": "2026-01-01"}, "rows": [{"setup": "other", "device": "cpu", "loop": "plain"}]}
    out.write_text(json.dumps(earlier))
    assert module.main(["--setups", "tiny_cnn", "--epochs", "2", "--repeats", "1", "--options", "--device", "cpu",
                        "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows[0] == {"setup": "other", "device": "cpu", "loop": "plain", "date": "2026-01-01"}
    assert [r["setup"] for r in rows[1:]] == ["tiny_cnn"] * 4
