"""The cost of one forward pass: eval mode, ``torch.inference_mode()``, each op charged to the module running it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelprof.counting.conventions import Convention
from modelprof.counting.formulas import Formula
from modelprof.counting.runtime import inference
from modelprof.counting.session import session_for
from modelprof.prepare import Run
from modelprof.reports.stats import Report


def count_forward(run: Run, *, model_name: str | None = None, formulas: Mapping[Any, Formula] | None = None,
                  convention: Convention | None = None) -> Report:
    """Count one forward of a prepared run (under its autocast, if any), as ``convention``'s tool counts it when
    given; the model is left as it was."""
    model = run.model
    with session_for(model, run.args, run.kwargs, formulas=formulas, convention=convention,
                     context=inference(model, run.device == "meta", sharded=run.parallel is not None,
                                       grad=convention is not None and convention.as_autograd)) as session:
        with run.autocast():
            output = session.forward(run.args, run.kwargs)
    return run.label(session.report((run.args, run.kwargs, output), model_name))
