"""Report tables: aggregation over seeds, the paper's layout, bold/underline ranks, paper columns, CSV and
Markdown, on runs written straight into an index (no training)."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest
from scipy import stats as scipy_stats

from featspace.report.build import build_report, collect_report
from featspace.report.tables import CSV_COLUMNS, MetricSpec, Stat, parse_paper_value, parse_table, rank_column
from featspace.rundir import RunIndex, new_run_dir
from featspace.suite import parse_suite

SUITE = {
    "name": "mini",
    "recipe": "digits-demo",
    "seeds": 3,
    "matrix": [
        {"head": [{"label": "Softmax", "head": "softmax"}, {"label": "ICV <b>", "head": "icv"}],
         "embedding_dim": [{"label": "2x1", "value": 2}, {"label": "4x1", "value": 4}]},
        {"head": [{"label": "ICV <b>", "head": "icv"}], "head_params.lam": [0.5, 0.05]},
    ],
    "tables": [
        {"title": "Accuracy", "rows": ["head"], "columns": ["embedding_dim"],
         "metrics": [{"key": "accuracy", "name": "acc", "format": ".3f",
                      "key_when": [{"where": {"embedding_dim": 4}, "key": "accuracy_alt"}]}],
         "paper": {"source": "paper T1", "rows": {"Softmax": [0.9, "0.95 ± 0.01"], "ICV <b>": [0.91, None]}}},
        {"title": "Lambda sweep", "rows": ["head_params.lam"], "where": {"head": "ICV <b>"},
         "metrics": [{"key": "accuracy", "format": ".3f"},
                     {"key": "davies_bouldin", "format": ".2f", "higher_is_better": False}]},
    ],
}

# accuracy of (head, embedding_dim or lam) for seeds 0, 1, 2
VALUES = {
    ("Softmax", "2x1"): [0.80, 0.82, 0.84],
    ("Softmax", "4x1"): [0.70, 0.70, 0.70],
    ("ICV <b>", "2x1"): [0.85, 0.86, 0.87],
    ("ICV <b>", "4x1"): [0.60, 0.61, 0.62],
    ("ICV <b>", "0.5"): [0.50, 0.52, 0.54],
    ("ICV <b>", "0.05"): [0.55, 0.57, 0.59],
}


def populate(root, suite, skip=()):
    index = RunIndex(root)
    for cell in suite.expand():
        labels = cell.labels
        key = (labels["head"], labels.get("embedding_dim") or labels.get("head_params.lam"))
        if (key, cell.seed) in skip:
            continue
        value = VALUES[key][cell.seed]
        run_id, path = new_run_dir(root)
        index.start(run_id, path, cell.config.to_dict(), suite=suite.name, cell=cell.key)
        # accuracy_alt is what the 4x1 column reads (key_when); accuracy there is a decoy
        metrics = {"accuracy": value, "accuracy_alt": value, "davies_bouldin": 2 - value}
        if cell.config.embedding_dim == 4:
            metrics["accuracy"] = -1.0
        index.finish(run_id, metrics)
    return index


@pytest.fixture
def suite():
    return parse_suite(dict(SUITE))


def test_mean_std_over_seeds_in_the_paper_layout(tmp_path, suite):
    populate(tmp_path, suite)
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    table = report.tables[0]
    assert [table.row_name(r) for r in range(2)] == ["Softmax", "ICV <b>"]
    assert [(c.labels, c.source) for c in table.columns] == [
        (("2x1",), "ours"), (("2x1",), "paper"), (("4x1",), "ours"), (("4x1",), "paper")]
    softmax_2 = table.cells[0][0]
    assert softmax_2.n == 3
    assert softmax_2.mean == pytest.approx(statistics.mean(VALUES[("Softmax", "2x1")]))
    assert softmax_2.std == pytest.approx(statistics.stdev(VALUES[("Softmax", "2x1")]))
    # key_when: the 4x1 column reads accuracy_alt, not the decoy
    assert table.cells[0][2].mean == pytest.approx(0.70)
    assert table.cells[1][2].mean == pytest.approx(0.61)
    # paper columns: numbers and "mean ± std" strings; a null stays empty
    assert table.cells[0][1] == Stat(0.9)
    assert table.cells[0][3] == Stat(0.95, 0.01)
    assert table.cells[1][3] is None
    # the width sweep (lam) is another block: its runs do not pool into the head rows
    assert "mean ± std over n = 3 runs" in table.caption and "pool" not in table.caption


def test_best_marks_respect_direction_and_significance(tmp_path, suite):
    populate(tmp_path, suite)
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    sweep = report.tables[1]
    assert [sweep.row_name(r) for r in range(len(sweep.row_labels))] == ["0.5", "0.05"]
    headers = [c.header(with_metric=True) for c in sweep.columns]
    assert headers == ["accuracy", "davies_bouldin"]
    # accuracy: 0.57 (lam 0.05) beats 0.52 by 0.05 on every seed (significant); Davies-Bouldin, lower is
    # better: 1.43 beats 1.48 the same way; no second-best mark for ours
    assert [row[0] for row in sweep.ranks] == [None, 1]
    assert [row[1] for row in sweep.ranks] == [None, 1]
    # Accuracy at 2x1: ICV 0.85/0.86/0.87 vs softmax 0.80/0.82/0.84, differences 0.05, 0.04, 0.03: p = 0.026
    table = report.tables[0]
    assert [table.ranks[r][0] for r in range(2)] == [None, 1]
    assert table.reference == "Softmax"
    cmp = table.comparisons[1][0]
    assert cmp.n == 3 and cmp.diff == pytest.approx(0.04) and cmp.p == pytest.approx(
        scipy_stats.ttest_rel([0.85, 0.86, 0.87], [0.80, 0.82, 0.84]).pvalue)
    assert cmp.p_holm == pytest.approx(cmp.p)  # one comparison per column: Holm leaves it
    assert table.comparisons[0][0] is None and "not significantly worse" in table.caption
    text = report.tables[0]
    md = "\n".join(text.text(r, c) for r in range(2) for c in range(4))
    assert "0.820 ± 0.020" in md


def test_rank_ties_at_displayed_precision_share_a_rank():
    metric = MetricSpec("a", "a", format=".2f")
    stats = [Stat(0.901), Stat(0.899), Stat(0.85), None, Stat(0.70)]
    assert rank_column(stats, metric) == [1, 1, 2, None, None]
    lower = MetricSpec("b", "b", format=".1f", higher_is_better=False)
    assert rank_column([Stat(3.0), Stat(1.0), Stat(2.0)], lower) == [None, 1, 2]
    assert rank_column([Stat(1.0), None], metric) == [None, None]  # one value: nothing to compare


def test_missing_cells_and_unequal_counts_show_n(tmp_path, suite):
    populate(tmp_path, suite, skip={(("Softmax", "2x1"), 2), (("Softmax", "2x1"), 1)})
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    table = report.tables[0]
    assert table.cells[0][0] == Stat(0.80, math.nan, 1) or (table.cells[0][0].n == 1
                                                             and math.isnan(table.cells[0][0].std))
    assert table.uniform_n() is None
    assert table.text(0, 0) == "0.800 (1)"
    assert table.text(1, 0) == "0.860 ± 0.010 (3)"


def test_runs_keep_the_suites_cell_order_when_a_cell_is_retrained_later(tmp_path, suite):
    """Figures follow report.runs: a cell run again after the others (a deleted run, a resumed bench) must keep
    its place in the suite's order rather than move to the end."""
    first = (("Softmax", "2x1"), 0)
    index = populate(tmp_path, suite, skip={first})
    cell = suite.expand()[0]
    assert cell.seed == 0 and cell.labels["head"] == "Softmax"
    run_id, path = new_run_dir(tmp_path)
    index.start(run_id, path, cell.config.to_dict(), suite=suite.name, cell=cell.key)
    index.finish(run_id, {"accuracy": 0.8, "accuracy_alt": 0.8, "davies_bouldin": 1.2})
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    groups = list(dict.fromkeys(c.group for c in suite.expand(seeds=[0])))
    got = [(run.group, run.seed) for run in report.runs]
    assert got == sorted(got, key=lambda gs: (groups.index(gs[0]), gs[1]))
    assert report.runs[0].id == run_id


