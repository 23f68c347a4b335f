"""Views: each kind of report becomes a :class:`~modelprof.reports.document.Document` (title, tables, notes, JSON data).

Columns of per-layer tables, the cells of a comparison and the budget lines are derived from
:data:`modelprof.metrics.METRICS`. No torch and no format here: renderers decide how a document looks.
"""

from __future__ import annotations

from collections.abc import Callable

from modelprof import metrics, units
from modelprof.reports.budgets import CheckResult
from modelprof.reports.compare import Comparison, Delta
from modelprof.reports.document import Cell, Column, Document, Note, Table
from modelprof.reports.kinds import (
    SCHEMA_VERSION,
    BatchResult,
    BenchReport,
    CrossCheck,
    FitReport,
    GenerationTiming,
    LayerCost,
    LayerProfile,
    Report,
    SweepReport,
    growth_exponent,
    growth_label,
)
from modelprof.timing import roofline
from modelprof.timing.roofline import Peaks

# ----------------------------------------------------------------------------------------------------------------
# stats
# ----------------------------------------------------------------------------------------------------------------

#: The leading, descriptive columns of a per-layer table: (title, text of a row).
_ROW_COLUMNS: tuple[tuple[str, Callable[[LayerCost], str]], ...] = (
    ("Module", lambda r: r.name),
    ("Type", lambda r: r.label),
    ("Input shape", lambda r: units.shapes(r.input_shape)),
    ("Output shape", lambda r: units.shapes(r.output_shape)),
)


def layer_cells(row: LayerCost, shown: tuple[metrics.Metric, ...] = metrics.in_phases(("forward",))
                ) -> tuple[Cell, ...]:
    """A row's cells: name, type, shapes, then each shown metric (humanized text, exact value), then calls."""
    described = tuple(Cell(text(row)) for _, text in _ROW_COLUMNS)
    numbers = tuple(Cell(m.unit.show(getattr(row, m.key)), getattr(row, m.key)) for m in shown)
    return (*described, *numbers, Cell(str(row.calls), row.calls))


def stats_title(report: Report | BenchReport) -> str:
    """``model  (inputs; device, dtype)``."""
    return f"{report.model}  ({units.inputs(report.inputs)}; {report.device}, {report.dtype})"


def stats_document(report: Report, crosscheck: CrossCheck | None = None) -> Document:
    """Per-layer table with a total row, the parameter split, the ops not counted; with ``crosscheck``, another
    tool's numbers beside modelprof's."""
    shown = metrics.in_phases(report.phases)
    training = len(report.phases) > 1  # a wide table: the shapes go to CSV only
    columns = (*(Column(t, extra=training and "shape" in t) for t, _ in _ROW_COLUMNS),
               *(Column(m.title, numeric=True) for m in shown), Column("Calls", numeric=True, extra=True))
    rows = tuple(layer_cells(r, shown) for r in report.layers) or (layer_cells(report.total, shown),)
    total = layer_cells(report.total, shown) if report.layers else None
    t = report.total
    blocks: list = [Table(columns, rows, total=total),
                    Note(f"Params: {t.params:,} ({t.trainable_params:,} trainable, {t.non_trainable_params:,} "
                         "non-trainable)")]
    if "backward" in report.phases:
        blocks.append(Note(_step_line(report)))
    if report.generation is not None:
        blocks += [Note(line) for line in _generation_lines(report)]
    if report.memory is not None:
        blocks.append(Note(_memory_line(report)))
    if report.unsupported:
        blocks.append(Note("Not counted (no formula): " + ", ".join(f"{op} ×{n}" for op, n in
                                                                   report.unsupported.items())))
    data = report.to_dict()
    if crosscheck is not None:
        blocks += _crosscheck_blocks(crosscheck, t.flops)
        data["backend"] = crosscheck.to_dict()
    return Document(report.KIND, stats_title(report), tuple(blocks), data)


def _step_line(report: Report) -> str:
    """``Training step: forward 1.82G Flops, backward 3.64G (2.00x the forward), optimizer 46.76M; 5.51G``."""
    t = report.total
    ratio = f" ({t.bwd_flops / t.flops:.2f}× the forward)" if t.flops else ""
    return (f"Training step: forward {units.count(t.flops)} Flops, backward {units.count(t.bwd_flops)}{ratio}, "
            f"optimizer {units.count(t.opt_flops)}; {units.count(metrics.BY_KEY['step_flops'].value(t.values))} "
            "in all")


