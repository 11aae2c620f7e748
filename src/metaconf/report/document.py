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
_MD_LEADING = re.compile(r"^([>=]|[#+\-*](?=\s|$)|\d+(?=[.)](\s|$)))")  # special only at the start (headings, lists, quotes)

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1,h2,h3{line-height:1.2} table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f2f2f2}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
figure{margin:1.5em 0} figure img{max-width:100%} figcaption{font-size:0.9em;color:#555}
p.note{color:#555;font-size:0.92em}
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
    headers: list[str]
    rows: list[list[str]]


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
    return html.escape(flat, quote=True)


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


def to_html(title: str, blocks: list[Block]) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(title)}</title>", f"<style>{CSS}</style></head><body>", f"<h1>{esc(title)}</h1>"]
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
            head = "".join(f"<th>{esc(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if _is_number(c) else f"<td>{esc(c)}</td>"
                                 for c in row) + "</tr>"
                for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png.read_bytes()).decode("ascii")
            out.append(f'<figure><img alt="{esc(block.caption)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{esc(block.caption)}</figcaption></figure>")
        elif isinstance(block, Preformatted):
            out.append(f"<pre>{esc(block.text)}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
