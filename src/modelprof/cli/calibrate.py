"""``modelprof calibrate``: measure and cache the device's peak MAdd/s and memory bandwidth."""

from __future__ import annotations

from dataclasses import replace

import click

from modelprof.cli.common import emit, output_command
from modelprof.errors import UsageError
from modelprof.loading.source import MODEL_DTYPES, Device, OutputOptions


@click.command()
@output_command
@click.option("--device", type=click.Choice([Device.CPU.value, Device.CUDA.value]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice([d.value for d in MODEL_DTYPES]), default="float32", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: torch's).")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Time spent on each of the two measurements.")
def calibrate(out: OutputOptions, device: str, dtype: str, threads: int | None, seconds: float) -> None:
    """Measure the device's peak MAdd/s (a large matmul) and memory bandwidth (a large copy), and cache them for
    bench --layers, per device, dtype and thread count. On a known GPU the datasheet's peaks are shown beside."""
    import torch

    from modelprof.reports.calibrate import Calibration
    from modelprof.reports.catalog import document
    from modelprof.timing.calibrate import measure_peaks, save

    if device == Device.CUDA and not torch.cuda.is_available():
        raise UsageError("--device cuda: PyTorch sees no CUDA GPU here; use --device cpu")
    if threads:
        torch.set_num_threads(threads)
    peaks = measure_peaks(device, dtype, seconds)
    try:
        peaks = replace(peaks, source=f"measured now, cached in {save(peaks, device, dtype)}")
    except OSError as exc:
        peaks = replace(peaks, source=f"measured now, not cached ({exc.strerror})")
    cpu_threads = torch.get_num_threads() if device == Device.CPU else None
    emit(document(Calibration(device, dtype, cpu_threads, peaks)), out)
