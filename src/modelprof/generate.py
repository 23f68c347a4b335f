"""Generation as language-model users run it (``stats --generate``): one prefill of the prompt, then decode steps
of one token each through the model's KV cache, counted per layer and phase.

The prefill is the forward of the whole prompt with ``use_cache=True``; each decode step feeds the last token and
the cache back in, as ``generate`` does with sampling off (the next token is the argmax, and no end-of-text stops
it early). Each step's own counts are kept, so the cost of a token at each position, and how it grows with the
context, is exact. The KV cache's size at the end is the bytes of the cache's tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from .counting import CostMode, _forward, build_report
from .errors import ModelError, one_line
from .formulas import Formula
from .memory import LiveMemory, static_tensors, storage_bytes
from .metrics import Phase
from .report import DecodeStep, GenerationSummary, GenerationTiming, Report
from .runtime import eval_inference, inference
from .tracker import ModuleTracker


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


def _step_totals(mode: CostMode) -> tuple[int, int, int]:
    """(Flops, MAdd, bytes) counted so far in the decode phase, all rows together."""
    flops = madd = nbytes = 0
    for (_, phase), record in mode.records.items():
        if phase is Phase.DECODE:
            flops, madd = flops + record.get("flops"), madd + record.get("madd")
            nbytes += record.get("mem_read") + record.get("mem_write")
    return flops, madd, nbytes


def count_generation(model: nn.Module, input_ids: torch.Tensor, new_tokens: int, *,
                     model_name: str | None = None, formulas: Mapping[Any, Formula] | None = None) -> Report:
    """Count one prefill of ``input_ids`` (batch, prompt) and ``new_tokens`` cached decode steps; ``formulas``
    replaces the registry for this count."""
    if new_tokens < 1:
        raise ValueError("new_tokens must be at least 1")
    if not callable(getattr(model, "generate", None)):
        raise ModelError(f"{type(model).__name__} has no generate() and no past_key_values: generation needs a "
                         "language model with a KV cache (a transformers causal LM)")
    tracker = ModuleTracker(model)
    mode = CostMode(tracker, formulas)
    mode.phases = (Phase.FORWARD, Phase.DECODE)
    mode.memory = memory = LiveMemory(tracker, static_tensors(model, (input_ids,), {}))
    steps: list[DecodeStep] = []
    prompt = input_ids.shape[1]
    with tracker, inference(model), mode:
        output = _forward(model, (input_ids,), {"use_cache": True}, tracker)
        cache = _cache(output)
        tracker.phase = Phase.DECODE
        for step in range(new_tokens):
            token = output.logits[:, -1:].argmax(-1)
            before = _step_totals(mode)
            output = _forward(model, (token,), {"past_key_values": cache, "use_cache": True}, tracker)
            cache = _cache(output)
            after = _step_totals(mode)
            steps.append(DecodeStep(position=prompt + step, flops=after[0] - before[0], madd=after[1] - before[1],
                                    nbytes=after[2] - before[2]))
        tracker.phase = Phase.FORWARD
        kv_bytes = storage_bytes(cache_tensors(cache))
    report = build_report(model, tracker, mode, ((input_ids,), {}, output), model_name)
    summary = GenerationSummary(batch=input_ids.shape[0], prompt=prompt, new_tokens=new_tokens,
                                kv_cache=kv_bytes, steps=tuple(steps))
    return replace(report, memory=memory.summary(model, ((input_ids,), {})), generation=summary)


def _cache(output: Any) -> Any:
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
    from .report import LatencyStats
    from .timing import _CpuClock, _CudaClock

    if not callable(getattr(model, "generate", None)):
        raise ModelError(f"{type(model).__name__} has no generate(): timing generation needs a transformers "
                         "causal LM")
    clock = _CudaClock() if input_ids.device.type == "cuda" else _CpuClock()
    first: list[float] = []
    steps: list[float] = []
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
                output = model(token, past_key_values=_cache(output), use_cache=True)
                token = output.logits[:, -1:].argmax(-1)
                elapsed = clock.end()
                if run >= warmup:
                    steps.append(elapsed)
    per_token = LatencyStats.from_samples(steps or first)
    return GenerationTiming(input_ids.shape[0], input_ids.shape[1], new_tokens, LatencyStats.from_samples(first),
                            per_token)
