"""Markdown: a heading, GitHub tables with humanized numbers (bold total row) and notes, ready for a pull
request."""

from __future__ import annotations

from modelprof.reports.document import Document, Note, Table


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(table: Table) -> list[str]:
    shown = [i for i, column in enumerate(table.columns) if not column.extra]
    lines = [f"**{_cell(table.title)}**", ""] if table.title else []
    lines.append(_line([_cell(table.columns[i].title) for i in shown]))
    lines.append(_line(["---:" if table.columns[i].numeric else "---" for i in shown]))
    lines += [_line([_cell(row[i].text) for i in shown]) for row in table.rows]
    if table.total:
        lines.append(_line([f"**{_cell(table.total[i].text)}**" if table.total[i].text else "" for i in shown]))
    return lines


def render(document: Document, color: bool = False) -> str:
    """``### title``, then each table and note separated by blank lines (consecutive notes stay together)."""
    lines = [f"### {document.title}"] if document.title else []
    previous = None
    for block in document.blocks:
        if lines and not (isinstance(block, Note) and isinstance(previous, Note)):
            lines.append("")
        lines += _table(block) if isinstance(block, Table) else [block.text]
        previous = block
    return "\n".join(lines) + "\n"
