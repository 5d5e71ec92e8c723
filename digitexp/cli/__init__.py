"""``digitexp`` / ``python -m digitexp``: the command line, one module per command.

The only package that prints errors and chooses exit codes: 0 success, 1 a run failed
(diverged) or an internal failure (an exception nobody foresaw: one line naming it, and
``--debug`` for the traceback), 2 bad input (one line naming the file or setting and what is
wrong; a bad command line too), 130 interrupted. No traceback reaches the user without
``--debug``. Nothing imports it.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from digitexp.cli import (
    analyze,
    anchors,
    data,
    predict,
    register,
    report,
    run,
    runs,
    search,
    slurm,
    tune,
    ui,
)
from digitexp.cli.output import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    Parser,
    UsageError,
)
from digitexp.common.signals import ignore_signals, stop_on_first_signal
from digitexp.errors import DigitexpError

log = logging.getLogger("digitexp")

COMMANDS = (
    run,
    runs,
    data,
    predict,
    report,
    search,
    register,
    ui,
    analyze,
    anchors,
    slurm,
    tune,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="digitexp",
        description="Ablation suite for digit detection: specs, one trainer, MLflow, Optuna.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="print the traceback of an error (without it every error is one line)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _setup_logging(verbose: bool, debug: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not debug:  # these log caught database errors with tracebacks: digitexp says it in one line
        for chatty in ("mlflow.store.db.utils", "mlflow.system_metrics", "sqlalchemy"):
            logging.getLogger(chatty).setLevel(logging.CRITICAL)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints a "View run ... at" line when a run on a server ends; digitexp prints the
    # URL that opens the experiment's runs once, itself
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def one_line(exc: BaseException) -> str:
    """The error's message on one line. An error re-raised from a loader worker carries the
    worker's traceback: its last line holds the original message."""
    text = str(exc).strip()
    if "\n" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last.removeprefix(prefix).removeprefix(f"{type(exc).__name__}: ")


DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the file it concerns and what happened."""
    where = f"{exc.filename}: " if exc.filename else ""
    if exc.errno in DISK_FULL:
        return f"{where}no space left to write it ({exc.strerror}); free some space and run again"
    return f"{where}{exc.strerror or exc}"


def unforeseen_line(exc: BaseException) -> str:
    from digitexp.tracking import mask_text

    return (
        f"unexpected {type(exc).__name__}: {mask_text(one_line(exc))[:500]} (an internal "
        "error or an input nobody foresaw: run again with --debug for the traceback)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _setup_logging(args.verbose, args.debug)
    # SIGTERM (torchrun's teardown, a scheduler's preemption) ends a run like Ctrl-C: KILLED,
    # its last checkpoint kept; a repeated signal does not cut the status writes short
    stop_on_first_signal()

    def fail(line: str, code: int) -> int:
        if args.debug:
            traceback.print_exc()
        print(f"error: {line}", file=sys.stderr)
        return code

    try:
        return int(args.func(args))
    except DigitexpError as exc:
        return fail(one_line(exc), EXIT_BAD_INPUT)
    except OSError as exc:  # an output folder that cannot be written, a full disk, ...
        if isinstance(exc, BrokenPipeError):  # `digitexp runs | head`: the reader left
            _silence_stdout()
            return EXIT_OK
        return fail(os_error_line(exc), EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        ignore_signals()  # the runs are recorded as KILLED: what is left is to exit
        if args.debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        return fail(unforeseen_line(exc), EXIT_FAILED)


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
