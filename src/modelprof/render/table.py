"""The rich table for people, in the spirit of torchstat's report: boxed tables, a footer total, notes below."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from modelprof.reports.document import Document, Table


def _console(buffer: io.StringIO, color: bool, width: int | None) -> Console:
    """A console writing to ``buffer``: colour only for a terminal, 200 columns unless told otherwise."""
    return Console(file=buffer, force_terminal=color, color_system="auto" if color else None, width=width or 200,
                   highlight=False)


def _rich(table: Table, title: str) -> RichTable:
    rich = RichTable(title=Text(title) if title else None, show_footer=table.total is not None)
    shown = [i for i, column in enumerate(table.columns) if not column.extra]
    for index in shown:
        column = table.columns[index]
        footer = Text(table.total[index].text) if table.total else ""
        rich.add_column(Text(column.title), footer=footer, justify="right" if column.numeric else "left",
                        overflow="fold")
    for row in table.rows:
        rich.add_row(*(Text(row[i].text) for i in shown))
    return rich


def render(document: Document, color: bool = False, width: int | None = None) -> str:
    """Tables boxed, the first untitled one titled with the document's title; notes as plain lines."""
    buffer = io.StringIO()
    console = _console(buffer, color, width)
    title = document.title
    first = document.blocks[0] if document.blocks else None
    if title and not (isinstance(first, Table) and not first.title):
        console.print(Text(title))
        title = ""
    for block in document.blocks:
        if isinstance(block, Table):
            console.print(_rich(block, block.title or title))
            title = ""
        else:
            console.print(Text(block.text))
    return buffer.getvalue()
