"""The one list of metrics. Everything that shows, sums, compares or budgets a metric is derived from it.

A :class:`Metric` says what a number is (key, title, unit), how rows combine into a total, which phase of a step
it is measured in, and which op-level quantity of a :class:`~modelprof.counting.formulas.Cost` it accumulates. The
accumulator in counting, the fields of report rows, the columns of every format, the cells of ``compare`` and the
``check`` budgets (``--max-<key>``) all read this list: a new metric is one entry here plus the code that computes
it. No torch here, so renderers can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from modelprof import units


class Unit(StrEnum):
    """What a metric's number counts; decides how it is humanized and parsed."""

    COUNT = "count"
    BYTES = "bytes"

    @property
    def show(self) -> Callable[[float], str]:
        """Humanize a value: ``18.38M`` or ``2.86MiB``."""
        return units.nbytes if self is Unit.BYTES else units.count

    @property
    def parse(self) -> Callable[[str], int]:
        """Parse a budget value: ``4.5G`` or ``300MB``."""
        return units.parse_bytes if self is Unit.BYTES else units.parse_count


class Phase(StrEnum):
    """The part of a step a metric is measured in; counting keeps one record per (module, phase)."""

    FORWARD = "forward"
    BACKWARD = "backward"
    OPTIMIZER = "optimizer"
    DECODE = "decode"


class Combine(StrEnum):
    """How rows combine into a total (and into a folded row)."""

    SUM = "sum"
    MAX = "max"


@dataclass(frozen=True)
class Metric:
    """One metric.

    ``source`` names the :class:`~modelprof.counting.formulas.Cost` field it accumulates from op costs in ``phase``
    (None: the collector computes it per module, as it does parameters). ``parts`` makes a derived metric, the
    sum of other metrics (no column of its own). ``budget`` gives ``check`` a ``--max-<key>`` limit.
    """

    key: str
    title: str
    unit: Unit = Unit.COUNT
    help: str = ""
    combine: Combine = Combine.SUM
    phase: Phase | None = Phase.FORWARD
    source: str | None = None
    parts: tuple[str, ...] = ()
    budget: bool = True

    @property
    def column(self) -> bool:
        """True when the metric is a column of per-layer tables (derived metrics are not)."""
        return not self.parts

    @property
    def label(self) -> str:
        """How budgets and diffs name it: its key, or its parts joined by ``+``."""
        return " + ".join(self.parts) or self.key

    def value(self, values: Mapping[str, int]) -> int:
        """This metric read from a row's values (derived metrics add their parts)."""
        if self.parts:
            return sum(values.get(part, 0) for part in self.parts)
        return values.get(self.key, 0)

    def combined(self, numbers: list[int]) -> int:
        """Rows combined into one number, by ``combine``."""
        if not numbers:
            return 0
        return max(numbers) if self.combine is Combine.MAX else sum(numbers)


METRICS: tuple[Metric, ...] = (
    Metric("params", "Params", help="parameters (a shared weight counts once)", phase=None),
    Metric("madd", "MAdd", help="multiplications and additions counted separately", source="madd"),
    Metric("flops", "Flops", help="multiply-accumulates counted once", source="flops"),
    Metric("mem_read", "MemRead", Unit.BYTES, help="bytes read", source="mem_read"),
    Metric("mem_write", "MemWrite", Unit.BYTES, help="bytes written", source="mem_write"),
    Metric("mem", "Mem", Unit.BYTES, help="MemRead + MemWrite", parts=("mem_read", "mem_write")),
    Metric("bwd_madd", "Bwd MAdd", help="MAdd of the backward", phase=Phase.BACKWARD, source="madd", budget=False),
    Metric("bwd_flops", "Bwd Flops", help="multiply-accumulates of the backward (stats --train)",
           phase=Phase.BACKWARD, source="flops"),
    Metric("bwd_mem_read", "Bwd MemRead", Unit.BYTES, help="bytes the backward reads", phase=Phase.BACKWARD,
           source="mem_read", budget=False),
    Metric("bwd_mem_write", "Bwd MemWrite", Unit.BYTES, help="bytes the backward writes", phase=Phase.BACKWARD,
           source="mem_write", budget=False),
    Metric("opt_madd", "Opt MAdd", help="MAdd of the optimizer step", phase=Phase.OPTIMIZER, source="madd",
           budget=False),
    Metric("opt_flops", "Opt Flops", help="Flops of the optimizer step", phase=Phase.OPTIMIZER, source="flops",
           budget=False),
    Metric("opt_mem_read", "Opt MemRead", Unit.BYTES, help="bytes the optimizer step reads",
           phase=Phase.OPTIMIZER, source="mem_read", budget=False),
    Metric("opt_mem_write", "Opt MemWrite", Unit.BYTES, help="bytes the optimizer step writes",
           phase=Phase.OPTIMIZER, source="mem_write", budget=False),
    Metric("dec_madd", "Decode MAdd", help="MAdd of every decode step together (stats --generate)",
           phase=Phase.DECODE, source="madd", budget=False),
    Metric("dec_flops", "Decode Flops", help="Flops of every decode step together (stats --generate)",
           phase=Phase.DECODE, source="flops", budget=False),
    Metric("dec_mem_read", "Decode MemRead", Unit.BYTES, help="bytes every decode step reads",
           phase=Phase.DECODE, source="mem_read", budget=False),
    Metric("dec_mem_write", "Decode MemWrite", Unit.BYTES, help="bytes every decode step writes",
           phase=Phase.DECODE, source="mem_write", budget=False),
    Metric("saved", "Saved act.", Unit.BYTES, help="activations autograd saves for the backward",
           phase=Phase.BACKWARD, budget=False),
    Metric("step_flops", "Step Flops", help="Flops of a whole training step (forward, backward, optimizer)",
           parts=("flops", "bwd_flops", "opt_flops")),
)

#: Metrics that are per-layer columns, in column order.
COLUMNS: tuple[Metric, ...] = tuple(m for m in METRICS if m.column)
#: Keys of the column metrics: the numeric fields of every row.
KEYS: tuple[str, ...] = tuple(m.key for m in COLUMNS)
#: Metrics accumulated from op costs by the counting collector.
ACCUMULATED: tuple[Metric, ...] = tuple(m for m in COLUMNS if m.source is not None)
BY_KEY: dict[str, Metric] = {m.key: m for m in METRICS}


def in_phases(phases: tuple[str, ...] | list[str]) -> tuple[Metric, ...]:
    """The column metrics measured when ``phases`` ran (per-module metrics such as Params always are)."""
    return tuple(m for m in COLUMNS if m.phase is None or m.phase in phases)
