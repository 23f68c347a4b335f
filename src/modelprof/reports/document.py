"""The neutral document every report kind becomes before it is rendered: a title, tables and notes.

A view (beside its kind, listed in :mod:`modelprof.reports.catalog`) turns a report into a :class:`Document`; a
format (:mod:`modelprof.render`) renders any document. Adding a format touches one file, and so does adding a kind of
report. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelprof import units


@dataclass(frozen=True)
class Cell:
    """One table cell: the text people read, and the exact value scripts read (the text when None)."""

    text: str
    value: Any = None

    @property
    def exact(self) -> Any:
        return self.text if self.value is None else self.value


@dataclass(frozen=True)
class Column:
    """A table column: its title (units in the title, ``Mean [ms]``), whether it holds numbers, and whether it is
    a detail for scripts (``extra``: CSV writes it, the tables people read leave it out)."""

    title: str
    numeric: bool = False
    extra: bool = False


@dataclass(frozen=True)
class Table:
    """Rows of cells under columns, an optional title and an optional total row."""

    columns: tuple[Column, ...]
    rows: tuple[tuple[Cell, ...], ...]
    title: str = ""
    total: tuple[Cell, ...] | None = None


@dataclass(frozen=True)
class Note:
    """A line of text under or between tables."""

    text: str


Block = Table | Note


@dataclass(frozen=True)
class Document:
    """What a report says, in no format: ``kind`` (stats, bench, compare, check), a title, tables and notes in
    order, and ``data``, the report's JSON form."""

    kind: str
    title: str
    blocks: tuple[Block, ...] = ()
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def tables(self) -> tuple[Table, ...]:
        return tuple(b for b in self.blocks if isinstance(b, Table))


def ms_cell(seconds: float) -> Cell:
    """A time in ms: ``12.345`` read, the exact ms for scripts."""
    return Cell(units.milliseconds(seconds), seconds * 1e3)


def rate_cell(value: float | None, unit: str) -> Cell:
    """``1.23 GFLOP/s`` style: counts per second with a K/M/G/T prefix (``—`` when unknown)."""
    return Cell("—" if value is None else f"{units.count(value)}{unit}", value)
