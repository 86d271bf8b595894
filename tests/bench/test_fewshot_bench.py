"""A suite's ``fewshot`` section: every run is evaluated after training, and a finished run that lacks the
evaluation (or has a stale one) gets it on the next bench, without retraining. A fake train and a fake
evaluation (milliseconds) for the rules, one tiny real run on fewshot_digits for the whole path."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from featspace.bench import plan_suite, run_suite
from featspace.bench.runner import needs_fewshot
from featspace.io import read_json, write_json
from featspace.rundir import RunIndex
from featspace.suite import load_suite, parse_suite
from featspace.train.fewshot import flat_metrics
from tests.bench._fakes import FakeTrain

SETTINGS = {"shots": [1, 5], "episodes": 50, "methods": ["ncc"], "norm": "cl2n"}


def fewshot_suite(fewshot: dict[str, Any] | None = SETTINGS, name: str = "fs"):
    raw: dict[str, Any] = {"name": name, "recipe": "digits-demo", "set": {"dataset": "fewshot_digits"},
                           "matrix": {"head": ["softmax", "bce"]}}
    if fewshot is not None:
        raw["fewshot"] = fewshot
    return parse_suite(raw)


class FakeFewshot:
    """Writes what ``evaluate_fewshot`` writes (fewshot.json, flat keys merged into metrics.json and the index row),
    with made-up numbers; fails on demand."""

    def __init__(self, *, fail_on_call: int | None = None) -> None:
        self.fail_on_call = fail_on_call
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, run_dir: str | Path, **settings: Any) -> dict[str, Any]:
        self.calls.append((Path(run_dir).name, settings))
        if len(self.calls) == self.fail_on_call:
            raise RuntimeError("fake evaluation failure")
        shots = [int(k) for k in settings.get("shots", (1, 5))]
        methods = list(settings.get("methods", ("ncc",)))
        report = {"run": Path(run_dir).name, "ways": settings.get("ways", 5), "queries": settings.get("queries", 15),
                  "episodes": settings.get("episodes", 10000), "shots": shots, "norm": settings.get("norm", "cl2n"),
                  "seed": settings.get("seed", 0), "laplacianshot": None,
                  "results": {m: {str(k): {"mean": 0.5 + 0.01 * k, "ci95": 0.01} for k in shots} for m in methods},
                  "discriminant": {"total": 0.3, "classifier": 0.4, "complement": 0.2}}
        write_json(Path(run_dir) / "fewshot.json", report)
        metrics = {**read_json(Path(run_dir) / "metrics.json"), **flat_metrics(report)}
        write_json(Path(run_dir) / "metrics.json", metrics)
        RunIndex(Path(run_dir).parent).update_metrics(Path(run_dir).name, metrics)
        return report


def test_every_run_is_evaluated_after_training_with_the_suites_settings(tmp_path):
    suite = fewshot_suite()
    train, evaluate = FakeTrain(), FakeFewshot()
    stream = io.StringIO()
    records = run_suite(suite, root=tmp_path, train_fn=train, fewshot_fn=evaluate, stream=stream)
    assert len(train.calls) == 2 and len(evaluate.calls) == 2
    assert [c[0] for c in evaluate.calls] == [Path(r.path).name for r in records]
    assert evaluate.calls[0][1] == {"shots": (1, 5), "episodes": 50, "methods": ("ncc",), "norm": "cl2n"}
    assert all(r.metrics["fewshot_ncc_5shot"] == pytest.approx(0.55) for r in records)
    assert all(r.metrics["fewshot_discriminant_complement"] == 0.2 for r in records)
    assert stream.getvalue().count("few-shot evaluation done") == 2
    # a second bench does nothing at all
    again_train, again_eval = FakeTrain(), FakeFewshot()
    run_suite(suite, root=tmp_path, train_fn=again_train, fewshot_fn=again_eval, progress=False)
    assert again_train.calls == [] and again_eval.calls == []
    assert all(p.action == "skip" for p in plan_suite(suite, root=tmp_path))


def test_runs_trained_before_the_section_existed_are_evaluated_without_retraining(tmp_path):
    run_suite(fewshot_suite(fewshot=None), root=tmp_path, train_fn=FakeTrain(), progress=False)
    suite = fewshot_suite()  # same cells: the fewshot section is not part of the cell key
    assert [p.action for p in plan_suite(suite, root=tmp_path)] == ["fewshot", "fewshot"]
    train, evaluate = FakeTrain(), FakeFewshot()
    stream = io.StringIO()
    run_suite(suite, root=tmp_path, train_fn=train, fewshot_fn=evaluate, stream=stream)
    assert train.calls == [] and len(evaluate.calls) == 2
    assert "0 to run, 2 to evaluate (few-shot)" in stream.getvalue()
    assert len(RunIndex(tmp_path).query(suite="fs")) == 2  # no new run rows


def test_failed_evaluation_keeps_the_run_and_is_retried(tmp_path):
    suite = fewshot_suite()
    stream = io.StringIO()
    run_suite(suite, root=tmp_path, train_fn=FakeTrain(), fewshot_fn=FakeFewshot(fail_on_call=1), stream=stream)
    assert "few-shot evaluation FAILED" in stream.getvalue() and "1 without their few-shot evaluation" in \
        stream.getvalue()
    assert [p.action for p in plan_suite(suite, root=tmp_path)] == ["fewshot", "skip"]
    assert all(r.status == "finished" for r in RunIndex(tmp_path).query(suite="fs"))
    train, evaluate = FakeTrain(), FakeFewshot()
    run_suite(suite, root=tmp_path, train_fn=train, fewshot_fn=evaluate, progress=False)
    assert train.calls == [] and len(evaluate.calls) == 1
    assert all(p.action == "skip" for p in plan_suite(suite, root=tmp_path))


def test_stale_or_lost_evaluations_are_redone(tmp_path):
    suite = fewshot_suite()
    run_suite(suite, root=tmp_path, train_fn=FakeTrain(), fewshot_fn=FakeFewshot(), progress=False)
    record = RunIndex(tmp_path).query(suite="fs", status="finished")[0]
    assert not needs_fewshot(record, suite.fewshot)
    # other settings: more episodes, another K, another method, another norm
    assert needs_fewshot(record, {**suite.fewshot, "episodes": 10000})
    assert needs_fewshot(record, {**suite.fewshot, "shots": (1, 5, 10)})
    assert needs_fewshot(record, {**suite.fewshot, "methods": ("ncc", "laplacianshot")})
    assert needs_fewshot(record, {**suite.fewshot, "norm": "l2"})
    # fewshot.json lost, or the index row rewritten without the few-shot keys (a later `featspace eval`)
    (Path(record.path) / "fewshot.json").unlink()
    assert needs_fewshot(record, suite.fewshot)
    other = RunIndex(tmp_path).query(suite="fs", status="finished")[1]
    RunIndex(tmp_path).update_metrics(other.id, {"accuracy": 0.5})
    assert needs_fewshot(RunIndex(tmp_path).get(other.id), suite.fewshot)
    evaluate = FakeFewshot()
    run_suite(suite, root=tmp_path, train_fn=FakeTrain(), fewshot_fn=evaluate, progress=False)
    assert sorted(c[0] for c in evaluate.calls) == sorted([Path(record.path).name, Path(other.path).name])


@pytest.mark.parametrize("fewshot, message", [
    ({"episodes": 0}, "episodes must be a positive integer"),
    ({"shots": [1, 1]}, "distinct positive integers"),
    ({"methods": ["knn"]}, "methods must be among"),
    ({"norm": "zca"}, "norm must be one of"),
    ({"rectify": "yes"}, "rectify must be true or false"),
    ({"episode": 100}, "unknown fewshot setting"),
    ([1, 5], "must be a mapping"),
])
def test_bad_fewshot_sections_fail_when_the_suite_is_loaded(fewshot, message):
    with pytest.raises(ValueError, match=message):
        fewshot_suite(fewshot=fewshot)


def test_shipped_fewshot_suites_evaluate_few_shot():
    for name in ("fewshot-table4", "fewshot-table3", "fewshot-table4-miniimagenet"):
        suite = load_suite(name)
        assert suite.fewshot is not None and suite.fewshot["shots"] == (1, 5)
        configs = [c.config for c in suite.expand()]
        # trained on a few-shot split's base classes with N-way K-shot batches (003 Sec. 3.1)
        assert all(c.dataset.startswith("fewshot_") and c.episode_ways * c.episode_shots == c.batch_size
                   for c in configs)


def test_table4_has_the_papers_twelve_rows():
    suite = load_suite("fewshot-table4")
    cells = suite.expand(seeds=1)  # the suite runs 3 seeds; one seed's cells are the table's rows
    assert [c.labels["head"] for c in cells] == ["SCE", "BCE", "NCA", "Proto", "SCE+NCA", "SCE+Proto", "BCE+NCA",
                                                "BCE+Proto", "SCE⊕NCA", "SCE⊕Proto", "BCE⊕NCA", "BCE⊕Proto"]
    modes = {c.labels["head"]: c.config.head_params.get("mode") for c in cells}
    assert modes["SCE+NCA"] == "sum" and modes["BCE⊕Proto"] == "direct"


@pytest.mark.slow
def test_real_bench_on_fewshot_digits_evaluates_each_run_once(tmp_path):
    from featspace.train import train

    suite = parse_suite({"name": "fs-real", "recipe": "digits-demo",
                         "set": {"dataset": "fewshot_digits", "max_epochs": 1, "tsne": False, "val_fraction": 0.0,
                                 "episode_ways": 5, "episode_shots": 8,
                                 "backbone_params": {"widths": [8, 16, 16], "hidden": 32}},
                         "matrix": {"head": [{"label": "SCE⊕NCA", "head": "directsum"}]},
                         "fewshot": {"shots": [1, 5], "episodes": 200, "norm": "cl2n"}})
    records = run_suite(suite, root=tmp_path, train_fn=train, progress=False)
    assert len(records) == 1 and records[0].status == "finished"
    metrics = records[0].metrics
    assert 0.2 < metrics["fewshot_ncc_1shot"] <= metrics["fewshot_ncc_5shot"] + 0.05
    assert 0 < metrics["fewshot_ncc_5shot_ci95"] < 0.1
    assert {"classifier", "complement"} <= set(read_json(Path(records[0].path) / "fewshot.json")["discriminant"])
    assert read_json(Path(records[0].path) / "metrics.json")["fewshot_ncc_5shot"] == metrics["fewshot_ncc_5shot"]
    assert all(p.action == "skip" for p in plan_suite(suite, root=tmp_path))