def _generation_lines(report: Report) -> list[str]:
    """Prefill, the decode steps (per token, and how a token's cost grows with its position), the KV cache."""
    g, t = report.generation, report.total
    first, last = g.steps[0], g.steps[-1]
    growth = f", +{units.count(g.growth)} Flops per position" if g.growth is not None else ""
    return [
        f"Prefill: {g.batch}×{g.prompt} tokens, {units.count(t.flops)} Flops, "
        f"{units.nbytes(t.mem_read + t.mem_write)} moved",
        f"Decode: {g.new_tokens} steps of {g.batch} token(s), {units.count(t.dec_flops)} Flops in all; a token costs "
        f"{units.count(first.flops)} Flops at position {first.position} and {units.count(last.flops)} at "
        f"{last.position}{growth}; {units.nbytes((t.dec_mem_read + t.dec_mem_write) / g.new_tokens)} moved per step",
        f"KV cache at the end: {units.nbytes(g.kv_cache)} ({g.prompt + g.new_tokens} positions)",
    ]


def _memory_line(report: Report) -> str:
    """``Memory: parameters 44.59MiB, buffers ..., peak 61.04MiB during the backward of layer1.0.conv1``."""
    m = report.memory
    parts = [f"parameters {units.nbytes(m.parameters)}", f"buffers {units.nbytes(m.buffers)}",
             f"inputs {units.nbytes(m.inputs)}"]
    if "backward" in report.phases:
        parts += [f"gradients {units.nbytes(m.gradients)}", f"optimizer state {units.nbytes(m.optimizer)}",
                  f"saved activations {units.nbytes(m.saved)}"]
    where = f"the {m.peak_phase} of {m.peak_row}" if m.peak_phase != "forward" else m.peak_row
    return f"Memory: {', '.join(parts)}; peak of live tensors {units.nbytes(m.peak)} during {where}"


def _crosscheck_blocks(check: CrossCheck, ours_total: int) -> list:
    blocks: list = []
    if check.rows:
        def show(value: float | None) -> Cell:
            return Cell("—" if value is None else units.count(value), value)

        columns = (Column("Module"), Column("Type"), Column("Flops", True), Column(f"{check.tool} Flops", True),
                   Column("MAdd", True), Column(f"{check.tool} MAdd", True), Column("Why they differ"))
        rows = tuple((Cell(r.name), Cell(r.type), Cell(units.count(r.flops), r.flops), show(r.theirs_flops),
                      Cell(units.count(r.madd), r.madd), show(r.theirs_madd), Cell(r.reason)) for r in check.rows)
        blocks.append(Table(columns, rows, title=f"modelprof beside {check.tool}"))
    if check.error:
        blocks.append(Note(f"{check.tool}: {check.error}; modelprof's counts above stand on their own"))
    else:
        theirs = check.total_flops or 0
        gap = ours_total - theirs
        sign = "+" if gap > 0 else "-" if gap < 0 else "±"
        blocks.append(Note(f"{check.tool} counts {units.count(theirs)} Flops in total, modelprof "
                           f"{units.count(ours_total)} (modelprof {sign}{units.count(abs(gap))}; the last column "
                           "says why, layer by layer)"))
    return blocks


# ----------------------------------------------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------------------------------------------


def _ms(value: float) -> Cell:
    return Cell(units.milliseconds(value), value * 1e3)


