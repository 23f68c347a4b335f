"""``modelprof calibrate``: measure a device's peak MAdd/s and memory bandwidth, and cache them.

The peak arithmetic rate is a large square matmul (2·n³ MAdd per call), the bandwidth a large copy (the tensor read
once and written once). Each is warmed up, then timed call by call (CUDA events on a GPU, ``time.perf_counter``
on a CPU) and the median call is taken. Results are cached per device name, dtype and thread count in
``$MODELPROF_CACHE`` (default ``~/.cache/modelprof``)/peaks.json, so ``bench --layers`` measures once per machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from modelprof.timing.measure import device_name
from modelprof.timing.roofline import Peaks, datasheet, upgrade_peaks

#: Square matmul size and copy size per device type: large enough to reach the peak, small enough to be quick.
MATMUL_SIZE = {"cpu": 2048, "cuda": 8192}
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}


def cache_path() -> Path:
    """Where measured peaks are kept."""
    root = os.environ.get("MODELPROF_CACHE") or Path.home() / ".cache" / "modelprof"
    return Path(root) / "peaks.json"


def cache_key(device: str, dtype: str, threads: int | None = None) -> str:
    """``cpu:AMD EPYC 7B13:float32:2`` (CUDA devices have no thread count)."""
    threads = torch.get_num_threads() if threads is None else threads
    name = device_name(device)
    return f"{device}:{name}:{dtype}" + (f":{threads}" if torch.device(device).type == "cpu" else "")


def _time_calls(fn: Callable[[], object], device: torch.device, seconds: float, min_calls: int = 5) -> float:
    """Median seconds per call after a short warm-up."""
    cuda = device.type == "cuda"
    for _ in range(2):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < min_calls or time.perf_counter() - started < seconds:
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end) / 1e3)
        else:
            tick = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - tick)
    return statistics.median(samples)


def measure_peaks(device: str = "cpu", dtype: str = "float32", seconds: float = 1.0) -> Peaks:
    """Time a large matmul and a large copy on ``device`` in ``dtype``: the achievable peaks."""
    target = torch.device(device)
    name = device_name(device)
    sheet_flops, sheet_bandwidth = datasheet(name, dtype) if target.type == "cuda" else (None, None)
    return Peaks(flops=matmul_rate(target, getattr(torch, dtype), seconds),
                 bandwidth=copy_rate(target, getattr(torch, dtype), seconds), source="measured", device=name,
                 datasheet_flops=sheet_flops, datasheet_bandwidth=sheet_bandwidth)


def matmul_rate(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """MAdd per second of an n x n matmul (2·n³ MAdd a call), n from :data:`MATMUL_SIZE`."""
    n = MATMUL_SIZE[device.type]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    with torch.inference_mode():
        return 2 * n**3 / _time_calls(lambda: torch.mm(a, b), device, seconds)


def copy_rate(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Bytes per second of a large copy (each byte read once and written once), size from :data:`COPY_BYTES`."""
    src = torch.empty(COPY_BYTES[device.type] // dtype.itemsize, device=device, dtype=dtype).fill_(1)
    dst = torch.empty_like(src)
    with torch.inference_mode():
        return 2 * src.nbytes / _time_calls(lambda: dst.copy_(src), device, seconds)


def _entries() -> dict:
    """The cache file's entries: {} when there is no file; a file that is not a JSON object of entries is ignored
    with a warning on stderr (it is measured again and written anew)."""
    path = cache_path()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        return {}
    except ValueError:
        entries = None
    if not isinstance(entries, dict):
        print(f"modelprof: warning: the calibration cache {path} is not a JSON object of peaks; ignoring it and "
              "measuring again", file=sys.stderr)
        return {}
    return entries


def load_cached(device: str, dtype: str, threads: int | None = None) -> Peaks | None:
    """Peaks measured before on this device, dtype and thread count, or None (also for an entry that is not one:
    it is measured again)."""
    entry = _entries().get(cache_key(device, dtype, threads))
    with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
        peaks = Peaks.from_dict(upgrade_peaks(entry))
        return Peaks(peaks.flops, peaks.bandwidth, f"cached in {cache_path()}", peaks.device,
                     peaks.datasheet_flops, peaks.datasheet_bandwidth)
    return None


def save(peaks: Peaks, device: str, dtype: str, threads: int | None = None) -> Path:
    """Add ``peaks`` to the cache file (other entries are kept); returns its path."""
    path = cache_path()
    entries = _entries()
    entries[cache_key(device, dtype, threads)] = peaks.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2) + "\n", encoding="utf-8")
    return path


def calibrated(device: str, dtype: str, seconds: float = 1.0) -> Peaks:
    """The cached peaks for this device, dtype and thread count, measured and cached first when there are none."""
    cached = load_cached(device, dtype)
    if cached is not None:
        return cached
    peaks = measure_peaks(device, dtype, seconds)
    with contextlib.suppress(OSError):
        path = save(peaks, device, dtype)
        return replace(peaks, source=f"measured now, cached in {path}")
    return peaks
