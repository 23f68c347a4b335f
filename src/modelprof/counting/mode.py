"""The cost mode: a module tracker, a ``TorchDispatchMode`` and a formula table; every aten op charged to a row.

The :class:`~modelprof.counting.tracker.ModuleTracker` knows which module runs; :class:`CostMode`, a
``TorchDispatchMode``, sees every aten op (from a module, a functional call or an operator in some ``forward``)
and charges its cost, from a formula table (the registry by default), to that module in the current phase.
Leaf modules get one row each; a container that runs ops itself (a residual add, ``q @ k.transpose(-2, -1)``)
gets a row of its own, so rows always add up to the totals.
"""

from __future__ import annotations

import contextlib
import operator
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from operator import attrgetter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

from modelprof import metrics
from modelprof.counting.comm import COLLECTIVES, collective_bytes
from modelprof.counting.formulas import FORMULAS, FREE_OPS, LIBRARY_FORMULAS, Formula, TensorSpec
from modelprof.counting.memory import COMMUNICATION, GRADIENTS, LiveMemory
from modelprof.counting.tracker import ModuleTracker, class_name, tensor_shapes, tensors_in
from modelprof.metrics import Phase
from modelprof.prepare.base import attributes_wrapped
from modelprof.reports.stats import ROOT, CommCall, InputInfo, LayerCost, Report, TotalCost, combine_rows

aten = torch.ops.aten
_WAIT = getattr(torch.ops._c10d_functional, "wait_tensor", None)


def _fill_kinds() -> dict[Any, tuple[str, Callable[[tuple, dict, Any], Any]]]:
    """The ops that fill buffers made before them, each with what the buffer holds and where it is among the op's
    tensors, as FSDPMemTracker names them: FSDP2's ``all_gather_copy_in`` (its outputs, the all-gather's input and
    output: ALL_GATHER) and ``chunk_cat`` (its ``out``, the reduce-scatter's input: REDUCE_SCATTER), and c10d's
    reduce-scatters, which FSDP2 runs (their output, the sharded gradient: SHARDED_GRAD). Only once FSDP2 is
    imported can a run use them. (Other collectives' outputs are what they are to the model: a tensor-parallel
    layer's all-reduced output is its activation.)"""
    if "torch.distributed.fsdp" not in sys.modules:
        return {}
    fsdp = getattr(torch.ops, "fsdp", None)
    kinds: dict[Any, tuple[str, Callable[[tuple, dict, Any], Any]]] = {}
    if hasattr(fsdp, "all_gather_copy_in"):
        kinds[fsdp.all_gather_copy_in] = (COMMUNICATION, lambda args, kwargs, out: out)
    if hasattr(fsdp, "chunk_cat"):
        kinds[fsdp.chunk_cat] = (COMMUNICATION, lambda args, kwargs, out: kwargs.get("out"))
    for packet, (kind, _) in COLLECTIVES.items():
        if kind == "reduce_scatter" and str(packet).startswith("c10d."):
            kinds[packet] = (GRADIENTS, lambda args, kwargs, out: args[0])
    return kinds


def _specs(value: Any) -> Any:
    """``value`` with every tensor replaced by its TensorSpec (op arguments: tensors in tuples, lists, dicts)."""
    if isinstance(value, torch.Tensor):
        return TensorSpec(tuple(value.shape), value.dtype.itemsize)
    if isinstance(value, list):
        return [_specs(v) for v in value]
    if isinstance(value, tuple):  # plain tuples, and the named tuples some ops return (torch.return_types)
        return tuple(_specs(v) for v in value)
    if isinstance(value, dict):
        return {k: _specs(v) for k, v in value.items()}
    return value


#: the argument types a formula sees as they are, told apart first: most of an op's arguments are numbers
_PLAIN = frozenset({int, float, bool, str, type(None)})


def _signature(value: Any, tensor: type = torch.Tensor, sequence: tuple = (list, tuple), plain: frozenset = _PLAIN
               ) -> Any:
    """What a formula can see of ``value``, hashable: tensors by shape and dtype, lists and tuples (the named tuples
    of ``torch.return_types`` too) by their type and elements, dicts by their items. (Tests in the order of how
    often they hold: it runs on every argument of every op.)"""
    cls = type(value)
    if cls in plain:
        return value
    if isinstance(value, tensor):
        return value.shape, value.dtype
    if isinstance(value, sequence):
        return cls, *map(_signature, value)
    if isinstance(value, dict):
        return tuple((k, _signature(v)) for k, v in value.items())
    return value


