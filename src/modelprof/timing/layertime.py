"""Time per layer (``bench --layers``): hooks time every module call, each module keeps its *self* time (its own
time less the time of the modules it called), and each row of the stats table gets the self time of the modules it
stands for, so rows add up to the whole forward.

On a CPU the hooks read ``time.perf_counter``; on CUDA they record events in the stream and the events are read
after one synchronize per forward, so timing never serializes the GPU inside a forward. The self time of a module
that has no row (a container that only calls its children: Python between layers, the hooks' own cost) goes to
the ``(unattributed)`` row, so nothing is hidden.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from modelprof.counting.runtime import eval_inference
from modelprof.reports.stats import ROOT
from modelprof.timing.measure import TimingSettings, share_done

#: The row that holds time no stats row owns.
UNATTRIBUTED = "(unattributed)"


class LayerClock:
    """Forward hooks on every module that record when each call starts and ends (one context per use)."""

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        self.model = model
        self.names = {id(m): (name or ROOT) for name, m in model.named_modules()}
        self.cuda = device.type == "cuda"
        self.calls: list[list[Any]] = []  # [name, start, end, index of the calling module's call or -1]
        self.stack: list[int] = []
        self._handles: list[Any] = []

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _pre(self, module: nn.Module, args: tuple) -> None:
        self.calls.append([self.names[id(module)], self._mark(), None, self.stack[-1] if self.stack else -1])
        self.stack.append(len(self.calls) - 1)

    def _post(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.calls[self.stack.pop()][2] = self._mark()

    def __enter__(self) -> LayerClock:
        for module in self.model.modules():
            self._handles.append(module.register_forward_pre_hook(self._pre))
            self._handles.append(module.register_forward_hook(self._post))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def self_times(self) -> dict[str, float]:
        """Seconds of each module's own time in the forward just run (summed over its calls); then reset."""
        if self.cuda and self.calls:
            self.calls[-1][2].synchronize()
            inclusive = [start.elapsed_time(end) / 1e3 for _, start, end, _ in self.calls]
        else:
            inclusive = [end - start for _, start, end, _ in self.calls]
        own = list(inclusive)
        for index, (_, _, _, parent) in enumerate(self.calls):
            if parent >= 0:
                own[parent] -= inclusive[index]
        totals: dict[str, float] = defaultdict(float)
        for (name, _, _, _), seconds in zip(self.calls, own, strict=True):
            totals[name] += seconds
        self.calls.clear()
        return dict(totals)


def measure_layers(model: nn.Module, args: tuple, kwargs: dict, device: torch.device | str,
                   row_of: Callable[[str], str | None], settings: TimingSettings | None = None
                   ) -> dict[str, list[float]]:
    """Per-forward seconds of every row, ``row_of`` mapping a module name to its row (None: no row of its own,
    its self time goes to :data:`UNATTRIBUTED`). Warm-up and measurement follow ``settings`` as ``bench`` does."""
    device = torch.device(device)
    settings = settings or TimingSettings()
    samples: dict[str, list[float]] = defaultdict(list)
    with eval_inference(model), LayerClock(model, device) as clock:
        for _ in range(max(1, settings.warmup_calls)):
            model(*args, **kwargs)
            clock.self_times()
        forwards: list[float] = []
        begun = time.perf_counter()
        while True:
            model(*args, **kwargs)
            per_row: dict[str, float] = defaultdict(float)
            for name, seconds in clock.self_times().items():
                per_row[row_of(name) or UNATTRIBUTED] += seconds
            for row, seconds in per_row.items():
                samples[row].append(seconds)
            forwards.append(sum(per_row.values()))
            if share_done(forwards, time.perf_counter() - begun, settings) >= 1.0:
                break
    count = len(forwards)
    return {row: values + [0.0] * (count - len(values)) for row, values in samples.items()}
