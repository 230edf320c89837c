"""The run report's HTML: one static page, figures as PNG files beside it, every string from the data escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

STYLE = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1100px; color: #222; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.8em; max-width: 640px; }
img { max-width: 100%; border: 1px solid #ddd; }
p.note { color: #666; font-size: 0.85em; }
tr.error td:first-child { color: #b00; }
"""

SECTIONS = (("summary", "Summary"), ("matches", "Accepted matches"), ("alignments", "Alignments"),
            ("structure", "Self-similarity and segments"), ("clusters", "Version clusters"),
            ("distributions", "Distributions"), ("errors", "Errors"))


def cell(value: object) -> str:
    """One table cell, numbers right-aligned (floats to 3 decimals), every value escaped."""
    if isinstance(value, bool) or value is None:
        return f"<td>{escape('' if value is None else str(value))}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.3f}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], max_rows: int, what: str = "rows",
          row_classes: Sequence[str] | None = None) -> str:
    """An HTML table of at most ``max_rows`` rows, with a note saying how many were left out."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows[:max_rows]):
        cls = f' class="{escape(row_classes[i])}"' if row_classes else ""
        body.append(f"<tr{cls}>" + "".join(cell(v) for v in row) + "</tr>")
    html = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    if len(rows) > max_rows:
        html += note(f"The first {max_rows} of {len(rows)} {what} are shown; `mirmatch query` lists them all.")
    return html


def note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def paragraph(text: str) -> str:
    return f"<p>{escape(text)}</p>"


def figure(src: str, kind: str, caption: str, anchor: str | None = None) -> str:
    """A PNG figure next to the page (``src`` relative), its caption escaped; ``kind`` is its CSS class."""
    anchor_attr = f' id="{escape(anchor)}"' if anchor else ""
    return (f'<figure{anchor_attr}><img class="fig {escape(kind)}" src="{escape(src)}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def definition_list(items: Sequence[tuple[str, object]]) -> str:
    """A two-column table of names and values."""
    rows = "".join(f"<tr><th>{escape(k)}</th>{cell(v)}</tr>" for k, v in items)
    return f"<table>{rows}</table>"


def page(title: str, sections: dict[str, str], table_links: Sequence[str]) -> str:
    """The whole page: a navigation bar, then each of SECTIONS whose HTML is in ``sections``."""
    nav = " ".join(f'<a href="#{key}">{escape(name)}</a>' for key, name in SECTIONS if key in sections)
    tables = " ".join(f'<a href="../{escape(t)}/">{escape(t)}</a>' for t in table_links)
    body = "".join(f'<section id="{key}"><h2>{escape(name)}</h2>{sections[key]}</section>'
                   for key, name in SECTIONS if key in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><nav>{nav}</nav>"
            f"<p>Tables (Parquet folders): {tables}</p>{body}</body></html>\n")
