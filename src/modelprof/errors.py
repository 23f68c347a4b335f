"""The failures modelprof reports in one line: the user's usage, or the user's model.

Library errors speak of the library (``device 'cuda'``, ``batch 8``). Where a command-line option is the fix, the
error names the parameter (``option``) and the kind of fix (``hint``); the CLI turns those into its own flag names
and advice, so the Python API never talks about flags.
"""

from __future__ import annotations

from enum import StrEnum


class Hint(StrEnum):
    """The kinds of fix an error can point to; the CLI words each one for its flags."""

    INPUTS = "inputs"
    KWARGS = "kwargs"
    STRICT = "strict"
    META_DEVICE = "meta_device"
    TP_PLAN = "tp_plan"
    INPUTS_OR_TP_PLAN = "inputs_or_tp_plan"
    VALUES = "values"


class ModelprofError(Exception):
    """Base class: a message meant for the user, and the exit code that goes with it.

    ``option`` names the parameter the message is about (``device``, ``kwargs``); ``hint`` the kind of fix.
    """

    exit_code = 1

    def __init__(self, message: str, *, option: str | None = None, hint: Hint | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.hint = hint


class UsageError(ModelprofError):
    """What the user asked for cannot work (unknown module, malformed shape, unwritable file). Exit code 2."""

    exit_code = 2


class ModelError(ModelprofError):
    """The user's model failed (its constructor, its import, or its forward pass). Exit code 1."""

    exit_code = 1


def one_line(exc: BaseException | str) -> str:
    """An exception's message as one line: its first non-empty line, spaces collapsed (the type name when empty).

    The one way modelprof flattens a message. Every error modelprof prints is a single line; the first line of
    a user's multi-line error, or of PyTorch's (whose later lines are C++ stack frames), says what went wrong; a first
    line that ends in a colon introduces the second, which is kept with it (pydantic's and transformers' validation
    errors: "Class validation error for validator 'validate_architecture':", then the reason).
    """
    lines = [line for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return exc if isinstance(exc, str) else type(exc).__name__
    return " ".join(" ".join(lines[:2] if lines[0].rstrip().endswith(":") else lines[:1]).split())
