"""The HTML report: self-contained (images as data URIs, no external reference, no script), every label
escaped, heatmaps and copied run plots embedded."""

from __future__ import annotations

import base64
import re

import pytest

from featspace.report.build import build_report
from featspace.report.html import png_data_uri
from featspace.rundir import RunIndex, new_run_dir
from featspace.suite import parse_suite

EVIL = '<script>alert("x")</script>'

SUITE = {
    "name": "grid",
    "description": f"a grid {EVIL}",
    "recipe": "digits-demo",
    "notes": "notes & <i>things</i>",
    "matrix": [
        {"head": [{"label": f"hasep {EVIL}", "head": "hasep"}, {"label": "arc\"face'", "head": "arcface"}],
         "head_params.scale": [1, 2, 3], "head_params.margin": [0.1, 0.5]},
    ],
    "tables": [{"title": f"D_EM {EVIL}", "rows": ["head_params.scale"], "columns": ["head_params.margin"],
                "where": {"head": f"hasep {EVIL}"}, "corner": "σ \\ m", "metrics": [{"key": "d_em", "format": ".1f"}]}],
    "heatmaps": [{"metric": "d_em", "x": "head_params.margin", "y": "head_params.scale", "facet": "head",
                  "title": "D_EM heatmap"}],
    "scatters": [{"x": "d_kl", "y": "d_em", "color_by": "head", "title": "scatter"}],
    "figures": [{"title": f"plots {EVIL}", "plots": ["embeddings.png", "evil.png"],
                 "where": {"head_params.scale": 1}}],
}


def tiny_png(path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture
def report_paths(tmp_path):
    suite = parse_suite(dict(SUITE))
    index = RunIndex(tmp_path / "runs")
    for cell in suite.expand():
        run_id, path = new_run_dir(tmp_path / "runs", prefix=f"{cell.config.head}-")
        index.start(run_id, path, cell.config.to_dict(), suite="grid", cell=cell.key)
        scale, margin = cell.config.head_params["scale"], cell.config.head_params["margin"]
        (path / "plots").mkdir()
        tiny_png(path / "plots" / "embeddings.png")
        (path / "plots" / "evil.png").write_text("<html>not a png</html>")
        index.finish(run_id, {"d_em": 10.0 * scale + 100 * margin, "d_kl": scale * margin})
    return build_report(suite, root=tmp_path / "runs", out_dir=tmp_path / "out")


def test_html_is_self_contained_and_escaped(report_paths):
    page = report_paths.html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "arc&quot;face&#x27;" in page
    assert "notes &amp; &lt;i&gt;things&lt;/i&gt;" in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(href|src)="(https?:|//|file:)', page)
    for uri in sources:
        assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG")


def test_html_tables_mark_nothing_best_with_one_seed(report_paths):
    page = report_paths.html.read_text(encoding="utf-8")
    # per margin column the largest scale has the largest D_EM, but with one seed no difference can be called
    rows = re.findall(r"<tr><td class=\"row\">(\d)</td>(.*?)</tr>", page)
    assert len(rows) == 3 and not any("best" in cells or "second" in cells for _, cells in rows)
    assert "fewer than 3 shared seeds: no difference can be called, so nothing of ours is marked best" in page
    assert "<th>σ \\ m</th>" in page


def test_figures_heatmap_scatter_and_copied_plots(report_paths):
    names = sorted(p.name for p in report_paths.figures)
    assert any(n.startswith("heatmap-1-d_em") for n in names)
    assert any(n.startswith("scatter-1-d_em") for n in names)
    copied = [n for n in names if n.endswith("embeddings.png")]
    assert len(copied) == 4  # where scale = 1: 2 heads x 2 margins, one (lowest-seed) run each
    assert not [n for n in names if n.endswith("evil.png")]  # not a PNG: never copied
    for path in report_paths.figures:
        assert path.parent == report_paths.out_dir / "figures"
        assert path.read_bytes().startswith(b"\x89PNG")
    page = report_paths.html.read_text(encoding="utf-8")
    assert page.count("<img ") == len(report_paths.figures)
    assert all(png_data_uri(p) is not None for p in report_paths.figures)
    assert not list((report_paths.out_dir / "figures").glob(".*"))  # no temporary files left behind


def test_column_headers_are_grouped_as_in_the_papers():
    from featspace.report.html import table_to_html
    from featspace.report.tables import MetricSpec, Stat, Table, TableColumn

    metric = MetricSpec("ncc_accuracy", "NCC")
    columns = [TableColumn(("Non-Norm.", "2x1"), metric, "ours"), TableColumn(("Non-Norm.", "2x1"), metric, "paper"),
               TableColumn(("Non-Norm.", "4x1"), metric, "ours"), TableColumn(("Norm. <x>", "2x1"), metric, "ours")]
    table = Table(title="T", corner="loss", row_labels=[("CE",)], columns=columns,
                  cells=[[Stat(0.8, 0.01, 3), Stat(0.75), None, Stat(0.9, 0.02, 3)]], ranks=[[None] * 4])
    page = table_to_html(table)
    assert '<th rowspan="3">loss</th><th colspan="3">Non-Norm.</th><th>Norm. &lt;x&gt;</th>' in page
    assert '<th colspan="2">2x1</th><th>4x1</th><th>2x1</th>' in page
    assert '<th>ours</th><th class="paper">paper</th><th>ours</th><th>ours</th>' in page
    assert '<td class="num paper">0.750</td>' in page and '<td class="num">-</td>' in page