def test_runs_of_other_overrides_are_left_out_with_a_warning(tmp_path, suite):
    populate(tmp_path, suite)
    other = parse_suite(dict(SUITE))
    index = RunIndex(tmp_path)
    cell = other.expand(overrides=["max_epochs=1"])[0]
    run_id, path = new_run_dir(tmp_path)
    index.start(run_id, path, cell.config.to_dict(), suite="mini", cell=cell.key)
    index.finish(run_id, {"accuracy": 0.0})
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    assert report.tables[0].cells[0][0].n == 3
    assert any("belong to no cell" in w for w in report.warnings)
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out", overrides=["max_epochs=1"])
    cell = report.tables[0].cells[0][0]
    assert (cell.mean, cell.n, cell.seeds) == (0.0, 1, ((0, 0.0),)) and math.isnan(cell.std)


def test_csv_markdown_files(tmp_path, suite):
    populate(tmp_path, suite)
    paths = build_report(suite, root=tmp_path)
    assert paths.out_dir == tmp_path / "reports" / "mini"
    rows = list(csv.DictReader(io.StringIO(paths.csv.read_text())))
    first = next(r for r in rows if r["table"] == "Accuracy" and r["row"] == "Softmax" and r["column"] == "2x1"
                 and r["source"] == "ours")
    assert float(first["mean"]) == pytest.approx(0.82) and first["n"] == "3"
    assert any(r["source"] == "paper" and r["mean"] == "0.95" and r["std"] == "0.01" for r in rows)
    runs = list(csv.DictReader(io.StringIO(paths.runs_csv.read_text())))
    assert len(runs) == 18 and {"head", "embedding_dim", "seed", "accuracy"} <= set(runs[0])
    md = paths.markdown.read_text()
    assert "| head \\ embedding_dim | 2x1 | 2x1 (paper) | 4x1 | 4x1 (paper) |" in md
    assert "| ICV &lt;b&gt; | **0.860 ± 0.010** |" in md  # labels escaped, best bold
    assert "<u>0.820 ± 0.020</u>" not in md and "| Softmax | 0.820 ± 0.020 |" in md  # no "second by a hair"
    assert "Δ vs Softmax [95% CI], p (Holm)" in md and "| Softmax | [" in md
    assert set(CSV_COLUMNS) <= set(rows[0])
    assert (float(first["ci_low"]), float(first["ci_high"])) == pytest.approx(
        scipy_stats.t.interval(0.95, 2, loc=0.82, scale=scipy_stats.sem([0.80, 0.82, 0.84])))
    assert first["reference"] == "Softmax" and first["diff"] == "" and first["best"] == "0"
    icv = next(r for r in rows if r["table"] == "Accuracy" and r["row"] == "ICV <b>" and r["column"] == "2x1"
               and r["source"] == "ours")
    assert icv["best"] == "1" and icv["n_paired"] == "3" and float(icv["diff"]) == pytest.approx(0.04)
    assert float(icv["p_holm"]) == pytest.approx(float(icv["p"]))
    assert float(icv["diff_ci_low"]) < 0.04 < float(icv["diff_ci_high"])
    page = paths.html.read_text(encoding="utf-8")
    assert 'class="wide stats"' in page and "Δ vs Softmax [95% CI], p (Holm)" in page
    for key in ("featspace", "torch", "device (report)", "date"):
        assert f"| {key} |" in md


