"""The ``fit`` kind (the largest batch, or the longest input, whose peak fits a memory) and its view. No torch
here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

from modelprof import units
from modelprof.reports.document import Cell, Column, Document, Note, Table
from modelprof.reports.serial import Saved, key, omit_none


class FitPoint(NamedTuple):
    """A size measured and the peak there."""

    batch: int
    peak: int


class FitLine(NamedTuple):
    """One phase's line through its peaks: ``fixed + per_sample · size``."""

    phase: str
    fixed: int
    per_sample: int


@dataclass(frozen=True)
class Fit(Saved):
    """One answer of ``modelprof fit``: peaks measured on the meta device at a few sizes of ``dim`` (the batch, or a
    named input size), the linear memory model drawn through them (``fixed + per_sample · size``), and the largest
    size whose peak fits ``memory`` (``max_batch``; ``max_value`` in JSON, and ``max_batch`` too when the batch was
    fitted)."""

    memory: int
    train: bool
    peaks: tuple[FitPoint, ...]
    fixed: int
    per_sample: int
    max_batch: int = field(metadata=key("max_value"))
    peak_at_max: int
    memory_source: str = ""
    lines: tuple[FitLine, ...] = ()  #: one for each phase
    dim: str = "batch"  #: what was fitted: the batch, or a named input size (``seq``)
    amp: bool = False  #: counted under autocast

    def model_peak(self, batch: int) -> int:
        """The memory model at ``batch``: the highest of the phases' lines."""
        return max((line.fixed + line.per_sample * batch for line in self.lines),
                   default=self.fixed + self.per_sample * batch)

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"max_batch": self.max_batch} if self.dim == "batch" else {}


class GpuPoint(NamedTuple):
    """A job size counted and one GPU's peak there."""

    gpus: int
    peak: int


@dataclass(frozen=True)
class GpuFit(Saved):
    """The fewest GPUs of a sharded job on which ``batch`` per GPU fits ``memory``: rank 0's peak (it holds the
    largest shards) counted on meta at job sizes of ``layout`` (the TP degree times a power of two, up to 4,096),
    from the smallest up; ``fewest`` is the first that fits. A pipelined job's (``stages``, else None): the highest
    of each stage's first rank's peaks, at the TP degree times the stages times a power of two, ``batch`` a step's
    per data-parallel rank."""

    memory: int
    batch: int
    train: bool
    layout: str
    peaks: tuple[GpuPoint, ...]
    fewest: int
    memory_source: str = ""
    stages: int | None = field(default=None, metadata=omit_none())

    @property
    def peak_at_fewest(self) -> int:
        """One GPU's peak on the fewest GPUs (counted: it is among ``peaks``)."""
        return dict(self.peaks)[self.fewest]

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"peak_at_fewest": self.peak_at_fewest}


@dataclass(frozen=True)
class FitReport(Saved):
    """Everything ``modelprof fit`` answered for one model: one fit, or a batch and a length; or, for a sharded
    job of open size, the fewest GPUs (``gpus``)."""

    KIND: ClassVar[str] = "fit"

    model: str
    fits: tuple[Fit, ...]
    gpus: GpuFit | None = field(default=None, metadata=omit_none())


# ----------------------------------------------------------------------------------------------------------------
# The view
# ----------------------------------------------------------------------------------------------------------------


def fit_document(fits: FitReport) -> Document:
    """For each fit: the peaks measured, the memory model through them, the largest size and its peak."""
    blocks: list = []
    for report in fits.fits:
        unit = "sample" if report.dim in ("batch", "microbatch") else "position"
        # --pp: each phase's peak is the highest stage's
        counted = "every pipeline stage counted on the meta device" if report.dim == "microbatch" else \
            "counted on the meta device"
        columns = (Column(report.dim.capitalize(), True), Column("Peak memory", True), Column("Memory model", True))
        rows = tuple((Cell(str(b), b), Cell(units.nbytes(p), p),
                      Cell(units.nbytes(report.model_peak(b)), report.model_peak(b))) for b, p in report.peaks)
        step = ("training step" if report.train else "run") + (" under autocast" if report.amp else "")
        phases = "; ".join(f"{phase} {units.nbytes(f)} + {units.nbytes(k)} per {unit}" for phase, f, k in report.lines)
        where = f" ({report.memory_source})" if report.memory_source else ""
        blocks += [
            Table(columns, rows, title=f"Largest {report.dim}" if len(fits.fits) > 1 else ""),
            Note(f"Memory model ({step}, the highest of each phase's line, {counted}): {phases}"),
            Note(f"Largest {report.dim} that fits {units.nbytes(report.memory)}{where}: {report.max_batch:,}, "
                 f"peak {units.nbytes(report.peak_at_max)}"),
        ]
    if fits.gpus is not None:
        g = fits.gpus
        columns = (Column("GPUs", True), Column("Peak memory per GPU", True))
        rows = tuple((Cell(f"{n:,}", n), Cell(units.nbytes(p), p)) for n, p in g.peaks)
        where = f" ({g.memory_source})" if g.memory_source else ""
        per, counted = (("data-parallel rank", f"the highest of the {g.stages} stages' first ranks' peaks") if g.stages
                        else ("GPU", "rank 0's peak"))
        blocks += [
            Table(columns, rows, title=f"Fewest GPUs ({g.layout})"),
            Note(f"Fewest GPUs on which batch {g.batch} per {per} fits {units.nbytes(g.memory)}{where} "
                 f"({'a training step' if g.train else 'a forward'}, {counted} counted on the meta device): "
                 f"{g.fewest:,}, peak {units.nbytes(g.peak_at_fewest)}"),
        ]
    return Document(FitReport.KIND, fits.model, tuple(blocks), fits.to_dict())
