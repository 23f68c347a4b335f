"""The ``sweep`` kind (``stats --sweep DIM=V1,V2,...``: totals at each value of a swept size, and how they grow)
and its view. No torch here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, ClassVar

from modelprof import metrics, units
from modelprof.reports.document import Cell, Column, Document, Note, Table
from modelprof.reports.serial import Saved, flat, key


def _read_totals(data: dict[str, Any]) -> dict[str, int]:
    return {k: data[k] for k in metrics.KEYS if k in data}


@dataclass(frozen=True)
class SweepPoint(Saved):
    """One swept value: the totals counted there, and the peak of live tensor memory."""

    value: int
    totals: Mapping[str, int] = field(metadata=flat(dict, _read_totals))
    peak: int | None = field(default=None, metadata=key("peak_memory"))


def growth_exponent(x1: float, y1: float, x2: float, y2: float) -> float | None:
    """k in y ~ x^k between two points (log-log slope); None where a value is 0."""
    if min(x1, x2, y1, y2) <= 0 or x1 == x2:
        return None
    return math.log(y2 / y1) / math.log(x2 / x1)


def growth_label(exponent: float | None) -> str:
    """``constant``, ``linear``, ``quadratic`` or ``~x^1.4``."""
    if exponent is None:
        return "—"
    for name, center in (("constant", 0), ("linear", 1), ("quadratic", 2), ("cubic", 3)):
        if abs(exponent - center) < 0.15:
            return name
    return f"~x^{exponent:.2f}"


def quadratic_through(points: list[tuple[int, int]]) -> tuple[float, float, float] | None:
    """(a, b, c) of y = a·x² + b·x + c through the last three points (exact rationals, then floats)."""
    if len(points) < 3:
        return None
    (x0, y0), (x1, y1), (x2, y2) = points[-3:]
    coefficients = [Fraction(0)] * 3
    for xi, yi, xj, xk in ((x0, y0, x1, x2), (x1, y1, x0, x2), (x2, y2, x0, x1)):
        scale = Fraction(yi, (xi - xj) * (xi - xk))  # Lagrange basis, expanded
        coefficients[0] += scale
        coefficients[1] -= scale * (xj + xk)
        coefficients[2] += scale * xj * xk
    return tuple(float(c) for c in coefficients)


@dataclass(frozen=True)
class SweepReport(Saved):
    """``stats --sweep DIM=V1,V2,...``: the totals at each value of a swept size (``batch`` or a named input size)."""

    model: str
    dim: str
    points: tuple[SweepPoint, ...]
    phases: tuple[str, ...] = ("forward",)

    KIND: ClassVar[str] = "sweep"

    def growth(self, key: str) -> float | None:
        """The growth exponent of a metric (or ``peak_memory``) over the last two points."""
        if len(self.points) < 2:
            return None
        a, b = self.points[-2], self.points[-1]
        ya = a.peak if key == "peak_memory" else a.totals.get(key, 0)
        yb = b.peak if key == "peak_memory" else b.totals.get(key, 0)
        return growth_exponent(a.value, ya or 0, b.value, yb or 0)

    def fit(self, key: str) -> tuple[float, float, float] | None:
        """The quadratic a·x² + b·x + c through the last three points of a metric."""
        return quadratic_through([(p.value, p.totals.get(key, 0)) for p in self.points])

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        keys = [m.key for m in metrics.in_phases(self.phases)] + ["peak_memory"]
        return {"growth": {key: self.growth(key) for key in keys},
                "quadratic_fit": {key: self.fit(key) for key in keys if key != "peak_memory"}}


# ----------------------------------------------------------------------------------------------------------------
# The view
# ----------------------------------------------------------------------------------------------------------------


def sweep_document(report: SweepReport, width: int = 40) -> Document:
    """Each total against the swept value, how it grows, and a chart of Flops."""
    shown = [m for m in metrics.in_phases(report.phases)]
    columns = (Column(report.dim, True), *(Column(m.title, True) for m in shown), Column("Peak memory", True))
    rows = tuple((Cell(str(p.value), p.value),
                  *(Cell(m.unit.show(p.totals.get(m.key, 0)), p.totals.get(m.key, 0)) for m in shown),
                  Cell("—" if p.peak is None else units.nbytes(p.peak), p.peak)) for p in report.points)
    growth = (f"{m.title} {growth_label(report.growth(m.key))}" for m in shown if m.key != "params")
    notes = [Note(f"Growth with {report.dim} (last two points): " + ", ".join(growth)
                  + f", peak memory {growth_label(report.growth('peak_memory'))}")]
    fit = report.fit("flops")
    if fit is not None:
        a, b, c = fit
        exact = all(round(a * p.value**2 + b * p.value + c) == p.totals.get("flops", 0) for p in report.points)
        quadratic = a * report.points[-1].value ** 2
        share = quadratic / report.points[-1].totals.get("flops", 1) if report.points[-1].totals.get("flops") else 0
        notes.append(Note(f"Flops = {a:.6g}·{report.dim}² + {b:.6g}·{report.dim} + {c:.6g} (through the last three "
                          f"points{'; exact at every point' if exact else ''}); the quadratic term is "
                          f"{100 * share:.0f} % at {report.dim} {report.points[-1].value}"))
    top = max((p.totals.get("flops", 0) for p in report.points), default=0) or 1
    notes.append(Note(f"Flops by {report.dim}:"))
    notes += [Note(f"{p.value:>8} {'█' * max(1, round(width * p.totals.get('flops', 0) / top))} "
                   f"{units.count(p.totals.get('flops', 0))}") for p in report.points]
    return Document(report.KIND, f"{report.model}: sweep of {report.dim}", (Table(columns, rows), *notes),
                    report.to_dict())
