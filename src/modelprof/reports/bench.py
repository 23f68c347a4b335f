"""The ``bench`` kind (latency and throughput by batch, ``--layers`` time by layer against the roofline,
``--generate`` time to first token and per token) and its view. No torch here.

Times are kept in seconds, exactly as measured (``samples_s`` in JSON); the milliseconds in JSON and tables
(``median_ms``) are derived from them, so a saved report reads back to the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from modelprof import units
from modelprof.reports.document import Cell, Column, Document, Note, Table, ms_cell, rate_cell
from modelprof.reports.serial import Saved, flat, key, omit_none
from modelprof.reports.stats import InputInfo, ParallelLayout
from modelprof.reports.sweep import growth_exponent, growth_label
from modelprof.timing import roofline
from modelprof.timing.roofline import Peaks

#: A result is flagged as noisy when its interquartile range exceeds this share of its median.
NOISY_IQR_RATIO = 0.10


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (NumPy's default, 'linear'): position q*(n-1)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _ms_list(seconds: tuple[float, ...]) -> list[float]:
    return [s * 1e3 for s in seconds]


@dataclass(frozen=True)
class LatencyStats(Saved):
    """Per-call latencies in seconds, every raw measurement in call order, and their statistics.

    mean, stddev (sample standard deviation, n - 1), median, p90, p99, min, max; ``iqr`` = p75 - p25.
    Quantiles interpolate linearly between the closest ranks (NumPy's default).
    """

    samples: tuple[float, ...] = field(metadata=key("samples_s"))

    def __post_init__(self) -> None:
        if not self.samples:
            raise ValueError("no latency samples")

    @classmethod
    def from_samples(cls, samples: tuple[float, ...] | list[float]) -> LatencyStats:
        """Summarize raw latencies (at least one)."""
        return cls(tuple(samples))

    @cached_property
    def _ordered(self) -> list[float]:
        return sorted(self.samples)

    @property
    def mean(self) -> float:
        return sum(self._ordered) / len(self._ordered)

    @property
    def stddev(self) -> float:
        n, mean = len(self._ordered), self.mean
        return (sum((x - mean) ** 2 for x in self._ordered) / (n - 1)) ** 0.5 if n > 1 else 0.0

    @property
    def median(self) -> float:
        return _quantile(self._ordered, 0.5)

    @property
    def p90(self) -> float:
        return _quantile(self._ordered, 0.9)

    @property
    def p99(self) -> float:
        return _quantile(self._ordered, 0.99)

    @property
    def min(self) -> float:
        return self._ordered[0]

    @property
    def max(self) -> float:
        return self._ordered[-1]

    @property
    def iqr(self) -> float:
        return _quantile(self._ordered, 0.75) - _quantile(self._ordered, 0.25)

    @property
    def noisy(self) -> bool:
        """True when IQR / median exceeds 10 %: the machine was busy or the model's time varies."""
        return self.median > 0 and self.iqr / self.median > NOISY_IQR_RATIO

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"samples_ms": _ms_list(self.samples),
                **{f"{name}_ms": getattr(self, name) * 1e3
                   for name in ("mean", "stddev", "median", "p90", "p99", "min", "max", "iqr")},
                "noisy": self.noisy}


@dataclass(frozen=True)
class BatchResult(Saved):
    """One batch size measured: latency per call, throughput, and the peak memory of the measurement.

    ``throughput`` is batch / mean latency (samples/s). On CUDA ``pipelined_throughput`` comes from a separate run
    with no synchronization between calls (events at both ends); None elsewhere.
    """

    batch: int
    latency: LatencyStats = field(metadata=flat())
    throughput: float
    peak_memory: int
    pipelined_throughput: float | None = None
    point: int | None = field(default=None, metadata=omit_none())  #: a swept input size (``--sweep seq=...``)
    #: ``bench --gpus``: seconds the rank's collectives ran in one more, profiled call (gloo's worker threads on
    #: CPU, NCCL's kernels on CUDA; they may overlap the computation)
    collectives: float | None = field(default=None, metadata=omit_none("collectives_s"))


