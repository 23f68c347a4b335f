"""``--plot FILE.png``: throughput against batch size, or with ``--layers`` the roofline, drawn with matplotlib
when it is installed."""

from __future__ import annotations

from typing import Any

from modelprof.errors import UsageError
from modelprof.reports.bench import BenchReport, LayerProfile
from modelprof.reports.sweep import SweepReport
from modelprof.timing import roofline

#: How many of the slowest layers get a label on the roofline.
LABELLED = 8


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("a plot needs matplotlib: pip install 'modelprof[plot]'", option="plot") from None
    return plt


def save_plot(report: BenchReport, path: str) -> None:
    """Save the roofline when the report has layer times, else a throughput-vs-batch chart, to ``path``."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    if report.layers is not None and report.layers.peaks is not None:
        _roofline(axes, report.layers)
    else:
        _throughput(axes, report)
    axes.set_title(report.model)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _throughput(axes: Any, report: BenchReport) -> None:
    swept = report.environment.get("sweep_dim")
    if swept and swept != "batch":  # a swept input size: latency against it
        sweep = sorted(report.sweep, key=lambda r: r.point)
        axes.plot([r.point for r in sweep], [r.latency.median * 1e3 for r in sweep], marker="o")
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel(swept)
        axes.set_ylabel("median latency [ms]")
        return
    sweep = sorted(report.sweep, key=lambda r: r.batch)
    axes.plot([r.batch for r in sweep], [r.throughput for r in sweep], marker="o")
    if report.best_batch:
        axes.axvline(report.best_batch, linestyle="--", color="gray", label=f"best batch {report.best_batch}")
        axes.legend()
    axes.set_xscale("log", base=2)
    axes.set_xlabel("batch size")
    axes.set_ylabel("throughput [samples/s]")


def _roofline(axes: Any, profile: LayerProfile) -> None:
    """The classic log-log roofline: the two roofs, and a point per layer sized by its share of the time."""
    peaks = profile.peaks
    rows = [r for r in profile.rows if r.madd and r.nbytes and r.median > 0]
    total = profile.rows_total or 1.0
    intensities = [r.madd / r.nbytes for r in rows] or [peaks.ridge]
    low, high = min(min(intensities), peaks.ridge) / 4, max(max(intensities), peaks.ridge) * 4
    xs = [low * (high / low) ** (i / 100) for i in range(101)]
    axes.plot(xs, [min(peaks.flops, x * peaks.bandwidth) for x in xs], color="black", linewidth=1.5,
              label=f"roof: {peaks.flops / 1e9:,.0f} GFLOP/s, {peaks.bandwidth / 1e9:,.0f} GB/s")
    for row in rows:
        x, y = row.madd / row.nbytes, row.madd / row.median
        color = "tab:red" if roofline.bound(row.madd, row.nbytes, peaks) == "memory" else "tab:blue"
        axes.scatter([x], [y], s=20 + 600 * row.median / total, alpha=0.6, color=color)
    for row in sorted(rows, key=lambda r: r.median, reverse=True)[:LABELLED]:
        axes.annotate(row.name, (row.madd / row.nbytes, row.madd / row.median), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("arithmetic intensity [MAdd / byte]")
    axes.set_ylabel("achieved [MAdd / s]")
    axes.legend(loc="lower right", fontsize=8)


def save_sweep_plot(report: SweepReport, path: str) -> None:
    """``stats --sweep --plot``: Flops, bytes moved and peak memory against the swept value, log-log."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    xs = [p.value for p in report.points]
    axes.plot(xs, [p.totals.get("flops", 0) for p in report.points], marker="o", label="Flops")
    axes.plot(xs, [p.totals.get("mem_read", 0) + p.totals.get("mem_write", 0) for p in report.points], marker="o",
              label="bytes moved")
    if all(p.peak for p in report.points):
        axes.plot(xs, [p.peak for p in report.points], marker="o", label="peak memory [bytes]")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel(report.dim)
    axes.legend()
    axes.set_title(report.model)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
