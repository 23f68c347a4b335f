"""The two kinds of failure the command line reports in one line: the user's usage, or the user's model."""


class ModelprofError(Exception):
    """Base class: a message meant for the user, and the exit code that goes with it."""

    exit_code = 1


class UsageError(ModelprofError):
    """What the user typed cannot work (unknown module, malformed --shape, unwritable -o). Exit code 2."""

    exit_code = 2


class ModelError(ModelprofError):
    """The user's model failed (its constructor, its import, or its forward pass). Exit code 1."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty), for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
