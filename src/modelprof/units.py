"""Human-readable numbers for every renderer: counts in K/M/G/T, bytes in KiB/MiB/GiB, times in ms."""

from __future__ import annotations

_COUNT_UNITS = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))
_BYTE_UNITS = ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def count(n: int | float) -> str:
    """``18375000 -> '18.38M'``; below 1000 the exact integer."""
    for scale, suffix in _COUNT_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def nbytes(n: int | float) -> str:
    """``3001176 -> '2.86MiB'``; below 1 KiB the exact number of bytes."""
    for scale, suffix in _BYTE_UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}"
    return f"{int(n)}B"


def shapes(value: tuple[tuple[int, ...], ...]) -> str:
    """``((1, 3, 500, 500),) -> '1×3×500×500'``; several tensors are separated by commas."""
    return ", ".join("×".join(map(str, s)) if s else "()" for s in value)


def milliseconds(seconds: float) -> str:
    """Seconds as milliseconds with three significant decimals: ``0.0012345 -> '1.234'``."""
    return f"{seconds * 1e3:.3f}"