def _run(func: Any, args: tuple, kwargs: dict) -> Any:
    """``func(*args, **kwargs)``, also where only the meta kernel stands in the way: ``_grouped_mm``'s meta kernel
    (written for CUDA's) takes bfloat16 only, while the CPU kernel also takes float32. On the meta device, and on
    fake tensors (which run meta kernels), it runs in bfloat16 and its output is cast back: the shape is the same,
    and there is no data to lose."""
    if func is not aten._grouped_mm.default:
        return func(*args, **kwargs)
    tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    dtype = tensors[0].dtype
    if dtype == torch.bfloat16 or not any(t.is_meta or _is_fake(t) for t in tensors):
        return func(*args, **kwargs)

    def bf16(value: Any) -> Any:
        return value.to(torch.bfloat16) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    args, kwargs = tree_map(bf16, (args, kwargs))
    return func(*args, **kwargs).to(dtype)


def _is_fake(tensor: torch.Tensor) -> bool:
    fake = sys.modules.get("torch._subclasses.fake_tensor")  # fake tensors exist only once it is imported
    return fake is not None and isinstance(tensor, fake.FakeTensor)


def _wrapped_kind(args: tuple, kwargs: dict, fake_run: bool) -> str | None:
    """``dtensor`` when an argument is a DTensor (a wrapper around this rank's shard), ``propagation`` when one is a
    meta tensor, or a fake one in a run on real tensors, else None. In a sharded run (FSDP and DTensor refuse meta
    tensors; a ``--device meta`` run shards fake CPU ones, ``fake_run``) only DTensor's sharding propagation makes
    those, working out an output's layout, on fake tensors (the run's own fake mode in a fake run, whose ops that
    mode answers before they come here), or, for a composite op it decomposes (``matmul`` in inference mode), on
    meta tensors, as often as it explores."""
    kind = None
    for value in tree_flatten((args, kwargs))[0]:
        if hasattr(value, "_local_tensor"):
            return "dtensor"
        if isinstance(value, torch.Tensor) and (value.is_meta or (not fake_run and _is_fake(value))):
            kind = "propagation"
    return kind


def _has_decomposition(func: Any) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd")


class FormulaError(RuntimeError):
    """A cost formula raised: a bug in modelprof or in a user-registered formula, not in the model."""


#: The op-level quantities the metrics accumulate (Cost fields), each once, in a fixed order.
SOURCES: tuple[str, ...] = tuple(dict.fromkeys(m.source for m in metrics.ACCUMULATED))
_READ = attrgetter(*SOURCES)


#: (formula, op, what the formula sees of its arguments and output) -> the op's quantities, in SOURCES order; shared
#: by every count in the process (a formula is a pure function of what it sees), emptied when it holds too many.
_COSTS: dict[Any, tuple[int, ...]] = {}
_COSTS_KEPT = 100_000
_COUNTED = object()  #: CostMode._apart: the op is the step's own work


class Record:
    """The running sums of one (module, phase): one number per op-level quantity (:data:`SOURCES`), and the ops
    charged. Which metric reads which sum is the metric's ``source``."""

    __slots__ = ("sums", "ops")

    def __init__(self) -> None:
        self.sums = [0] * len(SOURCES)
        self.ops: Counter = Counter()

    def add(self, sums: tuple[int, ...], op: str) -> None:
        """Add one op's quantities (in the order of :data:`SOURCES`)."""
        self.sums = list(map(operator.add, self.sums, sums))
        self.ops[op] += 1

    def get(self, source: str) -> int:
        """The sum of one quantity (``madd``, ``flops``, ``mem_read``, ``mem_write``)."""
        return self.sums[SOURCES.index(source)]


