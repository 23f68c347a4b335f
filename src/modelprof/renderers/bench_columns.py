"""The columns of a bench sweep, shared by every tabular renderer: header (units in the header), value."""

from __future__ import annotations

from collections.abc import Callable

from .. import units
from ..report import BatchResult


def _ms(value: float) -> str:
    return units.milliseconds(value)


#: (header, humanized getter, exact getter)
BENCH_COLUMNS: tuple[tuple[str, Callable[[BatchResult], str], Callable[[BatchResult], object]], ...] = (
    ("Batch", lambda r: str(r.batch), lambda r: r.batch),
    ("Calls", lambda r: str(len(r.latency.samples)), lambda r: len(r.latency.samples)),
    ("Mean [ms]", lambda r: _ms(r.latency.mean), lambda r: r.latency.mean * 1e3),
    ("Std [ms]", lambda r: _ms(r.latency.stddev), lambda r: r.latency.stddev * 1e3),
    ("Median [ms]", lambda r: _ms(r.latency.median), lambda r: r.latency.median * 1e3),
    ("P90 [ms]", lambda r: _ms(r.latency.p90), lambda r: r.latency.p90 * 1e3),
    ("P99 [ms]", lambda r: _ms(r.latency.p99), lambda r: r.latency.p99 * 1e3),
    ("Min [ms]", lambda r: _ms(r.latency.min), lambda r: r.latency.min * 1e3),
    ("Max [ms]", lambda r: _ms(r.latency.max), lambda r: r.latency.max * 1e3),
    ("Throughput [samples/s]", lambda r: f"{r.throughput:,.1f}", lambda r: r.throughput),
    ("Peak memory", lambda r: units.nbytes(r.peak_memory), lambda r: r.peak_memory),
    ("Stable", lambda r: "noisy" if r.latency.noisy else "yes", lambda r: not r.latency.noisy),
)


def summary_lines(report) -> list[str]:
    """Plain-text lines under the table: environment, compile time, the batch search's answer."""
    env = report.environment
    lines = [f"{env.get('device_name', report.device)}, torch {env.get('torch')}, {env.get('threads')} threads, "
             f"{report.dtype}" + (", amp" if env.get("amp") else "") + (", channels-last" if env.get("channels_last")
                                                                          else "")]
    if any(r.pipelined_throughput for r in report.sweep):
        lines.append("Pipelined throughput (no sync between calls): " + ", ".join(
            f"batch {r.batch}: {r.pipelined_throughput:,.1f} samples/s" for r in report.sweep
            if r.pipelined_throughput))
    if report.compile_seconds is not None:
        lines.append(f"Compile time (first call, not timed above): {report.compile_seconds:.2f} s")
    if any(r.latency.noisy for r in report.sweep):
        lines.append("noisy: IQR above 10 % of the median; close other programs or raise --duration")
    if report.probes is not None:
        failed = ", ".join(map(str, report.failed)) or "none"
        lines.append(f"Largest batch that ran: {report.max_batch}; best throughput from batch {report.best_batch} "
                     f"(smallest within 95 % of the best); {report.probes} probes; out of memory at: {failed}")
    return lines


def throughput_chart(report, width: int = 40) -> list[str]:
    """A text bar chart of throughput against batch size."""
    if len(report.sweep) < 2:
        return []
    best = max(r.throughput for r in report.sweep)
    lines = ["Throughput by batch:"]
    for r in sorted(report.sweep, key=lambda r: r.batch):
        bar = "█" * max(1, round(width * r.throughput / best))
        lines.append(f"{r.batch:>8} {bar} {r.throughput:,.1f}/s")
    return lines
