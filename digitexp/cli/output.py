"""What every command shares: exit codes, plain-text tables, number formatting, overrides."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A left-aligned plain-text table with a rule under the header."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def fmt(value: Any) -> str:
    """A cell: '–' for missing, four decimals for floats."""
    if value is None:
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

    sets = parse_sets(args.set or [])
    if getattr(args, "data", None):
        sets["data.root"] = args.data
    if getattr(args, "device", None):
        sets["train.device"] = args.device
    return sets


def runs_url_line(store: Any, experiment: str) -> str:
    """``experiment NAME in the MLflow UI: URL`` (the runs table, model-training view)."""
    url = store.experiment_url(experiment)
    if url is None:
        return f"experiment {experiment}: not in {store.masked_uri}"
    return f"experiment {experiment} in the MLflow UI: {url}"
