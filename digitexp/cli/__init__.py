"""``digitexp`` / ``python -m digitexp``: the command line, one module per command.

The only package that prints errors and chooses exit codes: 0 success, 1 a run failed
(diverged), 2 bad input (one line naming the file and what is wrong), 130 interrupted.
Nothing imports it.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
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
from digitexp.cli.output import EXIT_BAD_INPUT, EXIT_INTERRUPTED
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
    parser = argparse.ArgumentParser(
        prog="digitexp",
        description="Ablation suite for digit detection: specs, one trainer, MLflow, Optuna.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "PIL", "optuna", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints a "View run ... at" line when a run on a server ends; digitexp prints the
    # URL that opens the experiment's runs once, itself
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _sigterm_interrupts() -> None:
    """SIGTERM (torchrun's teardown, a scheduler's preemption) ends a run like Ctrl-C: it is
    marked KILLED and its last checkpoint stays, instead of being left RUNNING."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def one_line(exc: BaseException) -> str:
    """The error's message on one line. An error re-raised from a loader worker carries the
    worker's traceback: its last line holds the original message."""
    text = str(exc).strip()
    if "\n" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    prefix = f"{type(exc).__module__}.{type(exc).__name__}: "
    return last.removeprefix(prefix).removeprefix(f"{type(exc).__name__}: ")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    _sigterm_interrupts()
    try:
        return int(args.func(args))
    except DigitexpError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # an output folder that cannot be written, a full disk, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
