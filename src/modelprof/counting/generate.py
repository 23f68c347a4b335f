"""Generation as language-model users run it (``stats --generate``): one prefill of the prompt, then decode steps
of one token each through the model's KV cache, counted per layer and phase.

The prefill is the forward of the whole prompt with ``use_cache=True``; each decode step feeds the last token and
the cache back in, as ``generate`` does with sampling off (the next token is the argmax, and no end-of-text stops
it early). Each step's own counts are kept, so the cost of a token at each position, and how it grows with the
context, is exact. The KV cache's size at the end is the bytes of the cache's tensors.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from modelprof.counting.formulas import Formula
from modelprof.counting.memory import storage_bytes
from modelprof.counting.mode import SOURCES, CostMode
from modelprof.counting.runtime import eval_inference, inference
from modelprof.counting.session import CountingSession, session_for
from modelprof.errors import ModelError, one_line
from modelprof.metrics import Phase
from modelprof.reports.bench import GenerationTiming
from modelprof.reports.stats import DecodeStep, GenerationSummary, Report


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """The key and value tensors of a ``transformers`` cache (its ``layers``), or of a legacy tuple of tuples."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [t for layer in layers for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
                if isinstance(t, torch.Tensor)]
    found: list[torch.Tensor] = []
    stack = [cache]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
    return found


def count_generation(model: nn.Module, input_ids: torch.Tensor, new_tokens: int, *,
                     model_name: str | None = None, formulas: Mapping[Any, Formula] | None = None,
                     every_step: bool = False) -> Report:
    """Count one prefill of ``input_ids`` (batch, prompt) and ``new_tokens`` cached decode steps; ``formulas``
    replaces the registry for this count.

    On the meta device (where a decode step of a large model takes about half a second to run at all), unless
    ``every_step``, only the first, second and last steps are run: if every row's cost of the last step is the
    first step's plus its growth from the first to the second, times the steps between (a cost affine in the
    position, as attention reading one more cached position per step is), the steps between are filled in from
    them exactly; if not (a sliding window filling up), every step is counted after all.
    """
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    _check_language_model(model)
    if not every_step and new_tokens > 3 and input_ids.device.type == "meta":
        report = _count_affine(model, input_ids, new_tokens, model_name, formulas)
        if report is not None:
            return report
    return _count_every_step(model, input_ids, new_tokens, model_name, formulas)


def _session(model: nn.Module, input_ids: torch.Tensor, formulas: Mapping[Any, Formula] | None
             ) -> CountingSession:
    return session_for(model, (input_ids,), {}, phases=(Phase.FORWARD, Phase.DECODE), formulas=formulas,
                       context=inference(model, input_ids.device.type == "meta"))


def _check_language_model(model: nn.Module) -> None:
    if not callable(getattr(model, "generate", None)):
        raise ModelError(f"{type(model).__name__} has no generate() and no past_key_values: generation needs a "
                         "language model with a KV cache (a transformers causal LM)")


def _decode(session: CountingSession, output: Any) -> Any:
    """One decode step: the last token chosen (the argmax) and the cache back in."""
    token = output.logits[:, -1:].argmax(-1)
    return session.forward((token,), {cache_keyword(session.model): _cache(output), "use_cache": True})


def _finish(session: CountingSession, input_ids: torch.Tensor, output: Any, steps: list[DecodeStep],
            model_name: str | None) -> Report:
    report = session.report(((input_ids,), {}, output), model_name)
    summary = GenerationSummary(batch=input_ids.shape[0], prompt=input_ids.shape[1], new_tokens=len(steps),
                                kv_cache=storage_bytes(cache_tensors(_cache(output))), steps=tuple(steps))
    return replace(report, generation=summary)


def _count_every_step(model: nn.Module, input_ids: torch.Tensor, new_tokens: int, model_name: str | None,
                      formulas: Mapping[Any, Formula] | None) -> Report:
    steps: list[DecodeStep] = []
    prompt = input_ids.shape[1]
    with _session(model, input_ids, formulas) as session:
        output = session.forward((input_ids,), {"use_cache": True})
        with session.phase(Phase.DECODE):
            for step in range(new_tokens):
                before = _snapshot(session.mode)
                output = _decode(session, output)
                steps.append(_step(prompt + step, _diff(_snapshot(session.mode), before)))
        return _finish(session, input_ids, output, steps, model_name)


def _snapshot(mode: CostMode) -> dict[str, list[int]]:
    """Each row's decode-phase sums so far (one number per :data:`~modelprof.counting.forward.SOURCES` quantity)."""
    return {name: list(record.sums) for (name, phase), record in mode.records.items() if phase is Phase.DECODE}


def _step(position: int, rows: dict[str, list[int]]) -> DecodeStep:
    """One decode step's cost, all rows together, from each row's sums for that step."""
    sums = [sum(column) for column in zip(*rows.values(), strict=True)] or [0] * len(SOURCES)
    totals = dict(zip(SOURCES, sums, strict=True))
    return DecodeStep(position=position, flops=totals["flops"], madd=totals["madd"],
                      nbytes=totals["mem_read"] + totals["mem_write"])


def _diff(after: dict[str, list[int]], before: dict[str, list[int]]) -> dict[str, list[int]]:
    zero = [0] * len(SOURCES)
    return {name: [a - b for a, b in zip(sums, before.get(name, zero), strict=True)] for name, sums in after.items()}