@dataclass(frozen=True)
class LayerTiming(Saved):
    """One row of ``bench --layers``: its seconds in each timed forward, and its counted work (MAdd, bytes)."""

    name: str
    type: str
    calls: int
    samples: tuple[float, ...] = field(metadata=key("samples_s"))
    madd: int = 0
    nbytes: int = field(default=0, metadata=key("bytes"))

    @property
    def median(self) -> float:
        return _quantile(sorted(self.samples), 0.5) if self.samples else 0.0

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        """The median in ms, the share of the rows' time, intensity, achieved rates; with the profile's peaks, the
        roofline: attainable time, bound, efficiency."""
        median = self.median
        total = parent.rows_total if parent is not None else 0.0
        peaks = parent.peaks if parent is not None else None
        d: dict[str, Any] = {
            "median_ms": median * 1e3, "share": median / total if total else None,
            "intensity": roofline.intensity(self.madd, self.nbytes),
            "achieved_flops": self.madd / median if median > 0 else None,
            "achieved_bandwidth": self.nbytes / median if median > 0 else None,
        }
        if peaks is not None and (self.madd or self.nbytes):
            d["attainable_ms"] = roofline.attainable_seconds(self.madd, self.nbytes, peaks) * 1e3
            d["bound"] = roofline.bound(self.madd, self.nbytes, peaks)
            d["efficiency"] = roofline.efficiency(self.madd, self.nbytes, median, peaks)
        d["samples_ms"] = _ms_list(self.samples)
        return d


@dataclass(frozen=True)
class LayerProfile(Saved):
    """``bench --layers``: a row per stats row (at ``depth``) plus ``(unattributed)``, the plain forward's median
    measured in the same run (seconds), and the device's peaks when known."""

    rows: tuple[LayerTiming, ...]
    forward_median: float = field(metadata=key("forward_median_s"))
    depth: int | None = None
    peaks: Peaks | None = None

    @property
    def rows_total(self) -> float:
        """The sum of the rows' medians (seconds)."""
        return sum(r.median for r in self.rows)

    @property
    def madd(self) -> int:
        return sum(r.madd for r in self.rows)

    @property
    def mfu(self) -> float | None:
        """Achieved MAdd/s of the whole forward over the peak."""
        return roofline.mfu(self.madd, self.forward_median, self.peaks) if self.peaks else None

    @property
    def roof_seconds(self) -> float | None:
        """The forward's time if every layer ran at its roof."""
        if self.peaks is None:
            return None
        return sum(roofline.attainable_seconds(r.madd, r.nbytes, self.peaks) for r in self.rows)

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"forward_median_ms": self.forward_median * 1e3, "rows_total_ms": self.rows_total * 1e3,
                "mfu": self.mfu, "roof_ms": None if self.roof_seconds is None else self.roof_seconds * 1e3}


@dataclass(frozen=True)
class GenerationTiming(Saved):
    """``bench --generate``: time to first token (the prefill and the first token's choice) per generation, and
    the latency of every decode step after it; ``tokens_per_second`` counts every sequence of the batch."""

    batch: int
    prompt: int
    new_tokens: int
    first_token: LatencyStats = field(metadata=key("time_to_first_token"))
    per_token: LatencyStats

    @property
    def tokens_per_second(self) -> float:
        return self.batch / self.per_token.mean if self.per_token.mean > 0 else 0.0

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"tokens_per_second": self.tokens_per_second}


@dataclass(frozen=True)
class BenchReport(Saved):
    """Everything ``modelprof bench`` measured. ``to_dict()`` is the documented JSON.

    ``sweep`` holds one result per batch size measured (one without ``--find-batch``); ``max_batch`` is the
    largest batch that ran, ``best_batch`` the smallest reaching 95 % of the best throughput, ``probes`` the
    forward passes the search ran (None without ``--find-batch``).
    """

    KIND: ClassVar[str] = "bench"

    model: str
    inputs: tuple[InputInfo, ...]
    device: str
    dtype: str
    environment: dict[str, Any]
    sweep: tuple[BatchResult, ...]
    compile_seconds: float | None = None
    max_batch: int | None = None
    best_batch: int | None = None
    probes: int | None = None
    failed: tuple[int, ...] = field(default=(), metadata=key("failed_batches"))
    layers: LayerProfile | None = None
    generation: GenerationTiming | None = None
    #: ``bench --gpus N``: every rank's result, rank by rank (``sweep`` holds rank 0's), and the job
    ranks: tuple[BatchResult, ...] | None = field(default=None, metadata=omit_none())
    parallel: ParallelLayout | None = field(default=None, metadata=omit_none())


