"""``modelprof check`` as a service: count (and time, when a latency limit asks for it), then hold each limit."""

from __future__ import annotations

from dataclasses import replace

from modelprof.counting.stats import count_source
from modelprof.errors import ModelError, UsageError, one_line
from modelprof.loading.source import Device, ModelSource
from modelprof.reports.budgets import LIMITS, MFU, CheckResult, check_limits
from modelprof.timing import roofline
from modelprof.timing.calibrate import calibrated
from modelprof.timing.measure import TimingSettings, measure
from modelprof.workload import FORWARD, Forward, Training, Workload


def run_check(source: ModelSource, limits: dict[str, float], workload: Workload = FORWARD, batch: int = 1,
              duration: float = 1.0) -> CheckResult:
    """Measure ``source`` and compare with ``limits`` (budget key -> value); latency is timed only when limited,
    and MFU (achieved MAdd/s over the calibrated peak) only when a floor asks for it. The counts are of
    ``workload``; a forward becomes a training step (AdamW, the sum of the outputs as loss) when a limit is on the
    backward, the step or its memory. Latency is that of the forward, in the workload's precision."""
    timed = any(LIMITS[key].needs_timing for key in limits)
    if timed and source.device == Device.META:
        raise UsageError("latency and MFU cannot be measured on the meta device; use cpu or cuda", option="device")
    if workload.kind == Forward.KIND and any(LIMITS[key].needs_train for key in limits):
        workload = replace(workload, step=Training())
    model = source.build_model()
    report = count_source(source, workload, batch, model)
    latency = mfu = None
    if timed:
        args, kwargs = source.build_inputs(batch)
        try:
            latency = measure(model, args, kwargs, batch, source.device.value, TimingSettings(duration=duration),
                              workload=Workload(precision=workload.precision)).latency.median
        except Exception as exc:
            raise ModelError(f"timing for the latency and MFU limits failed: {one_line(exc)}") from exc
    if MFU.key in limits:
        mfu = roofline.mfu(report.total.madd, latency, calibrated(source.device.value, workload.precision.dtype_name))
    return CheckResult(source.target, check_limits(limits, report, latency, mfu))
