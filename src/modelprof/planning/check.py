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
              duration: float = 1.0, convention: str | None = None) -> CheckResult:
    """Measure ``source`` and compare with ``limits`` (budget key -> value); latency is timed only when limited,
    and MFU (achieved MAdd/s over the calibrated peak) only when a floor asks for it. The counts are of
    ``workload``; a forward becomes a training step (AdamW, the sum of the outputs as loss) when a limit is on the
    backward, the step or its memory. Latency is that of the forward, in the workload's precision. With
    ``convention``, the forward is counted as that peer tool counts it (its number in ``flops``, no MAdd), so
    only limits on Flops, memory traffic, parameters and latency can hold."""
    if convention is not None:
        refused = sorted(key for key in limits if "madd" in key or key == MFU.key or LIMITS[key].needs_train)
        if refused or workload.kind != Forward.KIND:
            what = ", ".join(LIMITS[k].option for k in refused) or f"a {workload.kind} workload"
            raise UsageError(f"{what} cannot be checked under a peer's convention (it counts one forward's Flops, "
                             "no MAdd); drop them or --convention", option="convention")
    timed = any(LIMITS[key].needs_timing for key in limits)
    if timed and source.device == Device.META:
        raise UsageError("latency and MFU cannot be measured on the meta device; use cpu or cuda", option="device")
    if workload.kind == Forward.KIND and any(LIMITS[key].needs_train for key in limits):
        workload = replace(workload, step=Training())
    model = source.build_model()
    report = count_source(source, workload, batch, model, convention)
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
    return CheckResult(source.target, check_limits(limits, report, latency, mfu), report.convention)
