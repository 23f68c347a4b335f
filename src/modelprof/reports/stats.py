"""The ``stats`` kind (a forward, a training step ``--train`` or a generation ``--generate``) and its view.

Plain, frozen data that counting returns, and the document a renderer draws from it. No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from modelprof import metrics, units
from modelprof.reports.document import Cell, Column, Document, Note, Table
from modelprof.reports.serial import Saved, flat, key, omit_none

Shape = tuple[int, ...]

#: Name of the row holding the ops that the top-level module runs itself.
ROOT = "(root)"


def _metric_values(values: Mapping[str, int]) -> dict[str, int]:
    """A row's metrics as JSON keys: those it carries, and the forward's (0 when absent), in the metrics' order."""
    return {k: values.get(k, 0) for k in metrics.KEYS
            if k in values or metrics.BY_KEY[k].phase in (None, metrics.Phase.FORWARD)}


def _read_metric_values(data: dict[str, Any]) -> dict[str, int]:
    return {k: data[k] for k in metrics.KEYS if k in data}


@dataclass(frozen=True)
class LayerCost(Saved):
    """One row: a leaf module, or the ops a container module runs itself (a residual add, ``q @ k.T``).

    ``values`` holds one number per column metric of :data:`modelprof.metrics.METRICS`, read as attributes
    (``row.flops``). ``input_shape`` and ``output_shape`` list the shape of every tensor going in and out of the
    module's first call; ``calls`` counts how often it ran; ``ops`` names the ops a container ran itself.
    """

    name: str
    type: str
    input_shape: tuple[Shape, ...] = ()
    output_shape: tuple[Shape, ...] = ()
    values: Mapping[str, int] = field(default_factory=dict, metadata=flat(_metric_values, _read_metric_values))
    calls: int = 0
    ops: tuple[str, ...] = ()

    def __getattr__(self, key: str) -> int:
        if key in metrics.KEYS:
            return self.values.get(key, 0)
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    @property
    def label(self) -> str:
        """The type as tables show it: ``Bottleneck (add)`` when a container ran ops itself."""
        return f"{self.type} ({', '.join(self.ops)})" if self.ops else self.type


@dataclass(frozen=True)
class TotalCost(LayerCost):
    """The totals row: rows combined by each metric's rule, plus the trainable share of the parameters."""

    trainable_params: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"non_trainable_params": self.non_trainable_params}


def combine_rows(rows: list[LayerCost] | tuple[LayerCost, ...]) -> dict[str, int]:
    """The values of several rows combined, metric by metric (sums, or maxima where a metric says so); only the
    metrics the rows carry."""
    present = {key for r in rows for key in r.values}
    return {m.key: m.combined([r.values.get(m.key, 0) for r in rows]) for m in metrics.COLUMNS if m.key in present}


def fold_name(name: str, depth: int | None) -> str:
    """The row a module's row folds into at ``depth``: its ancestor that deep (``(root)`` stays itself)."""
    if depth is None or name == ROOT:
        return name
    return ".".join(name.split(".")[:depth])


@dataclass(frozen=True)
class InputInfo(Saved):
    """One model input as it was built: its keyword name (None when positional), shape and dtype."""

    name: str | None
    shape: Shape
    dtype: str


@dataclass(frozen=True)
class ModuleInfo(Saved):
    """What folding needs to know of a module that may have no row of its own."""

    type: str
    input_shape: tuple[Shape, ...] = ()
    output_shape: tuple[Shape, ...] = ()


@dataclass(frozen=True)
class MemorySummary(Saved):
    """The memory a run needs, in bytes, by category; ``peak`` is the most tensor memory alive at once (static
    part plus op-made storage), reached while ``peak_row`` ran in ``peak_phase``."""

    parameters: int = 0
    buffers: int = 0
    inputs: int = 0
    gradients: int = 0
    optimizer: int = 0
    saved: int = 0
    peak: int = 0
    peak_row: str = ROOT
    peak_phase: str = "forward"
    phase_peaks: dict[str, int] = field(default_factory=dict)  #: the peak within each phase
    #: what the peak is made of: the static part (parameters, buffers, inputs) and the op-made storage alive then
    #: by what it holds (activations, temporary, gradients, optimizer state, gathered parameters, communication
    #: buffers); the values add up to ``peak``
    peak_parts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DecodeStep(Saved):
    """One decode step: the position of the token it makes, and what that step costs."""

    position: int
    flops: int
    madd: int
    nbytes: int = field(metadata=key("bytes"))


@dataclass(frozen=True)
class GenerationSummary(Saved):
    """``stats --generate``: the prompt, the tokens made, the KV cache's bytes at the end, and each decode step."""

    batch: int
    prompt: int
    new_tokens: int
    kv_cache: int
    steps: tuple[DecodeStep, ...] = ()

    @property
    def growth(self) -> float | None:
        """Flops added per position from the first decode step to the last (a line through both ends)."""
        if len(self.steps) < 2:
            return None
        first, last = self.steps[0], self.steps[-1]
        return (last.flops - first.flops) / (last.position - first.position)

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"growth_flops_per_position": self.growth}


