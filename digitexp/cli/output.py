"""What every command shares: exit codes, plain-text tables, number formatting, overrides."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line argparse refuses: printed as one ``error:`` line, exit 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one ``error:`` line (and a pointer to --help)
    instead of the usage block, so every refusal of the CLI looks the same."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see: {self.prog} --help)")


def _int(text: str, low: int | None, high: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (at most 2**31 - 1)."""
    return _int(text, 1, 2**31 - 1, "an integer from 1 to 2147483647")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (at most 2**31 - 1)."""
    return _int(text, 0, 2**31 - 1, "an integer from 0 to 2147483647")


def seed_int(text: str) -> int:
    """argparse type: a seed NumPy, Python and torch all take (0 .. 2**32 - 1)."""
    return _int(text, 0, 2**32 - 1, "a seed from 0 to 4294967295")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


def port_int(text: str) -> int:
    """argparse type: a TCP port (1 .. 65535)."""
    return _int(text, 1, 65535, "a TCP port from 1 to 65535")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A left-aligned plain-text table with a rule under the header."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def fmt(value: Any) -> str:
    """A cell: '–' for missing or undefined (NaN), four decimals for floats."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def add_config_args(p: argparse.ArgumentParser) -> None:
    """--preset, --set and --data: the overrides a spec is resolved with."""
    p.add_argument("--preset", help="named override set: demo | smoke")
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        metavar="KEY=VALUE",
        help="overrides, e.g. --set model.box_nms_thresh=0.4 train.epochs=3",
    )
    p.add_argument("--data", metavar="ROOT", help="data root (same as --set data.root=ROOT)")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--set`` items, with ``--data`` and ``--device`` folded in."""
    from digitexp.config import parse_sets
    from digitexp.errors import ConfigError

    sets = parse_sets(args.set or [])
    for flag, key in (("data", "data.root"), ("device", "train.device")):
        value = getattr(args, flag, None)
        if value is None:
            continue
        if key in sets and sets[key] != value:
            raise ConfigError(
                f"--{flag} {value!r} and --set {key}={sets[key]!r} disagree; keep one"
            )
        sets[key] = value
    return sets


def runs_url_line(store: Any, experiment: str) -> str:
    """``experiment NAME in the MLflow UI: URL`` (the runs table, model-training view)."""
    url = store.experiment_url(experiment)
    if url is None:
        return f"experiment {experiment}: not in {store.masked_uri}"
    return f"experiment {experiment} in the MLflow UI: {url}"
