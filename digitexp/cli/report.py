"""``report``: rebuild reports/ (tables and figures) from the MLflow store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from digitexp.cli.output import EXIT_OK, runs_url_line


def cmd_report(args: argparse.Namespace) -> int:
    from digitexp import presets
    from digitexp.report import generate
    from digitexp.tracking import TrackingStore

    if args.preset not in (None, "none"):
        presets.overrides(args.preset)  # an unknown preset would count no run, silently

    store = TrackingStore()
    summary = generate(
        store,
        Path(args.out),
        ablations=Path(args.ablations),
        specs=args.spec,
        preset=args.preset,
        resamples=args.bootstrap,
    )
    print(
        f"wrote {summary.out / 'README.md'}: {len(summary.specs)} spec(s), {summary.runs} run(s)"
        f" counted, {summary.left_out} left out, in {summary.seconds:.1f} s"
    )
    for experiment in summary.experiments:
        print(runs_url_line(store, experiment))
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="rebuild reports/: tables and curves from MLflow")
    p.add_argument("--out", default="reports")
    p.add_argument("--spec", action="append", help="only this spec (repeatable)")
    p.add_argument("--preset", help="only runs made with this preset (none: without one)")
    p.add_argument("--ablations", default="ablations", help="folder of spec files")
    p.add_argument(
        "--bootstrap",
        type=int,
        metavar="B",
        help="paired-bootstrap resamples of the validation images (default 1000; 0 = none)",
    )
    p.set_defaults(func=cmd_report)
