"""``modelprof stats`` as a service: build the model and its inputs, count the workload, fold, and cross-check on
request."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelprof.counting.api import count_costs
from modelprof.counting.crosscheck import Tool, run_crosscheck
from modelprof.counting.generate import make_prompt
from modelprof.loading.source import ModelSource
from modelprof.reports.stats import Report
from modelprof.workload import FORWARD, Workload


def count_source(source: ModelSource, workload: Workload = FORWARD, batch: int = 1, model: Any = None,
                 convention: str | None = None) -> Report:
    """The full report of ``workload`` on ``source``'s model (built now, or ``model`` built from it already) at
    ``batch``: its inputs from the source, or for a generation a random prompt of the workload's length."""
    model = source.build_model() if model is None else model
    generation = workload.generation
    if generation is not None:
        args, kwargs = (make_prompt(model, batch, generation.prompt_len, source.device.value),), {}
    else:
        args, kwargs = source.build_inputs(batch)
    return count_costs(model, args, kwargs, workload=workload, model_name=source.target, owned=True,
                       convention=convention)


def run_stats(source: ModelSource, workload: Workload = FORWARD, batch: int = 1, depth: int | None = None,
              crosscheck: Tool | None = None, convention: str | None = None) -> Report:
    """The per-layer report of ``workload`` on ``source`` at ``batch``, folded at ``depth``; with ``crosscheck``
    (a forward), that tool's per-layer numbers beside the unfolded rows, in the report's ``crosscheck``; with
    ``convention``, counted as that tool counts."""
    model = source.build_model()
    full = count_source(source, workload, batch, model, convention)
    checked = None
    if crosscheck:
        dtype = workload.precision.dtype
        checked = run_crosscheck(crosscheck, source, model, full, batch, dtype.torch if dtype else None)
    return replace(full.fold(depth), crosscheck=checked)