class CostMode(TorchDispatchMode):
    """Charges every aten op to ``tracker.current`` in ``tracker.phase``, decomposing ops that have no formula.

    ``formulas`` (the registry by default) and ``free`` (ops that cost nothing) can be replaced, so a test or a
    benchmark counts with its own table without editing the global one.
    """

    def __init__(self, tracker: ModuleTracker, formulas: Mapping[Any, Formula] | None = None,
                 free: frozenset[Any] = FREE_OPS) -> None:
        super().__init__()
        self.tracker = tracker
        self.formulas = FORMULAS if formulas is None else formulas
        self.free = free
        self.records: dict[tuple[str, Phase], Record] = {}
        self.unsupported: Counter = Counter()
        self.phases: tuple[Phase, ...] = (Phase.FORWARD,)  #: the phases of the step this mode counts
        self.memory: LiveMemory | None = None  #: follows live tensor memory when set
        #: (collective kind, phase, row) -> [calls, bytes]: every collective the run makes
        self.comm: dict[tuple[str, Phase, str], list[int]] = {}
        #: the model holds DTensors (a sharded model): their ops are left to DTensor, which runs them on shards, and
        #: the fake and meta tensors DTensor works out shardings on are not counted
        self.wrappers = any(hasattr(p, "_local_tensor") for p in tracker.parameters.values())
        #: the sharded model's shards are fake tensors (a ``--device meta`` run): ops on fake tensors are its work
        self.fake_run = self.wrappers and any(_is_fake(getattr(p, "_local_tensor", p))
                                              for p in tracker.parameters.values())
        self.propagating = 0  #: how deep in DTensor's sharding propagation the run is (:meth:`propagation_apart`)
        self.fill_kinds = _fill_kinds()  #: op packet -> what the buffer it fills holds, and where it is
        #: id of a pipeline send's or receive's tensor -> the phase it belongs to, when that is not the running one
        #: (1F1B fires a forward send with a backward receive); each is used once
        self.p2p_phases: dict[int, Phase] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # NB: by default TorchDispatchMode wraps __torch_dispatch__ in torch._disable_dynamo, whose first call
        # imports torch._dynamo (about a second) and whose wrapper runs on every op. Counting never compiles,
        # so the mode opts out.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.wrappers:
            apart = self._apart(func, args, kwargs)
            if apart is not _COUNTED:
                return apart
        packet = func.overloadpacket
        formula = self.formulas.get(packet)
        if formula is not None:
            out = self._charged(func, packet, formula, args, kwargs)
        elif packet in self.free:
            out = func(*args, **kwargs)
            # ``wait_tensor`` hands back the tensor it waited on; a fake tensor's kernel makes a new one, which
            # would count its bytes twice in a ``--device meta`` sharded run
            if packet is _WAIT:
                out = args[0]
        elif packet in COLLECTIVES:
            out = self._collective(func, packet, args, kwargs)
        else:
            out = self._uncounted(func, packet, args, kwargs)
        if self.memory is not None:
            self.memory.track(out)
            fill = self.fill_kinds.get(packet)
            if fill is not None:  # FSDP2 fills buffers made before (whose kind was the phase's)
                self.memory.holds(tensors_in(fill[1](args, kwargs, out)), fill[0])
        return out

    def _apart(self, func: Any, args: tuple, kwargs: dict) -> Any:
        """In a sharded run, what an op that is not the step's own work returns: NotImplemented for an op on
        DTensors (DTensor's own dispatch runs it as ops on the local shards, which come back here and are counted at
        the shards' sizes), the uncounted result of one DTensor runs to work out an output's sharding; else
        _COUNTED, for an op to count."""
        if self.propagating:
            return func(*args, **kwargs)
        kind = _wrapped_kind(args, kwargs, self.fake_run)
        if kind == "dtensor":
            return NotImplemented
        return func(*args, **kwargs) if kind == "propagation" else _COUNTED

    @contextlib.contextmanager
    def propagation_apart(self) -> Iterator[None]:
        """While entered (in a sharded run), the ops DTensor's sharding propagator runs to work out an output's
        layout (on fake tensors of the global shapes, or on meta ones through a decomposition) are run uncounted:
        its two entry points are wrapped on the one propagator instance and put back on exit. They are private;
        where a release lacks them, the meta-and-fake rule of :func:`_wrapped_kind` stands alone, which is exact
        on real tensors but not in a fake (``--device meta``) run."""
        propagator = None
        if self.wrappers:
            from torch.distributed.tensor import DTensor

            propagator = getattr(getattr(DTensor, "_op_dispatcher", None), "sharding_propagator", None)
        names = [n for n in ("propagate_op_sharding", "propagate_op_sharding_non_cached")
                 if callable(getattr(propagator, n, None))]

        def apart(method: Any) -> Any:
            def run(*args: Any, **kwargs: Any) -> Any:
                self.propagating += 1
                try:
                    return method(*args, **kwargs)
                finally:
                    self.propagating -= 1
            return run

        with attributes_wrapped((propagator, name, apart) for name in names):
            yield

    def _charged(self, func: Any, packet: Any, formula: Formula, args: tuple, kwargs: dict) -> Any:
        """Run an op that has a formula and charge its cost to the running row in the running phase."""
        out = _run(func, args, kwargs)
        try:  # a formula sees shapes, dtypes and plain values only, so an op seen before costs what it did
            signature = (formula, func, _signature(args), _signature(kwargs) if kwargs else None, _signature(out))
            sums = _COSTS.get(signature)
        except TypeError:  # something unhashable among the arguments
            signature, sums = None, None
        if sums is None:
            sums = _READ(self._cost(func, formula, args, kwargs, out))
            if signature is not None:
                if len(_COSTS) >= _COSTS_KEPT:
                    _COSTS.clear()
                _COSTS[signature] = sums
        self._add(self.tracker.current, sums, packet.__name__)
        return out

    def _collective(self, func: Any, packet: Any, args: tuple, kwargs: dict) -> Any:
        """Run a collective and record its kind and bytes against the running row and phase."""
        out = func(*args, **kwargs)
        if str(packet).startswith("_c10d_functional."):
            # a functional collective's work stays registered until someone waits on it, and one whose result the
            # model never reads (a last layer's all-reduce) makes PyTorch warn at exit; on the fake process group
            # it is complete already, so wait now (a second wait later finds nothing to wait for)
            for tensor in out if isinstance(out, list | tuple) else (out,):
                torch.ops._c10d_functional.wait_tensor(tensor)
        kind, rule = COLLECTIVES[packet]
        phase = self.tracker.phase
        if self.p2p_phases and args and isinstance(args[0], list) and args[0]:  # c10d send/recv_: (tensors, ...)
            phase = self.p2p_phases.pop(id(args[0][0]), phase)
        key = (kind, phase, self.tracker.current)
        entry = self.comm.setdefault(key, [0, 0])
        entry[0] += 1
        entry[1] += collective_bytes(rule, _specs(args), _specs(out))
        return out

    def charge(self, row: str, flops: int, label: str) -> None:
        """Add ``flops`` to ``row`` in the current phase, as one call of ``label`` (a peer's module or function
        rule, which no aten op carries)."""
        self._add(row, tuple(flops if source == "flops" else 0 for source in SOURCES), label)

    def _add(self, row: str, sums: tuple[int, ...], op: str) -> None:
        """Add one op's quantities to ``row`` in the current phase."""
        key = (row, self.tracker.phase)
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = Record()
        record.add(sums, op)

    @staticmethod
    def _cost(func: Any, formula: Formula, args: tuple, kwargs: dict, out: Any) -> Any:
        try:
            return formula(_specs(args), _specs(kwargs) if kwargs else kwargs, _specs(out))
        except Exception as exc:  # a formula's bug must not be blamed on the user's model
            raise FormulaError(f"the cost formula for {func} failed: {type(exc).__name__}: {exc}") from exc

    def _uncounted(self, func: Any, packet: Any, args: tuple, kwargs: dict) -> Any:
        """An op with no formula and not free: another library's op with a formula by name
        (:data:`~modelprof.counting.formulas.LIBRARY_FORMULAS`), decomposed into ops that have one, or listed as
        unsupported."""
        formula = LIBRARY_FORMULAS.get(getattr(packet, "_qualified_op_name", ""))
        if formula is not None:
            return self._charged(func, packet, formula, args, kwargs)
        if _has_decomposition(func):
            with self:
                result = func.decompose(*args, **kwargs)
            if result is not NotImplemented:
                return result
        self.unsupported[str(packet)] += 1
        return func(*args, **kwargs)


