"""Rows of a ``--backend`` comparison, shared by the table and Markdown renderers."""

from __future__ import annotations

from .. import units
from ..backends import BackendComparison

HEADERS = ("Module", "Type", "Flops", "{b} Flops", "MAdd", "{b} MAdd", "Why they differ")


def headers(comparison: BackendComparison) -> list[str]:
    return [h.format(b=comparison.backend) for h in HEADERS]


def rows(comparison: BackendComparison) -> list[list[str]]:
    def show(value: float | None) -> str:
        return "—" if value is None else units.count(value)

    return [[r.name, r.type, units.count(r.flops), show(r.theirs_flops), units.count(r.madd), show(r.theirs_madd),
             r.reason] for r in comparison.rows]


def summary(comparison: BackendComparison, ours_total: int) -> str:
    if comparison.error:
        return f"{comparison.backend}: {comparison.error}; modelprof's counts above stand on their own"
    theirs = comparison.total_flops or 0
    gap = ours_total - theirs
    sign = "+" if gap > 0 else "-" if gap < 0 else "±"
    return (f"{comparison.backend} counts {units.count(theirs)} Flops in total, modelprof {units.count(ours_total)} "
            f"(modelprof {sign}{units.count(abs(gap))}; the last column says why, layer by layer)")
