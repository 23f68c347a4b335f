"""``modelprof stats`` as a service: build the model and its inputs, count, fold, and cross-check on request."""

from __future__ import annotations

from dataclasses import dataclass

from modelprof.counting.crosscheck import Tool, run_crosscheck
from modelprof.counting.forward import count_costs
from modelprof.counting.generate import count_generation, make_prompt
from modelprof.counting.train import Optimizer, count_train_step
from modelprof.loading.build import resolve
from modelprof.loading.source import ModelSource
from modelprof.reports.kinds import CrossCheck, Report


@dataclass(frozen=True)
class TrainStep:
    """Count a training step instead of a forward: the optimizer, and the loss (``pkg.mod:fn``, or None for the
    sum of every float output)."""

    optimizer: Optimizer = Optimizer.ADAMW
    loss: str | None = None


@dataclass(frozen=True)
class Generation:
    """Count generation instead of a forward: a prefill of ``prompt_len`` tokens, then ``new_tokens`` decode
    steps through the KV cache."""

    prompt_len: int
    new_tokens: int


def run_stats(source: ModelSource, batch: int = 1, depth: int | None = None, crosscheck: Tool | None = None,
              train: TrainStep | None = None, generate: Generation | None = None, amp: bool = False
              ) -> tuple[Report, CrossCheck | None]:
    """The per-layer report of ``source`` at ``batch``, folded at ``depth``; with ``train``, of one training
    step; with ``generate``, of a prefill and cached decode steps; with ``crosscheck``, that tool's per-layer
    numbers beside the unfolded rows; with ``amp``, under autocast (not with ``generate`` or ``crosscheck``)."""
    model = source.build_model()
    if generate is not None:
        prompt = make_prompt(model, batch, generate.prompt_len, source.device.value)
        full = count_generation(model, prompt, generate.new_tokens, model_name=source.target)
        return full.fold(depth), None
    args, kwargs = source.build_inputs(batch)
    if train is not None:
        loss = resolve(train.loss, "the loss") if train.loss else None
        full = count_train_step(model, args, kwargs, optimizer=train.optimizer, loss=loss, model_name=source.target,
                                amp=amp)
    else:
        full = count_costs(model, args, kwargs, model_name=source.target, amp=amp)
    checked = run_crosscheck(crosscheck, source, model, full, batch) if crosscheck else None
    return full.fold(depth), checked