def build_report(model: nn.Module, tracker: ModuleTracker, mode: CostMode, call: tuple[tuple, dict, Any],
                 model_name: str | None = None, extra: Mapping[str, Mapping[str, int]] | None = None) -> Report:
    """The report of one counted call ``(args, kwargs, output)``: a row per leaf module in the order it ran, then
    each container that ran ops itself, then each module that only holds parameters."""
    args, kwargs, output = call
    order = dict(tracker.leaf_order)
    for name, _phase in mode.records:
        order.setdefault(name)
    owners, unique = tracker.owners, tracker.parameters
    for name in owners.values():
        order.setdefault(name)
    params_by_row: Counter = Counter()
    held = {pid: _held(p) for pid, p in unique.items()}
    for pid, name in owners.items():
        params_by_row[name] += held[pid]

    extra = extra or {}
    for name in extra:
        order.setdefault(name)
    # (metric key, phase, index of its source in a record's sums), for the metrics of the mode's phases
    columns = [(m.key, m.phase, SOURCES.index(m.source)) for m in metrics.ACCUMULATED if m.phase in mode.phases]
    rows = tuple(_row(tracker, mode, columns, name, {"params": params_by_row[name], **extra.get(name, {})})
                 for name in order)
    total = TotalCost(
        name="total", type=class_name(model), input_shape=tensor_shapes(args, kwargs),
        output_shape=tensor_shapes(output),
        values={**combine_rows(rows), "params": sum(held.values())}, calls=1,
        trainable_params=sum(held[pid] for pid, p in unique.items() if p.requires_grad),
    )
    device, dtype = _device_and_dtype(list(unique.values()), args, kwargs)
    comm = tuple(CommCall(kind, count, nbytes, str(phase), row)
                 for (kind, phase, row), (count, nbytes) in mode.comm.items()) or None
    return Report(model=model_name or class_name(model), inputs=describe_inputs(args, kwargs), device=device,
                  dtype=dtype, layers=rows, total=total, unsupported=dict(sorted(mode.unsupported.items())),
                  modules=tracker.infos(), phases=tuple(str(p) for p in mode.phases), comm=comm)


