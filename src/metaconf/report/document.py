"""A report as a list of plain-text blocks, rendered to Markdown and to self-contained HTML.

Blocks carry untrusted text (model outputs, dataset names, config values); escaping happens here, at render
time, for every piece of text: html.escape for HTML, backslash escapes plus html.escape for Markdown.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")  # special anywhere in a line (links, emphasis, tables, code)
_MD_LEADING = re.compile(
    r"^([>=]|[#+\-*](?=\s|$)|\d+(?=[.)](\s|$)))"
)  # special only at the start (headings, lists, quotes)

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1300px;margin:1.2em auto;padding:0 1em;
color:#222;line-height:1.4} h1{margin:0.3em 0}
h1,h2,h3{line-height:1.2} table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
figure{margin:1.5em 0} figure img{max-width:100%} figcaption{font-size:0.9em;color:#555}
p.note{color:#555;font-size:0.92em}
table.findings{font-size:0.74em;margin:0.4em 0;line-height:1.25} table.findings td,table.findings th{padding:2px 4px}
table.findings tr.first td{border-top:2px solid #888} td.claim{min-width:13em;max-width:17em;font-weight:600}
td.nowrap{white-space:nowrap} td.for{background:#d9f0d3} td.against{background:#f6d5d0}
td.undefined{color:#999} td.blank{background:#fafafa} td.supported{background:#b8e0b0;font-weight:600}
td.contradicted{background:#f0b8ae;font-weight:600} td.noevidence{color:#555}
"""


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str
    note: bool = False


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    """Rows of text cells; a newline in a cell is a line break in HTML, a space in Markdown. `styles` (per cell)
    and `row_styles` (per row) are CSS class names from CSS, used by the HTML only."""

    headers: list[str]
    rows: list[list[str]]
    styles: list[list[str]] | None = None
    row_styles: list[str] | None = None
    css_class: str = ""
    rowspans: list[list[int]] | None = None  # HTML: n > 1 spans n rows, 0 = covered by a cell above (skipped)


@dataclass
class Figure:
    caption: str
    png: Path
    pdf: Path | None = None


@dataclass
class Preformatted:
    text: str


Block = Heading | Paragraph | Bullets | Table | Figure | Preformatted


def md_escape(text: object) -> str:
    """One line of Markdown that shows `text` literally: no table breaks, links, emphasis or raw HTML."""
    flat = _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    flat = _MD_LEADING.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1), flat)
    return html.escape(flat, quote=False)  # no tag can open (< and > are escaped), so quotes stay readable


def _is_number(text: str) -> bool:
    return bool(re.fullmatch(r"[+\-−]?[0-9.]+( \([^)]*\))?|—", text.strip()))


def to_markdown(title: str, blocks: list[Block], md_dir: Path) -> str:
    out = [f"# {md_escape(title)}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * min(block.level + 1, 6) + " " + md_escape(block.text), ""]
        elif isinstance(block, Paragraph):
            out += [("*" + md_escape(block.text) + "*") if block.note else md_escape(block.text), ""]
        elif isinstance(block, Bullets):
            out += [f"- {md_escape(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(md_escape(h) for h in block.headers) + " |")
            out.append("|" + "---|" * len(block.headers))
            out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            rel = block.png.relative_to(md_dir).as_posix() if block.png.is_relative_to(md_dir) else block.png.name
            out += [f"![{md_escape(block.caption)}]({rel})", "", md_escape(block.caption), ""]
        elif isinstance(block, Preformatted):
            # an indented code block: shown literally, and nothing in it can end the block early
            out += ["    " + line for line in (block.text.splitlines() or [""])] + [""]
    return "\n".join(out).rstrip() + "\n"


def _lines(text: str) -> str:
    return "<br>".join(html.escape(line) for line in str(text).split("\n"))


def _html_table(table: Table) -> str:
    def attr(classes: str) -> str:
        names = " ".join(c for c in classes.split() if re.fullmatch(r"[a-z][a-z0-9-]*", c))
        return f' class="{names}"' if names else ""

    head = "".join(f"<th>{_lines(h)}</th>" for h in table.headers)
    body = []
    for i, row in enumerate(table.rows):
        styles = table.styles[i] if table.styles else [""] * len(row)
        spans = table.rowspans[i] if table.rowspans else [1] * len(row)
        cells = "".join(
            f"<td{attr(('num ' if _is_number(c) else '') + style)}"
            f"{f' rowspan={span}' if span > 1 else ''}>{_lines(c)}</td>"
            for c, style, span in zip(row, styles, spans)
            if span
        )
        body.append(f"<tr{attr(table.row_styles[i] if table.row_styles else '')}>{cells}</tr>")
    return f"<table{attr(table.css_class)}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(title: str, blocks: list[Block]) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(block.level + 1, 6)
            out.append(f"<h{level}>{esc(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            cls = ' class="note"' if block.note else ""
            out.append(f"<p{cls}>{esc(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            out.append(_html_table(block))
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{esc(block.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Preformatted):
            out.append(f"<pre>{esc(block.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
