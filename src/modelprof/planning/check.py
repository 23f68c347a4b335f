"""``modelprof check`` as a service: count (and time, when a latency limit asks for it), then hold each limit."""

from __future__ import annotations

from modelprof.counting.forward import count_costs
from modelprof.counting.train import count_train_step
from modelprof.errors import ModelError, UsageError, one_line
from modelprof.loading.source import Device, ModelSource
from modelprof.reports.budgets import LIMITS, MFU, CheckResult, check_limits
from modelprof.timing import roofline
from modelprof.timing.calibrate import calibrated
from modelprof.timing.measure import TimingSettings, measure


def run_check(source: ModelSource, limits: dict[str, float], batch: int = 1, duration: float = 1.0,
              train: bool = False, amp: bool = False) -> CheckResult:
    """Measure ``source`` and compare with ``limits`` (budget key -> value); latency is timed only when limited,
    and MFU (achieved MAdd/s over the calibrated peak) only when a floor asks for it. With ``train`` (or a
    training-memory limit) the counts are of one training step (AdamW, the sum of the outputs as loss); with
    ``amp`` they are counted under autocast."""
    timed = any(LIMITS[key].needs_timing for key in limits)
    if timed and source.device == Device.META:
        raise UsageError("latency and MFU cannot be measured on the meta device; use cpu or cuda", option="device")
    model = source.build_model()
    args, kwargs = source.build_inputs(batch)
    if train or any(LIMITS[key].needs_train for key in limits):
        report = count_train_step(model, args, kwargs, model_name=source.target, amp=amp)
    else:
        report = count_costs(model, args, kwargs, model_name=source.target, amp=amp)
    latency = mfu = None
    if timed:
        try:
            latency = measure(model, args, kwargs, batch, source.device.value,
                              TimingSettings(duration=duration)).latency.median
        except Exception as exc:
            raise ModelError(f"timing for the latency and MFU limits failed: {one_line(exc)}") from exc
    if MFU.key in limits:
        dtype = source.dtype.value if source.dtype else "float32"
        mfu = roofline.mfu(report.total.madd, latency, calibrated(source.device.value, dtype))
    return CheckResult(source.target, check_limits(limits, report, latency, mfu))