def test_paper_rows_are_validated(suite):
    layout = suite.layout()
    bad = dict(SUITE["tables"][0])
    bad["paper"] = {"source": "x", "rows": {"Softmax": [0.9]}}
    with pytest.raises(ValueError, match="has 1 values, the table has 2"):
        parse_table(bad, layout)
    bad["paper"] = {"source": "x", "rows": {"Nope": [0.9, 0.9]}}
    with pytest.raises(ValueError, match="'Nope' is not a row"):
        parse_table(bad, layout)
    with pytest.raises(ValueError, match="unknown axis 'dataset'"):
        parse_table({"title": "t", "rows": ["dataset"], "metrics": ["accuracy"]}, layout)
    assert parse_paper_value("88.69 \u00b1 0.21") == Stat(88.69, 0.21)
    assert parse_paper_value(3055) == Stat(3055.0)
    with pytest.raises(ValueError):
        parse_paper_value("n/a")


def test_report_of_run_directories(tmp_path):
    import yaml

    from featspace.io import write_json

    dirs = []
    for k, (head, seed, acc) in enumerate([("softmax", 0, 0.8), ("softmax", 1, 0.9), ("icv", 0, 0.7)]):
        d = tmp_path / f"run{k}"
        d.mkdir()
        (d / "config.yaml").write_text(yaml.safe_dump({"head": head, "seed": seed, "dataset": "digits"}))
        write_json(d / "metrics.json", {"accuracy": acc, "d_em": 40.0 + k})
        dirs.append(d)
    paths = build_report(dirs, root=tmp_path, out_dir=tmp_path / "rep")
    rows = list(csv.DictReader(io.StringIO(paths.csv.read_text())))
    softmax = next(r for r in rows if r["row"] == "softmax" and r["metric"] == "accuracy")
    assert float(softmax["mean"]) == pytest.approx(85.0) and softmax["n"] == "2"


