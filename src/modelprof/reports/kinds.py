"""Plain, frozen data that collectors return and renderers read. No torch here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from modelprof import metrics
from modelprof.timing import roofline
from modelprof.timing.roofline import Peaks

Shape = tuple[int, ...]

#: Name of the row holding the ops that the top-level module runs itself.
ROOT = "(root)"

#: Version of the JSON form of every report kind; bumped when a key changes meaning or goes away. 2: the peaks'
#: MAdd/s are ``madd_per_s`` (1: ``flops``), and a fit report lists its fits under ``fits`` only.
SCHEMA_VERSION = 2


def _shapes_from_json(value: Any) -> tuple[Shape, ...]:
    return tuple(tuple(s) for s in value or ())


@dataclass(frozen=True)
class LayerCost:
    """One row: a leaf module, or the ops a container module runs itself (a residual add, ``q @ k.T``).

    ``values`` holds one number per column metric of :data:`modelprof.metrics.METRICS`, read as attributes
    (``row.flops``). ``input_shape`` and ``output_shape`` list the shape of every tensor going in and out of the
    module's first call; ``calls`` counts how often it ran; ``ops`` names the ops a container ran itself.
    """

    name: str
    type: str
    input_shape: tuple[Shape, ...] = ()
    output_shape: tuple[Shape, ...] = ()
    values: Mapping[str, int] = field(default_factory=dict)
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: one key per metric; shapes become lists."""
        return {"name": self.name, "type": self.type, "input_shape": [list(s) for s in self.input_shape],
                "output_shape": [list(s) for s in self.output_shape],
                **{key: self.values.get(key, 0) for key in metrics.KEYS
                   if key in self.values or metrics.BY_KEY[key].phase in (None, metrics.Phase.FORWARD)},
                "calls": self.calls,
                "ops": list(self.ops)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerCost:
        return cls(name=d["name"], type=d["type"], input_shape=_shapes_from_json(d.get("input_shape")),
                   output_shape=_shapes_from_json(d.get("output_shape")),
                   values={key: d[key] for key in metrics.KEYS if key in d}, calls=d.get("calls", 0),
                   ops=tuple(d.get("ops", ())))


@dataclass(frozen=True)
class TotalCost(LayerCost):
    """The totals row: rows combined by each metric's rule, plus the trainable share of the parameters."""

    trainable_params: int = 0

    @property
    def non_trainable_params(self) -> int:
        return self.params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["trainable_params"] = self.trainable_params
        d["non_trainable_params"] = self.non_trainable_params
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TotalCost:
        row = LayerCost.from_dict(d)
        return cls(**{f.name: getattr(row, f.name) for f in fields(LayerCost)},
                   trainable_params=d.get("trainable_params", 0))


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
class InputInfo:
    """One model input as it was built: its keyword name (None when positional), shape and dtype."""

    name: str | None
    shape: Shape
    dtype: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputInfo:
        return cls(d.get("name"), tuple(d["shape"]), d["dtype"])


@dataclass(frozen=True)
class ModuleInfo:
    """What folding needs to know of a module that may have no row of its own."""

    type: str
    input_shape: tuple[Shape, ...] = ()
    output_shape: tuple[Shape, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "input_shape": [list(s) for s in self.input_shape],
                "output_shape": [list(s) for s in self.output_shape]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModuleInfo:
        return cls(d["type"], _shapes_from_json(d.get("input_shape")), _shapes_from_json(d.get("output_shape")))


@dataclass(frozen=True)
class MemorySummary:
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

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MemorySummary:
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass(frozen=True)
class DecodeStep:
    """One decode step: the position of the token it makes, and what that step costs."""

    position: int
    flops: int
    madd: int
    nbytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "flops": self.flops, "madd": self.madd, "bytes": self.nbytes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecodeStep:
        return cls(d["position"], d["flops"], d["madd"], d["bytes"])


@dataclass(frozen=True)
class GenerationSummary:
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

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "prompt": self.prompt, "new_tokens": self.new_tokens,
                "kv_cache": self.kv_cache, "growth_flops_per_position": self.growth,
                "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationSummary:
        return cls(d["batch"], d["prompt"], d["new_tokens"], d["kv_cache"],
                   tuple(DecodeStep.from_dict(s) for s in d.get("steps", ())))


@dataclass(frozen=True)
class Report:
    """Everything ``modelprof stats`` measured. ``to_dict()`` is the documented JSON (kind ``stats``)."""

    KIND: ClassVar[str] = "stats"

    model: str
    inputs: tuple[InputInfo, ...]
    device: str
    dtype: str
    layers: tuple[LayerCost, ...]
    total: TotalCost
    unsupported: dict[str, int] = field(default_factory=dict)
    modules: dict[str, ModuleInfo] = field(default_factory=dict, compare=False, repr=False)
    phases: tuple[str, ...] = ("forward",)
    memory: MemorySummary | None = field(default=None, compare=False)
    generation: GenerationSummary | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form documented in the README."""
        return {
            "kind": self.KIND,
            "schema_version": SCHEMA_VERSION,
            "phases": list(self.phases),
            "model": self.model,
            "inputs": [i.to_dict() for i in self.inputs],
            "device": self.device,
            "dtype": self.dtype,
            "layers": [layer.to_dict() for layer in self.layers],
            "total": self.total.to_dict(),
            "unsupported": dict(self.unsupported),
            "modules": {name: info.to_dict() for name, info in self.modules.items()},
            **({"memory": self.memory.to_dict()} if self.memory else {}),
            **({"generation": self.generation.to_dict()} if self.generation else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """Rebuild a report from its JSON form (for rendering, folding or comparing saved reports)."""
        return cls(
            model=d["model"],
            inputs=tuple(InputInfo.from_dict(i) for i in d.get("inputs", ())),
            device=d.get("device", "cpu"),
            dtype=d.get("dtype", "float32"),
            layers=tuple(LayerCost.from_dict(x) for x in d["layers"]),
            total=TotalCost.from_dict(d["total"]),
            unsupported=dict(d.get("unsupported", {})),
            modules={name: ModuleInfo.from_dict(info) for name, info in d.get("modules", {}).items()},
            phases=tuple(d.get("phases", ("forward",))),
            memory=MemorySummary.from_dict(d["memory"]) if d.get("memory") else None,
            generation=GenerationSummary.from_dict(d["generation"]) if d.get("generation") else None,
        )

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
# Timing (modelprof bench)
# ----------------------------------------------------------------------------------------------------------------

#: A result is flagged as noisy when its interquartile range exceeds this share of its median.
NOISY_IQR_RATIO = 0.10


def _quantile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of sorted data (NumPy's default, 'linear'): position q*(n-1)."""
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class LatencyStats:
    """Statistics of per-call latencies, in seconds; ``samples`` keeps every raw measurement in call order.

    mean, stddev (sample standard deviation, n - 1), median, p90, p99, min, max; ``iqr`` = p75 - p25.
    Quantiles interpolate linearly between the closest ranks (NumPy's default).
    """

    samples: tuple[float, ...]
    mean: float
    stddev: float
    median: float
    p90: float
    p99: float
    min: float
    max: float
    iqr: float

    @classmethod
    def from_samples(cls, samples: tuple[float, ...] | list[float]) -> LatencyStats:
        """Summarize raw latencies (at least one)."""
        if not samples:
            raise ValueError("no latency samples")
        ordered = sorted(samples)
        n = len(ordered)
        mean = sum(ordered) / n
        stddev = (sum((x - mean) ** 2 for x in ordered) / (n - 1)) ** 0.5 if n > 1 else 0.0
        return cls(
            samples=tuple(samples), mean=mean, stddev=stddev, median=_quantile(ordered, 0.5),
            p90=_quantile(ordered, 0.9), p99=_quantile(ordered, 0.99), min=ordered[0], max=ordered[-1],
            iqr=_quantile(ordered, 0.75) - _quantile(ordered, 0.25),
        )

    @property
    def noisy(self) -> bool:
        """True when IQR / median exceeds 10 %: the machine was busy or the model's time varies."""
        return self.median > 0 and self.iqr / self.median > NOISY_IQR_RATIO

    def to_dict(self) -> dict[str, Any]:
        ms = 1e3
        return {
            "samples_ms": [s * ms for s in self.samples],
            "mean_ms": self.mean * ms, "stddev_ms": self.stddev * ms, "median_ms": self.median * ms,
            "p90_ms": self.p90 * ms, "p99_ms": self.p99 * ms, "min_ms": self.min * ms, "max_ms": self.max * ms,
            "iqr_ms": self.iqr * ms, "noisy": self.noisy,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LatencyStats:
        return cls.from_samples([s / 1e3 for s in d["samples_ms"]])


@dataclass(frozen=True)
class BatchResult:
    """One batch size measured: latency per call, throughput, and the peak memory of the measurement.

    ``throughput`` is batch / mean latency (samples/s). On CUDA ``pipelined_throughput`` comes from a separate run
    with no synchronization between calls (events at both ends); None elsewhere.
    """

    batch: int
    latency: LatencyStats
    throughput: float
    peak_memory: int
    pipelined_throughput: float | None = None
    point: int | None = None  #: the value of a swept input size (``bench --sweep seq=...``)

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, **({"point": self.point} if self.point is not None else {}),
                **self.latency.to_dict(), "throughput": self.throughput,
                "pipelined_throughput": self.pipelined_throughput, "peak_memory": self.peak_memory}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BatchResult:
        return cls(d["batch"], LatencyStats.from_dict(d), d["throughput"], d["peak_memory"],
                   d.get("pipelined_throughput"), d.get("point"))


@dataclass(frozen=True)
class LayerTiming:
    """One row of ``bench --layers``: its seconds in each timed forward, and its counted work (MAdd, bytes)."""

    name: str
    type: str
    calls: int
    samples: tuple[float, ...]
    madd: int = 0
    nbytes: int = 0

    @property
    def median(self) -> float:
        return _quantile(sorted(self.samples), 0.5) if self.samples else 0.0

    def to_dict(self, peaks: Peaks | None = None, total: float = 0.0) -> dict[str, Any]:
        """JSON: raw samples and the median in ms, the work, and what follows from them (with ``peaks``, the
        roofline: attainable time, bound, efficiency)."""
        median = self.median
        d: dict[str, Any] = {
            "name": self.name, "type": self.type, "calls": self.calls, "median_ms": median * 1e3,
            "share": median / total if total else None, "madd": self.madd, "bytes": self.nbytes,
            "intensity": roofline.intensity(self.madd, self.nbytes),
            "achieved_flops": self.madd / median if median > 0 else None,
            "achieved_bandwidth": self.nbytes / median if median > 0 else None,
        }
        if peaks is not None and (self.madd or self.nbytes):
            d["attainable_ms"] = roofline.attainable_seconds(self.madd, self.nbytes, peaks) * 1e3
            d["bound"] = roofline.bound(self.madd, self.nbytes, peaks)
            d["efficiency"] = roofline.efficiency(self.madd, self.nbytes, median, peaks)
        d["samples_ms"] = [x * 1e3 for x in self.samples]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerTiming:
        return cls(d["name"], d["type"], d["calls"], tuple(x / 1e3 for x in d["samples_ms"]), d.get("madd", 0),
                   d.get("bytes", 0))


@dataclass(frozen=True)
class LayerProfile:
    """``bench --layers``: a row per stats row (at ``depth``) plus ``(unattributed)``, the plain forward's median
    measured in the same run, and the device's peaks when known."""

    rows: tuple[LayerTiming, ...]
    forward_median: float
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

    def to_dict(self) -> dict[str, Any]:
        total = self.rows_total
        return {"depth": self.depth, "forward_median_ms": self.forward_median * 1e3, "rows_total_ms": total * 1e3,
                "mfu": self.mfu, "roof_ms": None if self.roof_seconds is None else self.roof_seconds * 1e3,
                "peaks": self.peaks.to_dict() if self.peaks else None,
                "rows": [r.to_dict(self.peaks, total) for r in self.rows]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerProfile:
        return cls(tuple(LayerTiming.from_dict(r) for r in d["rows"]), d["forward_median_ms"] / 1e3, d.get("depth"),
                   Peaks.from_dict(d["peaks"]) if d.get("peaks") else None)


@dataclass(frozen=True)
class GenerationTiming:
    """``bench --generate``: time to first token (the prefill and the first token's choice) per generation, and
    the latency of every decode step after it; ``tokens_per_second`` counts every sequence of the batch."""

    batch: int
    prompt: int
    new_tokens: int
    first_token: LatencyStats
    per_token: LatencyStats

    @property
    def tokens_per_second(self) -> float:
        return self.batch / self.per_token.mean if self.per_token.mean > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "prompt": self.prompt, "new_tokens": self.new_tokens,
                "time_to_first_token": self.first_token.to_dict(), "per_token": self.per_token.to_dict(),
                "tokens_per_second": self.tokens_per_second}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerationTiming:
        return cls(d["batch"], d["prompt"], d["new_tokens"], LatencyStats.from_dict(d["time_to_first_token"]),
                   LatencyStats.from_dict(d["per_token"]))


@dataclass(frozen=True)
class BenchReport:
    """Everything ``modelprof bench`` measured. ``to_dict()`` is the documented JSON.

    ``sweep`` holds one result per batch size measured (one without ``--find-batch``); ``max_batch`` is the
    largest batch that ran, ``best_batch`` the smallest reaching 95 % of the best throughput, ``probes`` the
    forward passes the search ran (None without ``--find-batch``).
    """

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
    failed: tuple[int, ...] = ()
    layers: LayerProfile | None = None
    generation: GenerationTiming | None = None

    KIND: ClassVar[str] = "bench"

    def to_dict(self) -> dict[str, Any]:
        """The JSON form documented in the README (kind ``bench``)."""
        return {
            "kind": self.KIND, "schema_version": SCHEMA_VERSION, "model": self.model,
            "inputs": [i.to_dict() for i in self.inputs], "device": self.device,
            "dtype": self.dtype, "environment": dict(self.environment), "compile_seconds": self.compile_seconds,
            "max_batch": self.max_batch, "best_batch": self.best_batch, "probes": self.probes,
            "failed_batches": list(self.failed), "sweep": [r.to_dict() for r in self.sweep],
            "layers": self.layers.to_dict() if self.layers else None,
            "generation": self.generation.to_dict() if self.generation else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchReport:
        return cls(
            model=d["model"],
            inputs=tuple(InputInfo.from_dict(i) for i in d.get("inputs", ())),
            device=d["device"], dtype=d["dtype"], environment=d.get("environment", {}),
            sweep=tuple(BatchResult.from_dict(r) for r in d["sweep"]), compile_seconds=d.get("compile_seconds"),
            max_batch=d.get("max_batch"), best_batch=d.get("best_batch"), probes=d.get("probes"),
            failed=tuple(d.get("failed_batches", ())),
            layers=LayerProfile.from_dict(d["layers"]) if d.get("layers") else None,
            generation=GenerationTiming.from_dict(d["generation"]) if d.get("generation") else None,
        )


#: The best-throughput batch is the smallest reaching this share of the best throughput seen.
BEST_BATCH_SHARE = 0.95


def best_batch(sweep: tuple[BatchResult, ...] | list[BatchResult]) -> int | None:
    """The smallest batch whose throughput is at least 95 % of the best throughput in the sweep."""
    if not sweep:
        return None
    best = max(r.throughput for r in sweep)
    return min(r.batch for r in sweep if r.throughput >= BEST_BATCH_SHARE * best)


# ----------------------------------------------------------------------------------------------------------------
# Cross-checks against other tools (modelprof stats --crosscheck thop|torchstat)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrossCheckRow:
    """One layer: modelprof's numbers, the other tool's (None where it has no row), and why they differ."""

    name: str
    type: str
    flops: int
    theirs_flops: float | None
    madd: int
    theirs_madd: float | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "flops": self.flops, "backend_flops": self.theirs_flops,
                "madd": self.madd, "backend_madd": self.theirs_madd, "reason": self.reason}


@dataclass(frozen=True)
class CrossCheck:
    """Another tool's per-layer results beside modelprof's. ``error`` is set when the tool failed outright."""

    tool: str
    rows: tuple[CrossCheckRow, ...]
    total_flops: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.tool, "total_flops": self.total_flops, "error": self.error,
                "layers": [r.to_dict() for r in self.rows]}


#: The report kinds that can be saved as JSON and read back (``compare`` takes two of the same kind).
SAVED_KINDS: dict[str, type[Report] | type[BenchReport]] = {Report.KIND: Report, BenchReport.KIND: BenchReport}


# ----------------------------------------------------------------------------------------------------------------
# modelprof fit
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitReport:
    """``modelprof fit``: peaks measured on the meta device at a few batch sizes, the linear memory model drawn
    through them (``fixed + per_sample · batch``), and the largest batch whose peak fits ``memory``."""

    model: str
    memory: int
    train: bool
    peaks: tuple[tuple[int, int], ...]
    fixed: int
    per_sample: int
    max_batch: int
    peak_at_max: int
    memory_source: str = ""
    lines: tuple[tuple[str, int, int], ...] = ()  #: (phase, fixed, per_sample) for each phase
    dim: str = "batch"  #: what was fitted: the batch, or a named input size (``seq``)
    amp: bool = False  #: counted under autocast

    KIND: ClassVar[str] = "fit"

    def model_peak(self, batch: int) -> int:
        """The memory model at ``batch``: the highest of the phases' lines."""
        return max((fixed + slope * batch for _, fixed, slope in self.lines),
                   default=self.fixed + self.per_sample * batch)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "schema_version": SCHEMA_VERSION, "model": self.model, "memory": self.memory,
                "memory_source": self.memory_source, "train": self.train, "amp": self.amp,
                "dim": self.dim, "max_value": self.max_batch,
                **({"max_batch": self.max_batch} if self.dim == "batch" else {}),
                "peaks": [{"batch": b, "peak": p} for b, p in self.peaks], "fixed": self.fixed,
                "per_sample": self.per_sample, "peak_at_max": self.peak_at_max,
                "lines": [{"phase": p, "fixed": f, "per_sample": k} for p, f, k in self.lines]}


