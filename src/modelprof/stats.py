"""``modelprof stats`` as a service: build the model and its inputs, count, fold, and cross-check on request."""

from __future__ import annotations

from .counting import count_costs
from .crosscheck import Tool, run_crosscheck
from .options import ModelSource
from .report import CrossCheck, Report


def run_stats(source: ModelSource, batch: int = 1, depth: int | None = None, crosscheck: Tool | None = None
              ) -> tuple[Report, CrossCheck | None]:
    """The per-layer report of ``source`` at ``batch``, folded at ``depth``; with ``crosscheck``, that tool's
    per-layer numbers beside the unfolded rows."""
    model = source.build_model()
    args, kwargs = source.build_inputs(batch)
    full = count_costs(model, args, kwargs, model_name=source.target)
    checked = run_crosscheck(crosscheck, source, model, full, batch) if crosscheck else None
    return full.fold(depth), checked
