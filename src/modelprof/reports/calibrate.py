"""The ``calibrate`` kind (a device's measured peak MAdd/s and bandwidth) and its view. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from modelprof.reports.document import Cell, Column, Document, Note, Table, rate_cell
from modelprof.reports.serial import Saved
from modelprof.timing.roofline import Peaks


@dataclass(frozen=True)
class Calibration(Saved):
    """What ``modelprof calibrate`` measured: the peaks of ``device`` in ``dtype`` (with ``threads`` CPU threads)."""

    KIND: ClassVar[str] = "calibrate"

    device: str
    dtype: str
    threads: int | None
    peaks: Peaks


# ----------------------------------------------------------------------------------------------------------------
# The view
# ----------------------------------------------------------------------------------------------------------------


def calibration_document(report: Calibration) -> Document:
    """Measured peaks (and the datasheet's, on a known GPU) with the ridge point."""
    peaks, device, dtype, threads = report.peaks, report.device, report.dtype, report.threads
    columns = (Column("Device"), Column("dtype"), Column("Peak MAdd/s", True), Column("Peak bandwidth", True),
               Column("Ridge [MAdd/B]", True), Column("Source"))
    rows = [(Cell(peaks.device or device), Cell(dtype), rate_cell(peaks.flops, "FLOP/s"),
             rate_cell(peaks.bandwidth, "B/s"), Cell(f"{peaks.ridge:.2f}", peaks.ridge), Cell(peaks.source))]
    if peaks.datasheet_flops and peaks.datasheet_bandwidth:
        sheet = Peaks(peaks.datasheet_flops, peaks.datasheet_bandwidth)
        rows.append((Cell(peaks.device), Cell(dtype), rate_cell(sheet.flops, "FLOP/s"),
                     rate_cell(sheet.bandwidth, "B/s"), Cell(f"{sheet.ridge:.2f}", sheet.ridge), Cell("datasheet")))
    notes = [Note("MAdd/s from an n×n matmul (2·n³ MAdd a call), bandwidth from a large copy (read + write), "
                  "median call after a warm-up")]
    if threads:
        notes.append(Note(f"{threads} CPU threads"))
    return Document(report.KIND, f"Peaks of {peaks.device or device}", (Table(columns, tuple(rows)), *notes),
                    report.to_dict())
