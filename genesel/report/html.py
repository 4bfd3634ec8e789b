"""Render the report as one self-contained HTML page (figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from genesel import __version__

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1150px;
       color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.8em; }
p.meta { color: #666; margin-top: 0; }
ul.headline { background: #f4f7fb; border-left: 4px solid #4c72b0; padding: 0.7em 1em 0.7em 2em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; text-align: left; }
td:first-child, th:first-child, td.text { text-align: left; }
img { max-width: 100%; }
p.note { color: #555; font-size: 0.92em; }
p.lead { font-size: 1.3em; background: #f4f7fb; border-left: 5px solid #4c72b0; padding: 0.6em 0.9em; margin: 0.5em 0; }
"""


@dataclass
class ReportSection:
    """A titled part of the report: paragraphs, figures (PNG bytes) and tables, in that order."""

    title: str
    paragraphs: Sequence[str] = ()
    figures: Mapping[str, bytes] = field(default_factory=dict)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    bullets: Sequence[str] = ()
    lead: bool = False


def embed_png(png: bytes, *, alt: str) -> str:
    """An ``<img>`` tag carrying the PNG inline."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(frame: pd.DataFrame, *, float_format: str = "{:.4g}") -> str:
    """A plain HTML table of ``frame`` (index not shown unless named)."""
    show_index = any(name is not None for name in frame.index.names)
    columns = ([*frame.index.names] if show_index else []) + [str(c) for c in frame.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for index, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = list(index if isinstance(index, tuple) else (index,)) if show_index else []
        cells += list(values)
        rows.append("<tr>" + "".join(_cell(v, float_format) for v in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def render_report(title: str, sections: Sequence[ReportSection], *, subtitle: str = "") -> str:
    """The whole report page as an HTML string."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(subtitle)} &middot; genesel {html.escape(__version__)}</p>',
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.lead:
            parts.extend(f'<p class="lead">{html.escape(b)}</p>' for b in section.bullets)
        elif section.bullets:
            parts.append(
                '<ul class="headline">'
                + "".join(f"<li>{html.escape(b)}</li>" for b in section.bullets)
                + "</ul>"
            )
        parts.extend(f"<p>{html.escape(p)}</p>" for p in section.paragraphs)
        for name, png in section.figures.items():
            parts.append(embed_png(png, alt=name))
        for caption, frame in section.tables.items():
            if frame.empty:
                continue
            if caption:
                parts.append(f'<p class="note">{html.escape(caption)}</p>')
            parts.append(table_html(frame))
    parts.append("</body></html>")
    return "\n".join(parts)


def _cell(value: object, float_format: str) -> str:
    numeric = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    style = "" if numeric else ' class="text"'
    return f"<td{style}>{html.escape(_format(value, float_format))}</td>"


def _format(value: object, float_format: str) -> str:
    if isinstance(value, float | np.floating):
        return "" if np.isnan(value) else float_format.format(value)
    if value is None:
        return ""
    return str(value)
