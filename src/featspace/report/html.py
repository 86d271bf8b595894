"""A report as one self-contained HTML page: inline CSS, figures embedded as base64 ``data:`` URIs, no script,
no external reference, so it opens anywhere and can be mailed or committed alone.

Reports read runs other people made (labels, run ids, suite files): every piece of text written into the page
goes through ``html.escape`` (attributes included), and images are embedded only from PNG files whose
signature is checked, never linked.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from featspace.report.model import Report
from featspace.report.tables import Table, statistics_rows

__all__ = ["report_to_html", "table_to_html", "png_data_uri"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2em auto;
       max-width: 1280px; padding: 0 1em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { padding: 0.28em 0.65em; border-bottom: 1px solid #e4e4e4; }
th { background: #f4f6f8; text-align: center; font-weight: 600; border: 1px solid #e4e4e4; }
code { background: #f2f2f2; padding: 0 0.25em; border-radius: 3px; font-size: 0.92em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.row { text-align: left; white-space: nowrap; font-weight: 500; }
th.paper, td.paper { background: #fbf7ee; color: #5a4a1f; }
td.best { font-weight: 700; }
td.second { text-decoration: underline; }
.caption { color: #555; font-size: 0.85em; margin-top: 0.2em; }
.scroll { overflow-x: auto; }
table.wide { font-size: 0.76em; }
table.wide th, table.wide td { padding: 0.22em 0.4em; }
table.env td { border: none; padding: 0.1em 0.8em 0.1em 0; font-size: 0.9em; }
.note { background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.4em 0.8em; margin: 0.6em 0; }
figure { display: inline-block; margin: 0.6em 1em 0.6em 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; border: 1px solid #eee; }
figure.small img { max-width: 360px; }
figcaption { font-size: 0.8em; color: #555; max-width: 360px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def png_data_uri(path: Path) -> str | None:
    """``data:image/png;base64,...`` for a PNG file; None when the file is missing or not a PNG."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(_PNG_SIGNATURE):
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _header_rows(table: Table) -> list[str]:
    """Column headers as the papers draw them: one row per column axis, equal neighbours merged (colspan),
    then a row naming the metric and marking the paper's columns where the table needs it."""
    columns = table.columns
    depth = max((len(c.labels) for c in columns), default=0)
    has_paper = any(c.source == "paper" for c in columns)
    last_row = table.multi_metric or has_paper or depth == 0
    rows: list[str] = []
    for level in range(depth):
        cells = []
        start = 0
        while start < len(columns):
            end = start + 1
            while end < len(columns) and columns[end].labels[:level + 1] == columns[start].labels[:level + 1]:
                end += 1
            span = f' colspan="{end - start}"' if end - start > 1 else ""
            cells.append(f"<th{span}>{_e(columns[start].labels[level])}</th>")
            start = end
        rows.append("".join(cells))
    if last_row:
        cells = []
        for column in columns:
            text = column.metric.name if table.multi_metric or depth == 0 else "ours"
            if column.source == "paper":
                text = "paper" if not table.multi_metric and depth else f"{text} (paper)"
            css = ' class="paper"' if column.source == "paper" else ""
            cells.append(f"<th{css}>{_e(text)}</th>")
        rows.append("".join(cells))
    rowspan = f' rowspan="{len(rows)}"' if len(rows) > 1 else ""
    rows[0] = f"<th{rowspan}>{_e(table.corner)}</th>" + rows[0]
    return [f"<tr>{row}</tr>" for row in rows]


def table_to_html(table: Table) -> str:
    """One table: best cell bold, second underlined, paper columns tinted, caption below."""
    body = []
    for r in range(len(table.row_labels)):
        cells = [f'<td class="row">{_e(table.row_name(r))}</td>']
        for c, column in enumerate(table.columns):
            classes = ["num"]
            if column.source == "paper":
                classes.append("paper")
            rank = table.ranks[r][c]
            if rank == 1:
                classes.append("best")
            elif rank == 2:
                classes.append("second")
            cells.append(f'<td class="{" ".join(classes)}">{_e(table.text(r, c))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    wide = ' class="wide"' if len(table.columns) > 9 else ""
    parts = [f"<h2>{_e(table.title)}</h2>", f'<div class="scroll"><table{wide}>',
             "<thead>" + "".join(_header_rows(table)) + "</thead>", "<tbody>", *body, "</tbody></table></div>",
             f'<p class="caption">{_e(table.caption)}</p>']
    if table.note:
        parts.append(f'<p class="caption">{_paragraph(table.note)}</p>')
    statistics = statistics_rows(table)
    if statistics is not None:
        header, rows, caption = statistics
        head = "".join(f"<th>{_e(h)}</th>" for h in header)
        lines = ["<tr>" + f'<td class="row">{_e(row[0])}</td>' + "".join(f'<td class="num">{_e(x)}</td>'
                                                                         for x in row[1:]) + "</tr>" for row in rows]
        parts += [f'<div class="scroll"><table class="wide stats"><thead><tr>{head}</tr></thead><tbody>',
                  *lines, "</tbody></table></div>", f'<p class="caption">{_e(caption)}</p>']
    return "\n".join(parts)


def _paragraph(text: str) -> str:
    """Escaped text with `backquoted` spans as <code> (they come from suite notes written in Markdown style)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(text))


def report_to_html(report: Report) -> str:
    """The whole report as one HTML document (UTF-8)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(report.title)}</title>", f"<style>{_CSS}</style></head><body>",
             f"<h1>{_e(report.title)}</h1>"]
    if report.description:
        parts.append(f"<p>{_e(report.description)}</p>")
    if report.source:
        parts.append(f"<p><em>Source:</em> {_e(report.source)}</p>")
    rows = [f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in report.environment.items()]
    rows.append(f"<tr><td>finished runs</td><td>{len(report.runs)}</td></tr>")
    parts.append('<table class="env">' + "".join(rows) + "</table>")
    if report.notes:
        parts.append(f"<p>{_paragraph(report.notes)}</p>")
    for warning in report.warnings:
        parts.append(f'<p class="note">{_e(warning)}</p>')
    for table in report.tables:
        parts.append(table_to_html(table))
    for section in report.sections:
        parts.append(f"<h2>{_e(section.title)}</h2>")
        small = len(section.figures) > 1
        for figure in section.figures:
            uri = png_data_uri(figure.path)
            if uri is None:
                continue
            css = ' class="small"' if small else ""
            parts.append(f'<figure{css}><img src="{uri}" alt="{_e(figure.caption)}">'
                         f"<figcaption>{_e(figure.caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