# ----------------------------------------------------------------------------------------------------------------
# modelprof stats --sweep
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepPoint:
    """One swept value: the totals counted there, and the peak of live tensor memory."""

    value: int
    totals: Mapping[str, int]
    peak: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, **dict(self.totals), "peak_memory": self.peak}


def growth_exponent(x1: float, y1: float, x2: float, y2: float) -> float | None:
    """k in y ~ x^k between two points (log-log slope); None where a value is 0."""
    import math

    if min(x1, x2, y1, y2) <= 0 or x1 == x2:
        return None
    return math.log(y2 / y1) / math.log(x2 / x1)


def growth_label(exponent: float | None) -> str:
    """``constant``, ``linear``, ``quadratic`` or ``~x^1.4``."""
    if exponent is None:
        return "—"
    for name, center in (("constant", 0), ("linear", 1), ("quadratic", 2), ("cubic", 3)):
        if abs(exponent - center) < 0.15:
            return name
    return f"~x^{exponent:.2f}"


def quadratic_through(points: list[tuple[int, int]]) -> tuple[float, float, float] | None:
    """(a, b, c) of y = a·x² + b·x + c through the last three points (exact rationals, then floats)."""
    from fractions import Fraction

    if len(points) < 3:
        return None
    (x0, y0), (x1, y1), (x2, y2) = points[-3:]
    coefficients = [Fraction(0)] * 3
    for xi, yi, xj, xk in ((x0, y0, x1, x2), (x1, y1, x0, x2), (x2, y2, x0, x1)):
        scale = Fraction(yi, (xi - xj) * (xi - xk))  # Lagrange basis, expanded
        coefficients[0] += scale
        coefficients[1] -= scale * (xj + xk)
        coefficients[2] += scale * xj * xk
    return tuple(float(c) for c in coefficients)