@dataclass(frozen=True)
class CrossCheckRow(Saved):
    """One layer: modelprof's numbers, the other tool's (None where it has no row), and why they differ."""

    name: str
    type: str
    flops: int
    tool_flops: float | None
    madd: int
    tool_madd: float | None
    reason: str = ""


@dataclass(frozen=True)
class CrossCheck(Saved):
    """Another tool's per-layer results beside modelprof's (``stats --crosscheck TOOL``). ``error`` is set when the
    tool failed outright."""

    tool: str
    rows: tuple[CrossCheckRow, ...] = field(metadata=key("layers"))
    total_flops: float | None
    error: str | None = None


@dataclass(frozen=True)
class ParallelLayout(Saved):
    """The job a report is one rank of (``--gpus N --fsdp [--tp T]``): its rows, totals and memory are that rank's
    share. ``data`` is the data-parallel layout (None: tensor parallelism only), ``tp`` the tensor-parallel degree,
    ``describe`` the layout in words; ``held_tp_sharded`` and ``held_whole`` the parameter elements this rank holds
    of the weights the TP plan shards (divided over every rank of the job, or of its pipeline stage; over the
    tensor-parallel ranks only under DDP and ZeRO-1, which hold every parameter) and of those it leaves whole
    (divided over the data-parallel ranks only under FSDP and ZeRO-2), FSDP's padding of a last shard included
    (None where not counted: a bench); ``pp`` the pipeline stages (None: not pipelined)."""

    gpus: int
    data: str | None
    rank: int = 0
    tp: int = 1
    describe: str = ""
    held_tp_sharded: int | None = field(default=None, metadata=omit_none())
    held_whole: int | None = field(default=None, metadata=omit_none())
    pp: int | None = field(default=None, metadata=omit_none())

    @classmethod
    def of(cls, p: Any, held: tuple[int, int] | tuple = ()) -> ParallelLayout:
        """The layout of the job ``p`` (a :class:`~modelprof.workload.Parallel`), as rank ``p.rank`` holds it
        (``held``: its TP-sharded and whole parameter elements, where counted)."""
        return cls(p.gpus, p.data.value if p.data else None, p.rank, p.tp, p.describe(), *held,
                   pp=p.pp if p.pp > 1 else None)


@dataclass(frozen=True)
class CommCall(Saved):
    """The collectives of one kind that one row ran in one phase: how many, and the bytes of the buffers they
    worked on (an all-gather's gathered output, a reduce-scatter's input, an all-reduce's tensor)."""

    kind: str
    count: int
    bytes: int
    phase: str
    row: str


@dataclass(frozen=True)
class CountedAs(Saved):
    """The peer convention a report was counted in (``stats --convention``): its ``flops`` are that tool's number,
    in ``unit``, and its MAdd 0."""

    name: str
    unit: str
    header: str


@dataclass(frozen=True)
class Report(Saved):
    """Everything ``modelprof stats`` measured. ``to_dict()`` is the documented JSON (kind ``stats``); a training
    step has the phases forward, backward and optimizer, a generation has ``generation``."""

    KIND: ClassVar[str] = "stats"

    model: str
    inputs: tuple[InputInfo, ...]
    device: str
    dtype: str
    layers: tuple[LayerCost, ...]
    total: TotalCost
    unsupported: dict[str, int] = field(default_factory=dict)
    modules: dict[str, ModuleInfo] = field(default_factory=dict, repr=False)
    phases: tuple[str, ...] = ("forward",)
    memory: MemorySummary | None = field(default=None, metadata=omit_none())
    generation: GenerationSummary | None = field(default=None, metadata=omit_none())
    crosscheck: CrossCheck | None = field(default=None, metadata=omit_none())
    convention: CountedAs | None = field(default=None, metadata=omit_none())
    parallel: ParallelLayout | None = field(default=None, metadata=omit_none())
    comm: tuple[CommCall, ...] | None = field(default=None, metadata=omit_none())

    def fold(self, depth: int | None) -> Report:
        """Rows folded into the module tree at ``depth`` (0 keeps the total only; None keeps leaf rows).

        A row deeper than ``depth`` is combined into its ancestor at that depth, so the rows still add up to the
        total exactly.
        """
        if depth is None:
            return self
        if depth <= 0:
            return replace(self, layers=())
        groups: dict[str, list[LayerCost]] = {}
        for row in self.layers:
            groups.setdefault(fold_name(row.name, depth), []).append(row)
        rows = []
        for name, group in groups.items():
            if len(group) == 1 and group[0].name == name:
                rows.append(group[0])
                continue
            info = self.modules.get(name, ModuleInfo(type=name))
            rows.append(LayerCost(name=name, type=info.type, input_shape=info.input_shape,
                                  output_shape=info.output_shape, values=combine_rows(group),
                                  calls=max(r.calls for r in group)))
        return replace(self, layers=tuple(rows))


# ----------------------------------------------------------------------------------------------------------------
# The view
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