#: The best-throughput batch is the smallest reaching this share of the best throughput seen.
BEST_BATCH_SHARE = 0.95


def best_batch(sweep: tuple[BatchResult, ...] | list[BatchResult]) -> int | None:
    """The smallest batch whose throughput is at least 95 % of the best throughput in the sweep."""
    if not sweep:
        return None
    best = max(r.throughput for r in sweep)
    return min(r.batch for r in sweep if r.throughput >= BEST_BATCH_SHARE * best)



# ----------------------------------------------------------------------------------------------------------------
# The view
# ----------------------------------------------------------------------------------------------------------------


#: (column, cell of one batch result)
_BENCH_COLUMNS: tuple[tuple[str, Callable[[BatchResult], Cell]], ...] = (
    ("Batch", lambda r: Cell(str(r.batch), r.batch)),
    ("Calls", lambda r: Cell(str(len(r.latency.samples)), len(r.latency.samples))),
    ("Mean [ms]", lambda r: ms_cell(r.latency.mean)),
    ("Std [ms]", lambda r: ms_cell(r.latency.stddev)),
    ("Median [ms]", lambda r: ms_cell(r.latency.median)),
    ("P90 [ms]", lambda r: ms_cell(r.latency.p90)),
    ("P99 [ms]", lambda r: ms_cell(r.latency.p99)),
    ("Min [ms]", lambda r: ms_cell(r.latency.min)),
    ("Max [ms]", lambda r: ms_cell(r.latency.max)),
    ("Throughput [samples/s]", lambda r: Cell(f"{r.throughput:,.1f}", r.throughput)),
    ("Peak memory", lambda r: Cell(units.nbytes(r.peak_memory), r.peak_memory)),
    ("Stable", lambda r: Cell("noisy" if r.latency.noisy else "yes", not r.latency.noisy)),
)


def bench_document(report: BenchReport) -> Document:
    """The sweep (one row per batch size), then the environment, the search's answer and a throughput chart;
    with layer times, the per-layer table, the roofline summary and the slowest layers with their verdicts."""
    columns = tuple(Column(title, numeric=title != "Stable") for title, _ in _BENCH_COLUMNS)
    rows = tuple(tuple(cell(r) for _, cell in _BENCH_COLUMNS) for r in report.sweep)
    swept = report.environment.get("sweep_dim")
    if swept and swept != "batch":
        columns = (Column(swept, True), *columns)
        rows = tuple((Cell(str(r.point), r.point), *row) for r, row in zip(report.sweep, rows, strict=True))
    title = f"{report.model}  ({units.inputs(report.inputs)}; {report.device})"
    notes = tuple(Note(line) for line in _bench_summary(report) + _throughput_chart(report))
    if report.ranks:  # a job's ranks get a table of their own (rank 0's result is the sweep's one row)
        blocks = (*notes, *_rank_blocks(report))
    else:
        blocks = (Table(columns, rows), *notes) if report.sweep else notes[:1]
    if report.layers is not None:
        blocks += _layer_blocks(report.layers)
    if report.generation is not None:
        blocks += _generation_blocks(report.generation)
    return Document(report.KIND, title, blocks, report.to_dict())


