"""``--plot FILE.png``: throughput against batch size, drawn with matplotlib when it is installed."""

from __future__ import annotations

from ..errors import UsageError
from ..report import BenchReport


def save_plot(report: BenchReport, path: str) -> None:
    """Save a throughput-vs-batch chart to ``path``; a clear error when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'modelprof[plot]'") from None
    sweep = sorted(report.sweep, key=lambda r: r.batch)
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot([r.batch for r in sweep], [r.throughput for r in sweep], marker="o")
    if report.best_batch:
        axes.axvline(report.best_batch, linestyle="--", color="gray", label=f"best batch {report.best_batch}")
        axes.legend()
    axes.set_xscale("log", base=2)
    axes.set_xlabel("batch size")
    axes.set_ylabel("throughput [samples/s]")
    axes.set_title(report.model)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
