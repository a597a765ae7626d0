"""A diagnose report as plotly figures and as one self-contained HTML file.

`diagnose_figures` turns a `DiagnoseReport` into plotly figure specs
(`{"data": [...], "layout": {...}}`, plain JSON): strict-set coverage per category with the
teachers side by side, and the corpus mass each category loses to GOLD's partition.
`diagnose_html` writes them with the report's tables into one HTML page that carries plotly.js
inline, so it opens without a network. Every string from a tokenizer or a user is escaped.
Left out: computing anything (the report is the only input) and styling beyond a few rules.
plotly is imported when a function runs, so the library itself does not need it.
"""

from __future__ import annotations

import html
import json

from xtoken_align.diagnose.report import (
    LOSS_NAMES,
    CategoryAudit,
    CorpusCategory,
    DiagnoseReport,
    TeacherDiagnosis,
    w_row_text,
)
from xtoken_align.errors import XTokenError

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }
td:last-child { white-space: normal; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.ok { color: #1a7f37; } .warn { color: #9a6700; } .critical { color: #cf222e; font-weight: 600; }
code { background: #f4f4f4; padding: 0 3px; }
details { margin-bottom: 1.5em; }
"""


def diagnose_figures(report: DiagnoseReport) -> list[dict]:
    """Plotly figure specs: strict coverage per category (always), corpus mass (with a corpus)."""
    go = _plotly().graph_objects
    teachers = report.teachers
    critical = set(report.critical)
    categories = list(teachers[0].categories) if teachers else []
    ticks = [f"<b>{c}</b>" if c in critical else c for c in categories]
    coverage = go.Figure(
        [
            go.Bar(
                name=t.teacher.name,
                x=categories,
                y=[t.categories[c].strict / t.categories[c].total for c in categories],
                # critical categories carry their share as text, red below the warn share: a 0% bar
                # has no height, its label still shows
                text=[_share_label(t.categories[c], c in critical) for c in categories],
                textposition="outside",
                textfont={"color": [_share_colour(t.categories[c], report.thresholds.warn) for c in categories]},
                cliponaxis=False,
                customdata=[
                    [getattr(t.categories[c], k) for k in ("strict", "total", "common", "covered")] for c in categories
                ],
                hovertemplate="%{x}: %{customdata[0]:,} of %{customdata[1]:,} strict<br>"
                "H-KL common %{customdata[2]:,}, covered %{customdata[3]:,}<extra>%{fullData.name}</extra>",
            )
            for t in teachers
        ]
    )
    coverage.update_layout(
        title=f"Student ({report.student.name}) tokens in GOLD's strict set, per category (critical in bold)",
        barmode="group",
        template="plotly_white",
        yaxis={"tickformat": ".0%", "range": [0, 1.1], "title": "share of the category's tokens"},
        xaxis={"tickvals": categories, "ticktext": ticks},
    )
    figures = [coverage]
    with_corpus = [t for t in teachers if t.corpus]
    if with_corpus:
        corpus_name = with_corpus[0].corpus.name
        lost = [c for c in categories if any(_corpus_category(t, c).uncommon for t in with_corpus)]
        mass = go.Figure(
            [
                go.Bar(
                    name=t.teacher.name,
                    x=lost,
                    y=[_corpus_category(t, c).suppressed_mass for c in lost],
                    hovertemplate="%{x}: %{y:.2%} of next tokens<extra>%{fullData.name}</extra>",
                )
                for t in with_corpus
            ]
        )
        mass.update_layout(
            title="Student next tokens outside GOLD's strict set, by category"
            + (f" (corpus {corpus_name})" if corpus_name else ""),
            barmode="group",
            template="plotly_white",
            yaxis={"tickformat": ".1%", "title": "share of all student tokens"},
            xaxis={"tickvals": lost, "ticktext": [f"<b>{c}</b>" if c in critical else c for c in lost]},
        )
        figures.append(mass)
    return [json.loads(figure.to_json()) for figure in figures]


def _share_label(audit: CategoryAudit, critical: bool) -> str:
    """The strict share of a critical category as bar text, e.g. `0%`; other categories get none."""
    return f"{audit.strict / audit.total:.0%}" if critical else ""


def _share_colour(audit: CategoryAudit, warn: float) -> str:
    return "#b3261e" if audit.strict / audit.total < warn else "#1d2430"


def diagnose_html(report: DiagnoseReport) -> str:
    """One HTML page: recommendations, figures, and every teacher's tables; plotly.js inline."""
    get_plotlyjs = _plotly().offline.get_plotlyjs
    e = html.escape
    student = report.student
    parts = [
        f"<h1>xtoken-align diagnose: student {e(student.name)} ({student.size:,} tokens)</h1>",
        f"<p>critical categories: {e(', '.join(report.critical))}</p>",
        "<h2>Recommendations</h2>",
        _table(
            ["teacher", "tokens", "loss", "reason"],
            [[t.teacher.name, t.teacher.size, LOSS_NAMES[t.recommendation], t.reason] for t in report.teachers],
        ),
    ]
    figures = diagnose_figures(report)
    parts += [f'<div id="figure-{k}" style="height:460px"></div>' for k in range(len(figures))]
    for t in report.teachers:
        parts += [f"<h2>{e(t.teacher.name)} ({t.teacher.size:,} tokens): {LOSS_NAMES[t.recommendation]}</h2>"]
        parts += [f"<p>{e(t.reason)}</p>", _category_table(t.categories)]
        corpus = t.corpus
        if corpus:
            parts.append(
                f"<p>corpus {e(corpus.name)}: {corpus.texts:,} texts, {corpus.student_tokens:,} student "
                f"tokens; {corpus.suppressed_mass:.2%} outside GOLD's strict set (critical categories "
                f"{corpus.critical_suppressed_mass:.2%}); {corpus.not_one_to_one:.2%} of positions in chunks "
                "that are not 1:1</p>"
            )
            rows = [[k, v.tokens, v.uncommon, f"{v.suppressed_mass:.2%}"] for k, v in corpus.categories.items()]
            parts.append(_table(["category", "tokens", "outside strict set", "share of all tokens"], rows))
        sample = ", ".join(f"<code>{e(repr(s.display))}</code> ({e(s.category)})" for s in t.suppressed_sample)
        parts.append(f"<p>pushed down in <q>{e(report.sample_text)}</q>: {sample or 'none'}</p>")
        unmatched = t.unmatched_critical
        rows = [[u.id, repr(u.display), u.category, w_row_text(u)] for u in unmatched]
        parts.append(f"<details><summary>{len(unmatched):,} unmatched critical tokens</summary>")
        parts += [_table(["id", "token", "category", "W row"], rows), "</details>"]
    plots = "\n".join(
        f'Plotly.newPlot("figure-{k}", {_script_json(f["data"])}, {_script_json(f["layout"])}, '
        '{"responsive": true, "displaylogo": false});'
        for k, f in enumerate(figures)
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>xtoken-align diagnose: {e(student.name)}</title><style>{_STYLE}</style>\n"
        f"<script>{get_plotlyjs()}</script></head>\n<body>\n" + "\n".join(parts) + f"\n<script>{plots}</script>\n"
        "</body></html>\n"
    )


def _plotly():
    try:
        import plotly.graph_objects
        import plotly.offline
    except ImportError:
        raise XTokenError("figures and HTML reports need plotly: pip install 'xtoken-align[web]'") from None
    return plotly


def _corpus_category(teacher: TeacherDiagnosis, category: str) -> CorpusCategory:
    """A category's corpus counts; zero where the corpus has no token of it."""
    return teacher.corpus.categories.get(category) or CorpusCategory(
        tokens=0, uncommon=0, suppressed_mass=0.0, not_one_to_one=0
    )


def _category_table(categories: dict[str, CategoryAudit]) -> str:
    rows = [[name, c.total, c.strict, c.exact, c.common, c.covered, c.severity] for name, c in categories.items()]
    return _table(["category", "total", "strict (GOLD)", "exact", "H-KL common", "covered", "severity"], rows)


def _table(headers: list[str], rows: list[list[object]]) -> str:
    """An HTML table; every cell escaped, integers right-aligned with thousands separators."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for value in row:
            if isinstance(value, int):
                cells.append(f'<td class="num">{value:,}</td>')
            elif value in ("ok", "warn", "critical"):
                cells.append(f'<td class="{value}">{value}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _script_json(value: object) -> str:
    """JSON safe inside <script>: no `<`, `>` or `&` that could close the element.

    >>> _script_json({"t": "</script>"})
    '{"t": "\\\\u003c/script\\\\u003e"}'
    """
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