def _rank_blocks(report: BenchReport) -> tuple:
    """``bench --gpus N``: one row per rank, and the job."""
    columns = (Column("Rank", True), *(Column(title, numeric=title != "Stable") for title, _ in _BENCH_COLUMNS[1:]),
               Column("Collectives [ms]", True))
    rows = tuple((Cell(str(rank), rank), *(cell(r) for _, cell in _BENCH_COLUMNS[1:]),
                  ms_cell(r.collectives) if r.collectives is not None else Cell("—"))
                 for rank, r in enumerate(report.ranks))
    p, env = report.parallel, report.environment
    slowest = max(report.ranks, key=lambda r: r.latency.median)
    where = "peak resident memory of each rank's process" if report.device == "cpu" else "max_memory_allocated"
    return (Table(columns, rows, title=f"Every rank of the job ({p.describe if p else len(report.ranks)})"),
            Note(f"{len(report.ranks)} processes, {env.get('backend')}, {env.get('threads')} threads each; a step "
                 f"is as slow as its slowest rank: median {slowest.latency.median * 1e3:.3f} ms; peak memory: "
                 f"{where}; collectives: their time in one more call, profiled (on the backend's threads, "
                 "overlapping the computation where they are asynchronous)"))


def _generation_blocks(timing: GenerationTiming) -> tuple:
    """Time to first token and per-token latency, and tokens per second."""
    columns = (Column("Latency"), Column("Samples", True), Column("Mean [ms]", True), Column("Median [ms]", True),
               Column("P90 [ms]", True), Column("P99 [ms]", True), Column("Min [ms]", True), Column("Max [ms]", True))
    rows = tuple((Cell(label), Cell(str(len(stats.samples)), len(stats.samples)), ms_cell(stats.mean),
                  ms_cell(stats.median), ms_cell(stats.p90), ms_cell(stats.p99), ms_cell(stats.min),
                  ms_cell(stats.max))
                 for label, stats in (("time to first token", timing.first_token), ("per token", timing.per_token)))
    title = f"Generation: batch {timing.batch}, prompt {timing.prompt} tokens, {timing.new_tokens} new tokens"
    return (Table(columns, rows, title=title),
            Note(f"{timing.tokens_per_second:,.1f} tokens/s while decoding ({timing.batch} sequence(s) × 1 / mean "
                 "per-token latency)"))


def _layer_blocks(profile: LayerProfile) -> tuple:
    """The per-layer table (time, share, work, intensity, achieved rates, roofline) and the summary notes."""
    peaks, total = profile.peaks, profile.rows_total
    columns = [Column("Module"), Column("Type"), Column("Calls", True), Column("Median [ms]", True),
               Column("Share", True), Column("MAdd", True), Column("Bytes", True), Column("MAdd/B", True),
               Column("Achieved", True), Column("Bandwidth", True)]
    if peaks is not None:
        columns += [Column("Roof [ms]", True), Column("Verdict")]
    rows = []
    for r in profile.rows:
        median = r.median
        cells = [Cell(r.name), Cell(r.type), Cell(str(r.calls), r.calls), ms_cell(median),
                 Cell(f"{100 * median / total:.1f} %" if total else "—", median / total if total else None),
                 Cell(units.count(r.madd), r.madd), Cell(units.nbytes(r.nbytes), r.nbytes)]
        density = roofline.intensity(r.madd, r.nbytes)
        cells += [Cell("—" if density is None else f"{density:.2f}", density),
                  rate_cell(r.madd / median if median > 0 and r.madd else None, "FLOP/s"),
                  rate_cell(r.nbytes / median if median > 0 and r.nbytes else None, "B/s")]
        if peaks is not None:
            work = bool(r.madd or r.nbytes)
            roof = roofline.attainable_seconds(r.madd, r.nbytes, peaks) if work else None
            cells += [ms_cell(roof) if roof is not None else Cell("—"),
                      Cell(roofline.verdict(r.madd, r.nbytes, median, peaks) if work else "—")]
        rows.append(tuple(cells))
    lines = [f"Rows sum to {units.milliseconds(total)} ms; the whole forward without hooks takes "
             f"{units.milliseconds(profile.forward_median)} ms (median, same run)"]
    if peaks is not None:
        lines += _roofline_lines(profile)
    return (Table(tuple(columns), tuple(rows), title="Time by layer"), *(Note(line) for line in lines))


