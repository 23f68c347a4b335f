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


def inputs(infos) -> str:
    """Model inputs as ``tokens=1×128 int64, 1×3×224×224 float32`` (keyword inputs named)."""
    return ", ".join(f"{i.name + '=' if i.name else ''}{shapes((i.shape,))} {i.dtype}" for i in infos)


def milliseconds(seconds: float) -> str:
    """Seconds as milliseconds with three significant decimals: ``0.0012345 -> '1.234'``."""
    return f"{seconds * 1e3:.3f}"


_BYTE_SUFFIXES = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                  "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_COUNT_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def _parse(text: str, suffixes: dict[str, int], what: str, example: str) -> int:
    cleaned = text.strip().replace("_", "").replace(",", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    suffix = cleaned[len(number):].upper()
    try:
        value = float(number)
    except ValueError:
        value = None
    if value is None or suffix not in suffixes or value < 0:
        raise ValueError(f"'{text}' is not {what}; write e.g. {example}")
    return int(round(value * suffixes[suffix]))


def parse_bytes(text: str) -> int:
    """``'4GiB' -> 4294967296``, ``'300MB' -> 300000000``; KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024."""
    return _parse(text, _BYTE_SUFFIXES, "a size in bytes", "4GiB or 300MB")


def parse_count(text: str) -> int:
    """``'25M' -> 25000000``, ``'4.5G' -> 4500000000`` (K, M, G, T are powers of 1000)."""
    return _parse(text, _COUNT_SUFFIXES, "a count", "25M or 4.5G")
