"""The columns every tabular renderer shows, in order, with their header and how a row's value is read."""

from __future__ import annotations

from collections.abc import Callable

from .. import units
from ..report import LayerCost

#: (header, humanized getter, exact getter)
COLUMNS: tuple[tuple[str, Callable[[LayerCost], str], Callable[[LayerCost], object]], ...] = (
    ("Module", lambda r: r.name, lambda r: r.name),
    ("Type", lambda r: r.type, lambda r: r.type),
    ("Input shape", lambda r: units.shapes(r.input_shape), lambda r: units.shapes(r.input_shape)),
    ("Output shape", lambda r: units.shapes(r.output_shape), lambda r: units.shapes(r.output_shape)),
    ("Params", lambda r: units.count(r.params), lambda r: r.params),
    ("MAdd", lambda r: units.count(r.madd), lambda r: r.madd),
    ("Flops", lambda r: units.count(r.flops), lambda r: r.flops),
    ("MemRead", lambda r: units.nbytes(r.mem_read), lambda r: r.mem_read),
    ("MemWrite", lambda r: units.nbytes(r.mem_write), lambda r: r.mem_write),
)

NUMERIC_FROM = 4  # columns from here on are numbers (right-aligned)