#: (column, cell of one batch result)
_BENCH_COLUMNS: tuple[tuple[str, Callable[[BatchResult], Cell]], ...] = (
    ("Batch", lambda r: Cell(str(r.batch), r.batch)),
    ("Calls", lambda r: Cell(str(len(r.latency.samples)), len(r.latency.samples))),
    ("Mean [ms]", lambda r: _ms(r.latency.mean)),
    ("Std [ms]", lambda r: _ms(r.latency.stddev)),
    ("Median [ms]", lambda r: _ms(r.latency.median)),
    ("P90 [ms]", lambda r: _ms(r.latency.p90)),
    ("P99 [ms]", lambda r: _ms(r.latency.p99)),
    ("Min [ms]", lambda r: _ms(r.latency.min)),
    ("Max [ms]", lambda r: _ms(r.latency.max)),
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
    blocks = (Table(columns, rows), *notes) if report.sweep else notes[:1]
    if report.layers is not None:
        blocks += _layer_blocks(report.layers)
    if report.generation is not None:
        blocks += _generation_blocks(report.generation)
    return Document(report.KIND, title, blocks, report.to_dict())


def _generation_blocks(timing: GenerationTiming) -> tuple:
    """Time to first token and per-token latency, and tokens per second."""
    columns = (Column("Latency"), Column("Samples", True), Column("Mean [ms]", True), Column("Median [ms]", True),
               Column("P90 [ms]", True), Column("P99 [ms]", True), Column("Min [ms]", True), Column("Max [ms]", True))
    rows = tuple((Cell(label), Cell(str(len(stats.samples)), len(stats.samples)), _ms(stats.mean), _ms(stats.median),
                  _ms(stats.p90), _ms(stats.p99), _ms(stats.min), _ms(stats.max))
                 for label, stats in (("time to first token", timing.first_token), ("per token", timing.per_token)))
    title = f"Generation: batch {timing.batch}, prompt {timing.prompt} tokens, {timing.new_tokens} new tokens"
    return (Table(columns, rows, title=title),
            Note(f"{timing.tokens_per_second:,.1f} tokens/s while decoding ({timing.batch} sequence(s) × 1 / mean "
                 "per-token latency)"))


def _rate(value: float | None, unit: str) -> Cell:
    """``1.23 GFLOP/s`` style: counts per second with a K/M/G/T prefix."""
    return Cell("—" if value is None else f"{units.count(value)}{unit}", value)


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
        cells = [Cell(r.name), Cell(r.type), Cell(str(r.calls), r.calls), _ms(median),
                 Cell(f"{100 * median / total:.1f} %" if total else "—", median / total if total else None),
                 Cell(units.count(r.madd), r.madd), Cell(units.nbytes(r.nbytes), r.nbytes)]
        density = roofline.intensity(r.madd, r.nbytes)
        cells += [Cell("—" if density is None else f"{density:.2f}", density),
                  _rate(r.madd / median if median > 0 and r.madd else None, "FLOP/s"),
                  _rate(r.nbytes / median if median > 0 and r.nbytes else None, "B/s")]
        if peaks is not None:
            work = bool(r.madd or r.nbytes)
            roof = roofline.attainable_seconds(r.madd, r.nbytes, peaks) if work else None
            cells += [_ms(roof) if roof is not None else Cell("—"),
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


# ----------------------------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------------------------


def _value(metric: str, v: float) -> str:
    """A value in its metric's unit (``*_s``: seconds, shown in ms)."""
    if metric in metrics.BY_KEY:
        return metrics.BY_KEY[metric].unit.show(v)
    if metric.endswith("_s"):
        return f"{units.milliseconds(v)} ms"
    return units.count(v)


#: Titles of the comparison's non-metric quantities.
_TITLES = {"layer_time_s": "Median time"}


def _change(delta: Delta) -> str:
    """Signed change with its percentage: ``+1.20M (+3.4 %)``; ``new`` when growing from zero."""
    sign = "+" if delta.change > 0 else "-" if delta.change < 0 else "±"
    amount = sign + _value(delta.metric, abs(delta.change))
    if delta.percent is None:
        return amount + (" (new)" if delta.change else "")
    return f"{amount} ({delta.percent:+.1f} %)"


def _delta_cells(label: str, d: Delta) -> tuple[Cell, ...]:
    return (Cell(label), Cell(_value(d.metric, d.old), d.old), Cell(_value(d.metric, d.new), d.new),
            Cell(_change(d), d.change))


def comparison_document(comparison: Comparison) -> Document:
    """Totals (and median latencies) old against new, then the layers added, removed or changed."""
    columns = (Column("Metric"), Column("Old", True), Column("New", True), Column("Change", True))
    rows = tuple(_delta_cells(d.metric, d) for d in comparison.total)
    rows += tuple(_delta_cells(f"batch {b} median", d) for b, d in comparison.latency)
    blocks: list = [Table(columns, rows)]
    changed = [layer for layer in comparison.layers if layer.status != "same"]
    if changed:
        layer_columns = (Column("Layer"), Column("Status"),
                         *(Column(metrics.BY_KEY[d.metric].title if d.metric in metrics.BY_KEY
                                  else _TITLES.get(d.metric, d.metric), True) for d in changed[0].deltas))
        layer_rows = tuple((Cell(layer.name), Cell(layer.status),
                            *(Cell(_change(d) if d.change else "", d.change) for d in layer.deltas))
                           for layer in changed)
        blocks.append(Table(layer_columns, layer_rows, title="Layers added, removed or changed"))
    elif comparison.layers:
        blocks.append(Note("No layer changed."))
    data = {"kind": "compare", "schema_version": SCHEMA_VERSION, **comparison.to_dict()}
    return Document("compare", f"{comparison.old} → {comparison.new}", tuple(blocks), data)


# ----------------------------------------------------------------------------------------------------------------
# check
# ----------------------------------------------------------------------------------------------------------------


def check_document(result: CheckResult) -> Document:
    """One line per limit: ``pass  flops: 18.75M (limit 19.00M)``."""
    lines = tuple(Note(f"{'pass' if r.passed else 'FAIL'}  {r.limit.label}: {r.limit.show(r.measured)} "
                       f"(limit {r.limit.show(r.value)})") for r in result.limits)
    data = {"kind": "check", "schema_version": SCHEMA_VERSION, **result.to_dict()}
    return Document("check", "", lines, data)


# ----------------------------------------------------------------------------------------------------------------
# calibrate
# ----------------------------------------------------------------------------------------------------------------


def calibration_document(peaks: Peaks, device: str, dtype: str, threads: int | None) -> Document:
    """Measured peaks (and the datasheet's, on a known GPU) with the ridge point."""
    columns = (Column("Device"), Column("dtype"), Column("Peak MAdd/s", True), Column("Peak bandwidth", True),
               Column("Ridge [MAdd/B]", True), Column("Source"))
    rows = [(Cell(peaks.device or device), Cell(dtype), _rate(peaks.flops, "FLOP/s"), _rate(peaks.bandwidth, "B/s"),
             Cell(f"{peaks.ridge:.2f}", peaks.ridge), Cell(peaks.source))]
    if peaks.datasheet_flops and peaks.datasheet_bandwidth:
        sheet = Peaks(peaks.datasheet_flops, peaks.datasheet_bandwidth)
        rows.append((Cell(peaks.device), Cell(dtype), _rate(sheet.flops, "FLOP/s"), _rate(sheet.bandwidth, "B/s"),
                     Cell(f"{sheet.ridge:.2f}", sheet.ridge), Cell("datasheet")))
    notes = [Note("MAdd/s from an n×n matmul (2·n³ MAdd a call), bandwidth from a large copy (read + write), "
                  "median call after a warm-up")]
    if threads:
        notes.append(Note(f"{threads} CPU threads"))
    data = {"kind": "calibrate", "schema_version": SCHEMA_VERSION, "device": device, "dtype": dtype,
            "threads": threads, "peaks": peaks.to_dict()}
    return Document("calibrate", f"Peaks of {peaks.device or device}", (Table(columns, tuple(rows)), *notes), data)


# ----------------------------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------------------------


def fit_document(reports: FitReport | list[FitReport]) -> Document:
    """For each fit: the peaks measured, the memory model through them, the largest size and its peak."""
    reports = [reports] if isinstance(reports, FitReport) else reports
    blocks: list = []
    for report in reports:
        unit = "sample" if report.dim == "batch" else "position"
        columns = (Column(report.dim.capitalize(), True), Column("Peak memory", True), Column("Memory model", True))
        rows = tuple((Cell(str(b), b), Cell(units.nbytes(p), p),
                      Cell(units.nbytes(report.model_peak(b)), report.model_peak(b))) for b, p in report.peaks)
        step = ("training step" if report.train else "run") + (" under autocast" if report.amp else "")
        phases = "; ".join(f"{phase} {units.nbytes(f)} + {units.nbytes(k)} per {unit}" for phase, f, k in report.lines)
        where = f" ({report.memory_source})" if report.memory_source else ""
        blocks += [
            Table(columns, rows, title=f"Largest {report.dim}" if len(reports) > 1 else ""),
            Note(f"Memory model ({step}, the highest of each phase's line, counted on the meta device): {phases}"),
            Note(f"Largest {report.dim} that fits {units.nbytes(report.memory)}{where}: {report.max_batch:,}, "
                 f"peak {units.nbytes(report.peak_at_max)}"),
        ]
    head = {key: reports[0].to_dict()[key] for key in ("kind", "schema_version", "model")}
    data = {**head, "fits": [{k: v for k, v in r.to_dict().items() if k not in head} for r in reports]}
    return Document(FitReport.KIND, reports[0].model, tuple(blocks), data)


# ----------------------------------------------------------------------------------------------------------------
# stats --sweep
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
