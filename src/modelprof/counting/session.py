"""One counting session: the module tracker, the cost mode and live memory, set up once, with phases marked on it.

A forward, a training step and a generation are short functions over a session (:mod:`modelprof.counting.forward`,
:mod:`~modelprof.counting.train`, :mod:`~modelprof.counting.generate`): they enter it with the context the model
runs in (eval and inference mode, or training mode), mark each phase (``with session.phase(Phase.BACKWARD):``),
call the model through :meth:`CountingSession.forward`, and end with :meth:`CountingSession.report`.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from modelprof import units
from modelprof.counting.conventions import Convention
from modelprof.counting.formulas import Formula
from modelprof.counting.memory import LiveMemory
from modelprof.counting.mode import CostMode, FormulaError, build_report
from modelprof.counting.peer import FUNCTIONS_ROW, PeerCounter, formula_table
from modelprof.counting.tracker import ModuleTracker, tensors_in
from modelprof.errors import Hint, ModelError, one_line
from modelprof.metrics import Phase
from modelprof.prepare.parallel import held_parameters
from modelprof.reports.stats import CountedAs, Report


class CountingSession:
    """Counts every op ``model`` runs while the session is entered, charged to the running row in the marked phase.

    ``phases`` are the phases the report has columns for; the tensors that exist before the run (the static part
    of its memory) are the model's parameters and buffers and the inputs ``args``/``kwargs``; ``context`` the
    context the model runs in (entered after the tracker, before counting starts, so its own set-up and tear-down
    are not counted); ``rows`` extra rows that are not modules (the loss, the optimizer) and their types.
    """

    def __init__(self, model: nn.Module, args: tuple, kwargs: dict, *, phases: tuple[Phase, ...] = (Phase.FORWARD,),
                 formulas: Mapping[Any, Formula] | None = None,
                 context: contextlib.AbstractContextManager | None = None,
                 rows: Mapping[str, str] | None = None, convention: Convention | None = None) -> None:
        self.model = model
        self.tracker = ModuleTracker(model)
        self.tracker.extra_rows = dict(rows or {})
        self.convention = convention
        if convention is not None:
            formulas = formula_table(convention.name)
        self.mode = CostMode(self.tracker, formulas)
        self.mode.phases = phases
        self.peer: PeerCounter | None = None
        if convention is not None:
            # the batch of a per-sample convention: the length of the first positional input, as ptflops reads it
            batch = len(args[0]) if args and isinstance(args[0], torch.Tensor) and args[0].dim() else 1
            self.peer = PeerCounter(convention, self.tracker, self._charge, batch)
            self.tracker.after_call = self.peer.after_module
            if convention.functions_apart:
                self.tracker.extra_rows[FUNCTIONS_ROW] = "patched functions"
        static = [*self.tracker.parameters.values(), *self.tracker.buffers.values(), *tensors_in(args, kwargs)]
        self.memory = self.mode.memory = LiveMemory(self.tracker, static)
        self._context = context or contextlib.nullcontext()
        self._stack = contextlib.ExitStack()

    def _charge(self, row: str, flops: int) -> None:
        self.mode.charge(row, flops, "rule")

    def __enter__(self) -> CountingSession:
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.tracker)
            stack.enter_context(self.memory.resizes_followed())
            stack.enter_context(self._context)
            if self.peer is not None:
                stack.enter_context(self.peer.functions_patched())
            stack.enter_context(self.mode.propagation_apart())
            stack.enter_context(self.mode)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)

    @contextlib.contextmanager
    def phase(self, phase: Phase, row: str | None = None) -> Iterator[None]:
        """Charge the ops run inside to ``phase`` (and all of them to ``row`` when given); the phase and row before
        are back afterwards."""
        tracker = self.tracker
        saved = tracker.phase, tracker.override
        tracker.phase, tracker.override = phase, row
        try:
            yield
        finally:
            tracker.phase, tracker.override = saved

    def forward(self, args: tuple, kwargs: dict) -> Any:
        """``model(*args, **kwargs)``; a failure becomes a ModelError naming the layer and the shapes it got."""
        try:
            return self.model(*args, **kwargs)
        except FormulaError:
            raise
        except (Exception, SystemExit) as exc:
            layer = self.tracker.current
            got = units.shapes(self.tracker.input_shapes(layer)) or "no tensors"
            where = f"in layer '{layer}' ({self.tracker.type_of(layer)}) with input shapes {got}"
            if isinstance(exc, SystemExit):
                raise ModelError(f"the forward pass called sys.exit({exc.code!r}) {where}") from exc
            if _value_dependent(exc):  # (torch's message proposes a config flag that would count wrong shapes)
                op = re.search(r"for (torch\.\w+)\(\)", str(exc))
                raise ModelError(f"the forward pass failed {where}: {op[1] if op else one_line(exc)} needs the "
                                 "values of its input", hint=Hint.VALUES) from exc
            hint = (Hint.TP_PLAN if _through_dtensor(exc)  # a rank holding TP shards: the plan may be the cause
                    else Hint.INPUTS_OR_TP_PLAN if held_parameters(self.model)[0] else Hint.INPUTS)
            raise ModelError(f"the forward pass failed {where}: {one_line(exc)}", hint=hint) from exc

    def report(self, call: tuple[tuple, dict, Any], model_name: str | None = None,
               extra: Mapping[str, Mapping[str, int]] | None = None, gradients: int = 0, optimizer: int = 0
               ) -> Report:
        """The report of the counted ``call`` = ``(args, kwargs, output)``, with its memory summary (``gradients``
        and ``optimizer`` state in bytes, for a training step); ``extra`` adds values to rows (saved bytes)."""
        from dataclasses import replace

        report = build_report(self.model, self.tracker, self.mode, call, model_name, extra)
        report = replace(report, memory=self.memory.summary(gradients, optimizer))
        if self.peer is not None:
            unsupported = {**report.unsupported, **self.peer.failed}
            c = self.convention
            report = replace(report, convention=CountedAs(c.name, c.unit, c.header), unsupported=unsupported)
        return report


def session_for(model: nn.Module, args: tuple, kwargs: dict, **options: Any) -> CountingSession:
    """A session whose static part is ``model``'s parameters and buffers and the inputs ``args``/``kwargs``."""
    return CountingSession(model, args, kwargs, **options)


def _through_dtensor(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside DTensor's dispatch (``torch.distributed.tensor``, or its C++ part, whose
    messages name it): a layer handed a tensor-parallel shard or partial sum it cannot take, as transformers' own
    job fails on it too."""
    if "DTensor" in str(exc):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if f"{os.sep}torch{os.sep}distributed{os.sep}tensor{os.sep}" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _value_dependent(exc: BaseException) -> bool:
    """Whether ``exc`` is an op whose output's shape depends on tensor values that meta and fake tensors do not
    have (``nonzero``, a boolean mask's indexing: a mixture's expert loop in Python)."""
    names = {type(e).__name__ for e in (exc, exc.__cause__) if e is not None}
    return bool(names & {"DataDependentOutputException", "DynamicOutputShapeException"}) or (
        isinstance(exc, NotImplementedError) and "data-independent" in str(exc))