def test_fewshot_ci_shows_for_single_runs_and_std_over_seeds(tmp_path):
    """A metric with ci_key: one run per cell shows ± its episodes' CI, several runs ± the std over seeds; the CSV
    keeps the mean CI either way; the Markdown/HTML captions say which ± is which."""
    raw = {"name": "fs-ci", "recipe": "digits-demo", "seeds": 2,
           "matrix": {"head": [{"label": "SCE", "head": "softmax"}, {"label": "NCA", "head": "nca"}]},
           "tables": [{"title": "Table 4", "rows": ["head"],
                       "metrics": [{"key": "fewshot_ncc_1shot", "name": "1-shot (%)", "scale": 100, "format": ".2f",
                                    "ci_key": "fewshot_ncc_1shot_ci95"}],
                       "paper": {"source": "003 Table 4", "rows": {"SCE": [63.85], "NCA": [63.95]}}}]}
    suite = parse_suite(raw)
    index = RunIndex(tmp_path)
    numbers = {("SCE", 0): (0.60, 0.004), ("SCE", 1): (0.62, 0.006), ("NCA", 0): (0.55, 0.005)}
    for cell in suite.expand():
        if (cell.labels["head"], cell.seed) not in numbers:
            continue  # NCA has one run only
        mean, ci = numbers[(cell.labels["head"], cell.seed)]
        run_id, path = new_run_dir(tmp_path)
        index.start(run_id, path, cell.config.to_dict(), suite=suite.name, cell=cell.key)
        index.finish(run_id, {"fewshot_ncc_1shot": mean, "fewshot_ncc_1shot_ci95": ci})
    report, _ = collect_report(suite, root=tmp_path)
    table = report.tables[0]
    assert table.text(0, 0) == f"61.00 ± {statistics.stdev([60.0, 62.0]):.2f} (2)"  # SCE: std over two seeds
    assert table.text(1, 0) == "55.00 ± 0.50 (1)"  # NCA: one run, ± its CI
    assert table.cells[0][0].ci == pytest.approx(0.5) and table.text(0, 1) == "63.85"
    assert "the 95% confidence interval of its episodes" in table.caption
    paths = build_report(suite, root=tmp_path, out_dir=tmp_path / "report")
    rows = {(r["row"], r["source"]): r for r in csv.DictReader(io.StringIO(paths.csv.read_text()))}
    assert float(rows[("SCE", "ours")]["ci95"]) == pytest.approx(0.5) and rows[("SCE", "paper")]["ci95"] == ""
    assert "55.00 ± 0.50" in paths.markdown.read_text() and "55.00 ± 0.50" in paths.html.read_text()
    # a metric without a CI key is untouched: a single run shows its mean alone
    assert math.isnan(Stat(1.0, n=1).ci)


