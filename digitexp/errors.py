"""Error types raised by library code; only cli.py turns them into messages and exit codes."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class DigitexpError(Exception):
    """A problem the user can fix: bad input, bad config, missing file.

    ``str(error)`` is one line that names the file or key and says what is wrong.
    """


class ConfigError(DigitexpError):
    """An override, preset or config value is invalid."""


class SpecError(DigitexpError):
    """A spec file cannot be loaded or one of its variants does not resolve."""


class DataError(DigitexpError):
    """A dataset fails validation. ``problems`` lists every problem found, one line each."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class WeightsError(DigitexpError):
    """Pretrained weights or a checkpoint cannot be loaded."""


class TrackingError(DigitexpError):
    """The tracking store cannot be reached or a run/artifact is missing."""


class RunNotFound(TrackingError):
    """No run with that id in the store."""


class TrainingError(DigitexpError):
    """Training had to stop (non-finite loss, ...)."""
