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
    return (f"{comparison.backend} counts {units.count(theirs)} multiply-accumulates in total, modelprof "
            f"{units.count(ours_total)} ({units.count(ours_total - theirs)} that {comparison.backend} misses or "
            "counts differently, see the last column)")