def _count_affine(model: nn.Module, input_ids: torch.Tensor, new_tokens: int, model_name: str | None,
                  formulas: Mapping[Any, Formula] | None) -> Report | None:
    """Run steps 1, 2 and N; fill in the rest when every row's step cost is affine in the position (else None)."""
    batch, prompt = input_ids.shape
    with inference(model, meta=True):  # the cache the last step reads: prompt + N - 1 positions, made uncounted
        longer = torch.cat([input_ids, input_ids[:, -1:].expand(batch, new_tokens - 1)], dim=1)
        late = model(longer, use_cache=True)
        # a copy of the last position's logits, not a view: a view would carry the whole uncounted logits' storage
        # into the counted step, where the memory count would take it for new
        late_cache, late_logits = _cache(late), late.logits[:, -1:].clone()
        del late
    with _session(model, input_ids, formulas) as session:
        tracker, mode = session.tracker, session.mode
        output = session.forward((input_ids,), {"use_cache": True})
        with session.phase(Phase.DECODE):
            costs, called = [], dict(tracker.calls)
            for _ in range(2):
                before = _snapshot(mode)
                output = _decode(session, output)
                costs.append(_diff(_snapshot(mode), before))
                if len(costs) == 1:  # each module's calls in one step
                    per_step = {name: count - called.get(name, 0) for name, count in tracker.calls.items()}
            del output
            before = _snapshot(mode)
            output = _decode(session, _Output(late_logits, late_cache))
            last = _diff(_snapshot(mode), before)
        zero = [0] * len(SOURCES)
        first, second = costs
        growth = {name: [b - a for a, b in zip(first.get(name, zero), second.get(name, zero), strict=True)]
                  for name in first.keys() | second.keys() | last.keys()}
        for name, step in growth.items():
            expected = [a + (new_tokens - 1) * g for a, g in zip(first.get(name, zero), step, strict=True)]
            if expected != last.get(name, zero):
                return None
        for name, step in growth.items():  # every step's sum: N·first + growth·N(N-1)/2
            record = mode.records[(name, Phase.DECODE)]
            record.sums = [new_tokens * a + g * new_tokens * (new_tokens - 1) // 2
                           for a, g in zip(first.get(name, zero), step, strict=True)]
        for name, count in per_step.items():
            tracker.calls[name] += (new_tokens - 3) * count
        steps = [_step(prompt + k, {name: [a + k * g for a, g in zip(first.get(name, zero), step, strict=True)]
                                    for name, step in growth.items()}) for k in range(new_tokens)]
        return _finish(session, input_ids, output, steps, model_name)


class _Output:
    """The parts of a model output a decode step reads."""

    def __init__(self, logits: torch.Tensor, cache: Any) -> None:
        self.logits, self.cache = logits, cache


def cache_keyword(model: nn.Module) -> str:
    """The keyword the model's forward takes its KV cache by: ``cache`` (transformers 5.2x, where
    ``past_key_values`` is deprecated), else ``past_key_values``."""
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def _cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    if cache is None:
        cache = getattr(output, "past_key_values", None)
    if cache is None:
        raise ModelError("the model returned no past_key_values with use_cache=True; --generate needs a language "
                         "model with a KV cache (a transformers causal LM)")
    return cache


def make_prompt(model: nn.Module, batch: int, prompt_len: int, device: str) -> torch.Tensor:
    """Random token ids (batch, prompt_len) within the model's vocabulary."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", None) or 2
    try:
        return torch.randint(0, vocab, (batch, prompt_len), device=device)
    except RuntimeError as exc:
        raise ModelError(f"cannot make a prompt of {batch}x{prompt_len} tokens: {one_line(exc)}") from exc


def time_generation(model: nn.Module, input_ids: torch.Tensor, new_tokens: int, runs: int = 3,
                    warmup: int = 1) -> GenerationTiming:
    """Time generation as users measure it: per run, the time to first token (prefill and the first argmax) and
    each decode step after it; CUDA events on a GPU, ``time.perf_counter`` on a CPU. ``warmup`` whole generations
    run first, untimed."""
    from modelprof.reports.bench import LatencyStats
    from modelprof.timing.measure import CpuClock, CudaClock

    _check_language_model(model)
    clock = CudaClock() if input_ids.device.type == "cuda" else CpuClock()
    first: list[float] = []
    steps: list[float] = []
    keyword = cache_keyword(model)
    with eval_inference(model):
        for run in range(warmup + runs):
            clock.begin()
            output = model(input_ids, use_cache=True)
            token = output.logits[:, -1:].argmax(-1)
            elapsed = clock.end()
            if run >= warmup:
                first.append(elapsed)
            for _ in range(new_tokens - 1):
                clock.begin()
                output = model(token, **{keyword: _cache(output)}, use_cache=True)
                token = output.logits[:, -1:].argmax(-1)
                elapsed = clock.end()
                if run >= warmup:
                    steps.append(elapsed)
    per_token = LatencyStats.from_samples(steps or first)
    return GenerationTiming(input_ids.shape[0], input_ids.shape[1], new_tokens, LatencyStats.from_samples(first),
                            per_token)
