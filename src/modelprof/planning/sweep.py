"""``stats --sweep DIM=V1,V2,...``: count the model at each value of the batch or of a named input size (``SEQ`` in
``--input input_ids=SEQ:int64:32000``), and say how each total grows."""

from __future__ import annotations

from dataclasses import replace

from modelprof.counting.stats import run_stats
from modelprof.errors import UsageError
from modelprof.loading.source import ModelSource
from modelprof.reports.bench import BenchReport
from modelprof.reports.sweep import SweepPoint, SweepReport
from modelprof.timing.bench import BenchOptions, run_bench
from modelprof.timing.measure import TimingSettings
from modelprof.workload import FORWARD, Workload


def parse_sweep(text: str) -> tuple[str, tuple[int, ...]]:
    """``seq=128,256,512`` -> ``("SEQ", (128, 256, 512))``; ``batch=1,8,32`` -> ``("batch", ...)``."""
    name, _, values = text.partition("=")
    try:
        numbers = tuple(int(v) for v in values.split(",") if v.strip())
    except ValueError:
        numbers = ()
    if not name.strip() or len(numbers) < 2 or any(v <= 0 for v in numbers):
        raise UsageError(f"'{text}' is not a sweep; write DIM=V1,V2,... with at least two positive sizes, e.g. "
                         "seq=128,256,512 or batch=1,8,32", option="sweep")
    dim = name.strip()
    return ("batch" if dim.lower() == "batch" else dim.upper()), numbers


def run_sweep(source: ModelSource, dim: str, values: tuple[int, ...], workload: Workload = FORWARD, batch: int = 1
              ) -> SweepReport:
    """The totals and peak memory of ``workload`` on ``source`` at each value of ``dim``."""
    if dim != "batch" and dim not in source.inputs.names():
        raise UsageError(f"no input has a size named {dim}; name one in the input, e.g. input_ids={dim}:int64",
                         option="sweep")
    points = []
    phases: tuple[str, ...] = ("forward",)
    for value in sorted(values):
        point = source if dim == "batch" else replace(source, inputs=source.inputs.bind(dim, value))
        report = run_stats(point, workload, value if dim == "batch" else batch, depth=0)
        phases = report.phases
        points.append(SweepPoint(value, dict(report.total.values), report.memory.peak if report.memory else None))
    return SweepReport(source.target, dim.lower(), tuple(points), phases)


def bench_sweep(source: ModelSource, settings: TimingSettings, dim: str, values: tuple[int, ...],
                workload: Workload = FORWARD, batch: int = 1, threads: int | None = None) -> BenchReport:
    """Latency and throughput at each value of ``dim`` (the batch, or a named input size)."""
    if dim != "batch" and dim not in source.inputs.names():
        raise UsageError(f"no input has a size named {dim}; name one in the input, e.g. input_ids={dim}:int64",
                         option="sweep")
    results = []
    report = None
    for value in sorted(values):
        point = source if dim == "batch" else replace(source, inputs=source.inputs.bind(dim, value))
        report = run_bench(point, settings, BenchOptions(batch=value if dim == "batch" else batch, threads=threads),
                           workload)
        result = report.sweep[0]
        results.append(result if dim == "batch" else replace(result, point=value))
    environment = {**report.environment, "sweep_dim": dim.lower()}
    return replace(report, model=source.target, environment=environment, sweep=tuple(results))
