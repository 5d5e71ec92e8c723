"""``analyze RUN_ID``: the error analysis of a trained run, logged to the run."""

from __future__ import annotations

import argparse
from typing import Any

from digitexp.cli.output import EXIT_OK, fmt, table


def cmd_analyze(args: argparse.Namespace) -> int:
    from digitexp.insight.analysis import digit_frame, failure_frame, size_frame
    from digitexp.insight.runs import analyze_run
    from digitexp.tracking import TrackingStore

    predictions, analysis = analyze_run(
        TrackingStore(),
        args.run_id,
        data_root=args.data,
        device=args.device,
        log_to_run=not args.no_log,
    )
    run = predictions.run
    print(f"{run.name} ({run.run_id}): {analysis.images} validation images")
    digits = digit_frame(analysis)
    print("\nAP per digit")
    print(
        table(
            [[d, n, fmt(ap)] for d, n, ap in digits.itertuples(index=False)],
            ["digit", "boxes", "AP"],
        )
    )
    sizes = size_frame(analysis)
    print("\nAP per box size")
    print(
        table(
            [[b, fmt(ap)] for b, ap in zip(sizes["bin"], sizes["ap"], strict=True)], ["size", "AP"]
        )
    )
    failures = failure_frame(analysis)
    print("\nTask-2 reading of each image")
    print(
        table(
            [
                [t, n, f"{s:.1%}"]
                for t, n, s in zip(
                    failures["title"], failures["images"], failures["share"], strict=True
                )
            ],
            ["class", "images", "share"],
        )
    )
    if not args.no_log:
        print(f"\nlogged analysis/* metrics and artifacts to run {run.run_id}")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "analyze", help="error analysis of a trained run: AP per digit and size, Task-2 failures"
    )
    p.add_argument("run_id", help="a training run (child run)")
    p.add_argument("--data", help="data root, if it moved since training")
    p.add_argument("--device", help="device, if the run has no logged predictions to read")
    p.add_argument("--no-log", action="store_true", help="print only; log nothing to the run")
    p.set_defaults(func=cmd_analyze)
