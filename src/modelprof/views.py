"""Views: each kind of report becomes a :class:`~modelprof.document.Document` (title, tables, notes, JSON data).

Columns of per-layer tables, the cells of a comparison and the budget lines are derived from
:data:`modelprof.metrics.METRICS`. No torch and no format here: renderers decide how a document looks.
"""

from __future__ import annotations

from collections.abc import Callable

from . import metrics, units
from .budgets import CheckResult
from .compare import Comparison, Delta
from .document import Cell, Column, Document, Note, Table
from .report import SCHEMA_VERSION, BatchResult, BenchReport, CrossCheck, LayerCost, Report

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


def layer_cells(row: LayerCost) -> tuple[Cell, ...]:
    """A row's cells: name, type, shapes, then every column metric (humanized text, exact value)."""
    described = tuple(Cell(text(row)) for _, text in _ROW_COLUMNS)
    numbers = tuple(Cell(m.unit.show(getattr(row, m.key)), getattr(row, m.key)) for m in metrics.COLUMNS)
    return (*described, *numbers, Cell(str(row.calls), row.calls))


def stats_title(report: Report | BenchReport) -> str:
    """``model  (inputs; device, dtype)``."""
    return f"{report.model}  ({units.inputs(report.inputs)}; {report.device}, {report.dtype})"


def stats_document(report: Report, crosscheck: CrossCheck | None = None) -> Document:
    """Per-layer table with a total row, the parameter split, the ops not counted; with ``crosscheck``, another
    tool's numbers beside modelprof's."""
    columns = (*(Column(t) for t, _ in _ROW_COLUMNS), *(Column(m.title, numeric=True) for m in metrics.COLUMNS),
               Column("Calls", numeric=True, extra=True))
    rows = tuple(layer_cells(r) for r in report.layers) or (layer_cells(report.total),)
    total = layer_cells(report.total) if report.layers else None
    t = report.total
    blocks: list = [Table(columns, rows, total=total),
                    Note(f"Params: {t.params:,} ({t.trainable_params:,} trainable, {t.non_trainable_params:,} "
                         "non-trainable)")]
    if report.unsupported:
        blocks.append(Note("Not counted (no formula): " + ", ".join(f"{op} ×{n}" for op, n in
                                                                   report.unsupported.items())))
    data = report.to_dict()
    if crosscheck is not None:
        blocks += _crosscheck_blocks(crosscheck, t.flops)
        data["backend"] = crosscheck.to_dict()
    return Document(report.KIND, stats_title(report), tuple(blocks), data)


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
    """The sweep (one row per batch size), then the environment, the search's answer and a throughput chart."""
    columns = tuple(Column(title, numeric=title != "Stable") for title, _ in _BENCH_COLUMNS)
    rows = tuple(tuple(cell(r) for _, cell in _BENCH_COLUMNS) for r in report.sweep)
    title = f"{report.model}  ({units.inputs(report.inputs)}; {report.device})"
    notes = tuple(Note(line) for line in _bench_summary(report) + _throughput_chart(report))
    return Document(report.KIND, title, (Table(columns, rows), *notes), report.to_dict())


def _bench_summary(report: BenchReport) -> list[str]:
    """Environment, compile time, the batch search's answer."""
    env = report.environment
    options = (", amp" if env.get("amp") else "") + (", channels-last" if env.get("channels_last") else "")
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
    lines = ["Throughput by batch:"]
    for r in sorted(report.sweep, key=lambda r: r.batch):
        bar = "█" * max(1, round(width * r.throughput / best))
        lines.append(f"{r.batch:>8} {bar} {r.throughput:,.1f}/s")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------------------------------------------


def _value(metric: str, v: float) -> str:
    """A value in its metric's unit."""
    if metric in metrics.BY_KEY:
        return metrics.BY_KEY[metric].unit.show(v)
    if metric == "median_latency_s":
        return f"{units.milliseconds(v)} ms"
    return units.count(v)


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
                         *(Column(metrics.BY_KEY[d.metric].title, True) for d in changed[0].deltas))
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