def test_csv_text_cells_cannot_become_spreadsheet_formulas():
    """Issue 17, item 14: run names and labels went raw into CSV."""
    from featspace.report.tables import Run, csv_text, runs_to_csv

    assert csv_text("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")" and csv_text("@SUM(A1)") == "'@SUM(A1)"
    assert csv_text("+1") == "'+1" and csv_text("-cmd") == "'-cmd" and csv_text("ICV λ=1") == "ICV λ=1"
    text = runs_to_csv([Run(id="=evil()", group="g", seed=0, label_sets=[{"head": "+x"}], config={},
                            metrics={"accuracy": -0.5})], ["head"])
    assert text.splitlines()[1] == "'=evil(),g,'+x,0,-0.5,"


def test_a_configuration_in_two_blocks_sits_at_its_label_in_a_sweep(tmp_path):
    """pod-ablation: POD at the recipe's width is a cell of the loss block and of the width sweep; the sweep
    table shows it at its width, not in a row without a label (and "-" at the width)."""
    suite = parse_suite({"name": "two-blocks", "recipe": "digits-demo", "seeds": 1,
                         "matrix": [{"head": ["softmax", "pod"]}, {"head": ["pod"], "embedding_dim": [8, 16]}],
                         "tables": [{"title": "losses", "rows": ["head"], "metrics": ["accuracy"]},
                                    {"title": "widths", "rows": ["embedding_dim"], "where": {"head": "pod"},
                                     "metrics": ["accuracy"]}]})
    index = RunIndex(tmp_path)
    for cell in suite.expand():
        run_id, path = new_run_dir(tmp_path)
        index.start(run_id, path, cell.config.to_dict(), suite=suite.name, cell=cell.key)
        index.finish(run_id, {"accuracy": cell.config.embedding_dim / 100 + (cell.config.head == "pod") * 0.5})
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    losses, widths = report.tables
    assert [losses.row_name(r) for r in range(2)] == ["softmax", "pod"] and losses.cells[1][0].mean == 0.66
    assert [widths.row_name(r) for r in range(len(widths.row_labels))] == ["8", "16"]
    assert [widths.cells[r][0].mean for r in range(2)] == [0.58, 0.66]


def test_select_picks_a_setting_on_validation_never_on_test(tmp_path):
    suite = parse_suite({"name": "pick", "recipe": "digits-demo", "seeds": 3,
                         "matrix": {"head": ["arcface", "cosface"], "head_params.margin": [0.1, 0.5]},
                         "tables": [{"title": "picked", "rows": ["head"], "metrics": ["accuracy"],
                                     "select": {"axes": ["head_params.margin"], "by": "best_val_loss"}}]})
    index = RunIndex(tmp_path)
    for cell in suite.expand():
        head, margin = cell.config.head, cell.config.head_params["margin"]
        # margin 0.5 has the lower validation loss but the lower test accuracy: it must be the one picked
        metrics = {"accuracy": (0.8 if margin == 0.1 else 0.7) + 0.01 * cell.seed,
                   "best_val_loss": 0.5 if margin == 0.1 else 0.3}
        if head == "cosface":
            del metrics["best_val_loss"]  # no validation split: nothing to pick on
        run_id, path = new_run_dir(tmp_path)
        index.start(run_id, path, cell.config.to_dict(), suite=suite.name, cell=cell.key)
        index.finish(run_id, metrics)
    report, _ = collect_report(suite, root=tmp_path, out_dir=tmp_path / "out")
    (table,) = report.tables
    arcface, cosface = table.cells
    assert arcface[0].mean == pytest.approx(0.71) and arcface[0].n == 3 and arcface[0].picked == "0.5"
    assert cosface[0] is None
    assert table.text(0, 0) == "0.710 ± 0.010 [0.5]"
    assert "picked on validation" in table.caption and "1 cells left empty" in table.caption
    assert "pool" not in table.caption
    with pytest.raises(ValueError, match="select axis 'head' is also a row"):
        parse_table({"title": "t", "rows": ["head"], "metrics": ["accuracy"],
                     "select": {"axes": ["head"], "by": "best_val_loss"}}, suite.layout())