def _held(parameter: torch.Tensor) -> int:
    """The elements of ``parameter`` this process holds: a sharded one's (a DTensor's) local shard, FSDP's padding
    included, so a rank's rows and totals count its share."""
    return getattr(parameter, "_local_tensor", parameter).numel()


def _row(tracker: ModuleTracker, mode: CostMode, columns: list[tuple[str, Phase, int]], name: str,
         known: Mapping[str, int]) -> LayerCost:
    """One module's row: the values known already (its parameters) and, per metric, the record of its phase."""
    values = dict(known)
    records = {phase: mode.records.get((name, phase)) for phase in mode.phases}
    for key, phase, index in columns:
        record = records[phase]
        values[key] = record.sums[index] if record else 0
    in_shape, out_shape = tracker.shapes.get(name, ((), ()))
    ops: tuple[str, ...] = ()
    if tracker.is_container(name):
        ops = tuple({op: None for record in records.values() if record for op in record.ops})
    return LayerCost(name=name, type=tracker.type_of(name), input_shape=in_shape, output_shape=out_shape,
                     values=values, calls=tracker.calls[name], ops=ops)


def describe_inputs(args: tuple, kwargs: dict) -> tuple[InputInfo, ...]:
    """Name (None when positional), shape and dtype of every tensor input."""
    infos = [InputInfo(None, tuple(a.shape), str(a.dtype).removeprefix("torch.")) for a in args
             if isinstance(a, torch.Tensor)]
    infos += [InputInfo(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in kwargs.items()
              if isinstance(v, torch.Tensor)]
    return tuple(infos)


def _device_and_dtype(parameters: list[torch.Tensor], args: tuple, kwargs: dict) -> tuple[str, str]:
    tensors = parameters or [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
    floats = [t for t in tensors if t.is_floating_point()]
    ref = (floats or tensors or [torch.empty(0)])[0]
    return ref.device.type, str(ref.dtype).removeprefix("torch.")


__all__ = ["ROOT", "CostMode", "FormulaError", "Record", "build_report", "describe_inputs"]