def stats_title(report: Any) -> str:
    """``model  (inputs; device, dtype)``."""
    return f"{report.model}  ({units.inputs(report.inputs)}; {report.device}, {report.dtype})"


def stats_document(report: Report) -> Document:
    """Per-layer table with a total row, the parameter split, the ops not counted; with a cross-check, another
    tool's numbers beside modelprof's."""
    shown = metrics.in_phases(report.phases)
    counted_as = report.convention
    if counted_as is not None:  # the peer's number in the Flops column, no MAdd
        shown = tuple(m for m in shown if m.key != "madd")
    training = len(report.phases) > 1  # a wide table: the shapes go to CSV only

    def title(m: metrics.Metric) -> str:
        return f"{counted_as.unit} ({counted_as.name})" if counted_as and m.key == "flops" else m.title

    columns = (*(Column(t, extra=training and "shape" in t) for t, _ in _ROW_COLUMNS),
               *(Column(title(m), numeric=True) for m in shown), Column("Calls", numeric=True, extra=True))
    rows = tuple(layer_cells(r, shown) for r in report.layers) or (layer_cells(report.total, shown),)
    total = layer_cells(report.total, shown) if report.layers else None
    t = report.total
    blocks: list = [Note(counted_as.header)] if counted_as is not None else []
    blocks += [Table(columns, rows, total=total),
               Note(f"Params: {t.params:,} ({t.trainable_params:,} trainable, {t.non_trainable_params:,} "
                    "non-trainable)")]
    if "backward" in report.phases:
        blocks.append(Note(_step_line(report)))
    if report.generation is not None:
        blocks += [Note(line) for line in _generation_lines(report)]
    if report.memory is not None:
        blocks.append(Note(_memory_line(report)))
        if report.memory.peak_parts:
            blocks.append(Note("At the peak: " + ", ".join(f"{kind} {units.nbytes(size)}" for kind, size in
                                                           report.memory.peak_parts.items() if size)))
    if report.unsupported:
        blocks.append(Note("Not counted (no formula): " + ", ".join(f"{op} ×{n}" for op, n in
                                                                   report.unsupported.items())))
    if report.parallel is not None:
        blocks += _parallel_blocks(report)
    if report.crosscheck is not None:
        blocks += _crosscheck_blocks(report.crosscheck, t.flops)
    return Document(report.KIND, stats_title(report), tuple(blocks), report.to_dict())


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


def _parallel_blocks(report: Report) -> list:
    """The job line, and the collectives per kind and phase with the rows that ran them."""
    p = report.parallel
    held = ""
    if p.held_tp_sharded or p.held_whole:
        per_stage = p.gpus // (p.pp or 1)
        dp = per_stage // p.tp if p.data in ("fsdp", "zero2") else 1  # DDP and ZeRO-1 hold every parameter
        whole = f"over the {dp} data-parallel ranks" if dp > 1 else "the same on every rank"
        sharded_over = per_stage if dp > 1 else p.tp
        over = (f"all {p.gpus} ranks" if sharded_over == p.gpus else f"the {per_stage} ranks of its stage"
                if sharded_over == per_stage else f"the {p.tp} tensor-parallel ranks")
        held = (f"; it holds {p.held_tp_sharded:,} parameters of the weights the TP plan shards (over {over}) "
                f"and {p.held_whole:,} of those it leaves whole ({whole})" if p.tp > 1
                else f"; it holds {p.held_whole:,} parameters")
    blocks: list = [Note(f"Rank {p.rank} of {p.gpus} ({p.describe or p.data}): the rows, totals and memory above "
                         f"are this rank's share{held}")]
    groups: dict[tuple[str, str], list[CommCall]] = {}
    for call in report.comm or ():
        groups.setdefault((call.kind, call.phase), []).append(call)
    if groups:
        columns = (Column("Collective"), Column("Phase"), Column("Calls", True), Column("Bytes", True),
                   Column("Rows"))
        rows = tuple((Cell(kind), Cell(phase), Cell(str(sum(c.count for c in calls)), sum(c.count for c in calls)),
                      Cell(units.nbytes(sum(c.bytes for c in calls)), sum(c.bytes for c in calls)),
                      Cell(", ".join(dict.fromkeys(c.row for c in calls))))
                     for (kind, phase), calls in groups.items())
        blocks.append(Table(columns, rows, title="Communication per step (bytes: the buffers the collectives work on)"))
    return blocks


def _crosscheck_blocks(check: CrossCheck, ours_total: int) -> list:
    blocks: list = []
    if check.rows:
        def show(value: float | None) -> Cell:
            return Cell("—" if value is None else units.count(value), value)

        columns = (Column("Module"), Column("Type"), Column("Flops", True), Column(f"{check.tool} Flops", True),
                   Column("MAdd", True), Column(f"{check.tool} MAdd", True), Column("Why they differ"))
        rows = tuple((Cell(r.name), Cell(r.type), Cell(units.count(r.flops), r.flops), show(r.tool_flops),
                      Cell(units.count(r.madd), r.madd), show(r.tool_madd), Cell(r.reason)) for r in check.rows)
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
