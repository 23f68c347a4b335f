"""The roofline: what a device can do, and where each layer stands against it. Pure arithmetic, no torch.

A device has a peak arithmetic rate P (MAdd per second: FLOP/s counting a multiply-add as two, as MAdd does) and a
peak memory bandwidth B (bytes per second). A layer that does W MAdd and moves Q bytes (MemRead + MemWrite) cannot
take less than

    attainable = max(W / P, Q / B)

Its arithmetic intensity is I = W / Q; the ridge point is P / B. A layer with I at or above the ridge is
compute-bound (its roof is W / P), below it memory-bound (Q / B). Its efficiency is attainable / measured: 100 %
means it runs at its roof.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelprof.reports.serial import Saved, key


@dataclass(frozen=True)
class Peaks(Saved):
    """A device's peak MAdd/s and bytes/s, where they came from, and the datasheet's figures when known.

    In JSON the rates are ``madd_per_s`` and ``datasheet_madd_per_s`` (schema 1 called them ``flops``)."""

    flops: float = field(metadata=key("madd_per_s"))
    bandwidth: float
    source: str = "measured"
    device: str = ""
    datasheet_flops: float | None = field(default=None, metadata=key("datasheet_madd_per_s"))
    datasheet_bandwidth: float | None = None

    @property
    def ridge(self) -> float:
        """The arithmetic intensity (MAdd per byte) where the two roofs meet."""
        return self.flops / self.bandwidth

    def json_derived(self, parent: Any = None) -> dict[str, Any]:
        return {"ridge": self.ridge}


def upgrade_peaks(data: dict[str, Any]) -> dict[str, Any]:
    """Peaks written by schema 1 (MAdd/s under ``flops``) in today's keys; today's pass through."""
    renames = {"flops": "madd_per_s", "datasheet_flops": "datasheet_madd_per_s"}
    return {renames.get(k, k): v for k, v in data.items()}


def intensity(madd: float, nbytes: float) -> float | None:
    """MAdd per byte moved (None when nothing moves)."""
    return madd / nbytes if nbytes else None


def attainable_seconds(madd: float, nbytes: float, peaks: Peaks) -> float:
    """The least time the work can take on this device: ``max(MAdd / peak FLOP/s, bytes / peak bandwidth)``."""
    return max(madd / peaks.flops, nbytes / peaks.bandwidth)


def bound(madd: float, nbytes: float, peaks: Peaks) -> str:
    """``compute`` when the intensity is at or above the ridge point, else ``memory``."""
    value = intensity(madd, nbytes)
    return "compute" if value is not None and value >= peaks.ridge else "memory"


def efficiency(madd: float, nbytes: float, measured_seconds: float, peaks: Peaks) -> float | None:
    """Attainable time over measured time (1.0: at the roof); None when nothing was measured."""
    if measured_seconds <= 0:
        return None
    return attainable_seconds(madd, nbytes, peaks) / measured_seconds


def mfu(madd: float, seconds: float, peaks: Peaks) -> float | None:
    """Model FLOP/s utilisation: achieved MAdd per second over the peak."""
    return madd / seconds / peaks.flops if seconds > 0 else None


def verdict(madd: float, nbytes: float, measured_seconds: float, peaks: Peaks) -> str:
    """``memory-bound, 35 % of roof``."""
    share = efficiency(madd, nbytes, measured_seconds, peaks)
    if not madd and not nbytes:
        return "no counted work"
    where = f", {100 * share:.0f} % of roof" if share is not None else ""
    return f"{bound(madd, nbytes, peaks)}-bound{where}"


# ----------------------------------------------------------------------------------------------------------------
# Datasheet peaks of common GPUs (dense, no sparsity), shown beside the measured ones on CUDA.
# ----------------------------------------------------------------------------------------------------------------

#: name fragment -> (FLOP/s by dtype, memory bytes/s). float32 is plain FP32 (PyTorch leaves TF32 off for matmul
#: by default); float16 and bfloat16 are tensor-core rates with FP32 accumulation.
DATASHEET: dict[str, tuple[dict[str, float], float]] = {
    "H200": ({"float32": 67e12, "bfloat16": 989e12, "float16": 989e12}, 4.8e12),
    "H100 PCIe": ({"float32": 51e12, "bfloat16": 756e12, "float16": 756e12}, 2.0e12),
    "H100": ({"float32": 67e12, "bfloat16": 989e12, "float16": 989e12}, 3.35e12),
    "A100-SXM4-80GB": ({"float32": 19.5e12, "bfloat16": 312e12, "float16": 312e12}, 2.039e12),
    "A100-PCIE-80GB": ({"float32": 19.5e12, "bfloat16": 312e12, "float16": 312e12}, 1.935e12),
    "A100": ({"float32": 19.5e12, "bfloat16": 312e12, "float16": 312e12}, 1.555e12),
    "L40S": ({"float32": 91.6e12, "bfloat16": 362e12, "float16": 362e12}, 864e9),
    "L4": ({"float32": 30.3e12, "bfloat16": 121e12, "float16": 121e12}, 300e9),
    "A10": ({"float32": 31.2e12, "bfloat16": 125e12, "float16": 125e12}, 600e9),
    "RTX 4090": ({"float32": 82.6e12, "bfloat16": 165e12, "float16": 165e12}, 1008e9),
    "RTX 3090": ({"float32": 35.6e12, "bfloat16": 71e12, "float16": 71e12}, 936e9),
    "V100": ({"float32": 15.7e12, "float16": 125e12}, 900e9),
    "T4": ({"float32": 8.1e12, "float16": 65e12}, 320e9),
}


def datasheet(device_name: str, dtype: str) -> tuple[float | None, float | None]:
    """(FLOP/s, bytes/s) from the datasheet for a GPU whose name contains a known fragment, else (None, None)."""
    for fragment, (flops, bandwidth) in DATASHEET.items():
        if fragment.lower() in device_name.lower():
            return flops.get(dtype), bandwidth
    return None, None
