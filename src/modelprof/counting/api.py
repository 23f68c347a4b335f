"""Count any workload: a forward, a training step or a generation, prepared as the workload asks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from modelprof.counting.conventions import Convention
from modelprof.counting.formulas import Formula
from modelprof.counting.forward import count_forward
from modelprof.counting.generate import count_generation
from modelprof.counting.peer import convention_named
from modelprof.counting.train import count_train
from modelprof.errors import UsageError
from modelprof.prepare import prepared
from modelprof.reports.stats import Report
from modelprof.workload import FORWARD, Workload


def count_costs(model: nn.Module, args: tuple = (), kwargs: dict | None = None, *, workload: Workload = FORWARD,
                model_name: str | None = None, formulas: Mapping[Any, Formula] | None = None,
                owned: bool = False, convention: str | Convention | None = None) -> Report:
    """Run ``workload`` on ``model(*args, **kwargs)`` once and return the per-layer cost report.

    A forward (the default) runs in eval mode under ``torch.inference_mode()``; a training step (``Workload(
    Training(...))``) in training mode with the loss, backward and optimizer step on rows of their own; a generation
    (``Workload(Generation(prompt_len, new_tokens))``) takes ``args[0]`` as the prompt's token ids. The workload's
    precision (dtype, channels-last, autocast) is applied by :func:`modelprof.prepare.prepared` and undone after.
    Afterwards the model is exactly as before (no hooks, buffers or attributes left, training flags, buffers and
    gradients restored; ``owned=True`` says the caller built it for this count, so a transform need not keep what
    it replaced). A forward pass that fails raises :class:`~modelprof.errors.ModelError` naming the layer that was
    running and the shapes it received. ``formulas`` replaces the registry for this count.

    ``convention`` (``thop``, ``fvcore``, ``ptflops``, ``flopcounter``, ``calflops``; see
    :mod:`modelprof.counting.conventions`) counts a forward as that tool does: ``flops`` holds its number, in its
    unit, per layer and in total.
    """
    convention = convention_named(convention)
    if convention is not None and workload.kind != "forward":
        raise UsageError(f"a convention reproduces a tool's count of one forward; a {workload.kind} workload is "
                         "counted in modelprof's own convention only", option="convention")
    with prepared(model, args, kwargs, workload, owned) as run:
        if workload.training is not None:
            return count_train(run, workload.training, model_name=model_name, formulas=formulas)
        if workload.generation is not None:
            return count_generation(run.model, run.args[0], workload.generation.new_tokens, model_name=model_name,
                                    formulas=formulas)
        return count_forward(run, model_name=model_name, formulas=formulas, convention=convention)


def profile(model: nn.Module, *args: Any, **kwargs: Any) -> Report:
    """Count Params, MAdd, Flops, MemRead and MemWrite of ``model(*args, **kwargs)``, per layer.

    >>> report = modelprof.profile(net, torch.randn(1, 3, 224, 224))
    >>> report.total.flops
    """
    return count_costs(model, args, kwargs)
