"""``modelprof check`` as a service: count (and time, when a latency limit asks for it), then hold each limit."""

from __future__ import annotations

from .budgets import LATENCY, CheckResult, check_limits
from .counting import count_costs
from .errors import ModelError, UsageError, one_line
from .options import Device, ModelSource
from .timing import TimingSettings, measure


def run_check(source: ModelSource, limits: dict[str, float], batch: int = 1, duration: float = 1.0) -> CheckResult:
    """Measure ``source`` and compare with ``limits`` (budget key -> value); latency is timed only when limited."""
    timed = LATENCY.key in limits
    if timed and source.device == Device.META:
        raise UsageError("latency cannot be measured on the meta device; use cpu or cuda", option="device")
    model = source.build_model()
    args, kwargs = source.build_inputs(batch)
    report = count_costs(model, args, kwargs, model_name=source.target)
    latency = None
    if timed:
        try:
            latency = measure(model, args, kwargs, batch, source.device.value,
                              TimingSettings(duration=duration)).latency.median
        except Exception as exc:
            raise ModelError(f"timing for the latency limit failed: {one_line(exc)}") from exc
    return CheckResult(source.target, check_limits(limits, report, latency))