@dataclass(frozen=True)
class SweepReport:
    """``stats --sweep DIM=V1,V2,...``: the totals at each value of a swept size (``batch`` or a named input size)."""

    model: str
    dim: str
    points: tuple[SweepPoint, ...]
    phases: tuple[str, ...] = ("forward",)

    KIND: ClassVar[str] = "sweep"

    def growth(self, key: str) -> float | None:
        """The growth exponent of a metric (or ``peak_memory``) over the last two points."""
        if len(self.points) < 2:
            return None
        a, b = self.points[-2], self.points[-1]
        ya = a.peak if key == "peak_memory" else a.totals.get(key, 0)
        yb = b.peak if key == "peak_memory" else b.totals.get(key, 0)
        return growth_exponent(a.value, ya or 0, b.value, yb or 0)

    def fit(self, key: str) -> tuple[float, float, float] | None:
        """The quadratic a·x² + b·x + c through the last three points of a metric."""
        return quadratic_through([(p.value, p.totals.get(key, 0)) for p in self.points])

    def to_dict(self) -> dict[str, Any]:
        keys = [m.key for m in metrics.in_phases(self.phases)] + ["peak_memory"]
        return {"kind": self.KIND, "schema_version": SCHEMA_VERSION, "model": self.model, "dim": self.dim,
                "phases": list(self.phases), "points": [p.to_dict() for p in self.points],
                "growth": {key: self.growth(key) for key in keys},
                "quadratic_fit": {key: self.fit(key) for key in keys if key != "peak_memory"}}