def _roofline_lines(profile: LayerProfile, top: int = 5, width: int = 30) -> list[str]:
    """Peaks, MFU, the forward at its roof, and the slowest layers with a bar and their verdict."""
    peaks = profile.peaks
    sheet = ""
    if peaks.datasheet_flops:
        sheet = (f" (datasheet: {units.count(peaks.datasheet_flops)}FLOP/s, "
                 f"{units.count(peaks.datasheet_bandwidth)}B/s)")
    lines = [f"Peaks: {units.count(peaks.flops)}FLOP/s, {units.count(peaks.bandwidth)}B/s, ridge at "
             f"{peaks.ridge:.1f} MAdd/B ({peaks.source}){sheet}",
             f"MFU: {100 * (profile.mfu or 0):.1f} % (MAdd of the forward per second over the peak); at every "
             f"layer's roof the forward would take {units.milliseconds(profile.roof_seconds)} ms"]
    timed = sorted((r for r in profile.rows if r.madd or r.nbytes), key=lambda r: r.median, reverse=True)[:top]
    if timed:
        longest = timed[0].median or 1.0
        lines.append("Slowest layers:")
        for r in timed:
            bar = "█" * max(1, round(width * r.median / longest))
            lines.append(f"  {r.name:<24} {bar:<{width}} {units.milliseconds(r.median)} ms  "
                         f"{roofline.verdict(r.madd, r.nbytes, r.median, peaks)}")
    return lines


def _bench_summary(report: BenchReport) -> list[str]:
    """Environment, compile time, the batch search's answer."""
    env = report.environment
    options = (", amp" if env.get("amp") else "") + (", channels-last" if env.get("channels_last") else "")
    if env.get("train"):
        options += f", training steps ({env.get('optimizer')}): forward, backward, optimizer step"
    if env.get("checkpoint"):
        options += f", activation checkpointing of {', '.join(env['checkpoint'])}"
    lines = [f"{env.get('device_name', report.device)}, torch {env.get('torch')}, {env.get('threads')} threads, "
             f"{report.dtype}{options}"]
    if any(r.pipelined_throughput for r in report.sweep):
        lines.append("Pipelined throughput (no sync between calls): " + ", ".join(
            f"batch {r.batch}: {r.pipelined_throughput:,.1f} samples/s" for r in report.sweep
            if r.pipelined_throughput))
    if report.compile_seconds is not None:
        lines.append(f"Compile time (first call, not timed above): {report.compile_seconds:.2f} s")
    if any(r.latency.noisy for r in report.sweep):
        lines.append("noisy: IQR above 10 % of the median; close other programs or raise --duration")
    if env.get("memory_limit"):
        source = env.get("memory_limit_from", "--memory-limit")
        lines.append(f"Memory limit: {units.nbytes(env['memory_limit'])} ({source}); each batch size probed in a "
                     "child process held to it")
    swept = env.get("sweep_dim")
    if swept and len(report.sweep) >= 2:
        a, b = report.sweep[-2], report.sweep[-1]
        x = (lambda r: r.batch) if swept == "batch" else (lambda r: r.point)
        exponent = growth_exponent(x(a), a.latency.median, x(b), b.latency.median)
        lines.append(f"Median latency grows {growth_label(exponent)} with {swept} (last two points"
                     + (f", exponent {exponent:.2f})" if exponent is not None else ")"))
    if report.probes is not None:
        failed = ", ".join(map(str, report.failed)) or "none"
        lines.append(f"Largest batch that ran: {report.max_batch}; best throughput from batch {report.best_batch} "
                     f"(smallest within 95 % of the best); {report.probes} probes; out of memory at: {failed}")
    return lines


def _throughput_chart(report: BenchReport, width: int = 40) -> list[str]:
    """A text bar chart of throughput against batch size."""
    if len(report.sweep) < 2:
        return []
    best = max(r.throughput for r in report.sweep)
    swept = report.environment.get("sweep_dim") or "batch"
    lines = [f"Throughput by {swept}:"]
    for r in sorted(report.sweep, key=lambda r: (r.batch, r.point or 0)):
        bar = "█" * max(1, round(width * r.throughput / best))
        lines.append(f"{r.point if r.point is not None else r.batch:>8} {bar} {r.throughput:,.1f}/s")
    return lines
