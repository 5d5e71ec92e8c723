"""``analyze RUN_ID``: the error analysis of a trained run, logged to the run."""

from __future__ import annotations

import argparse
from typing import Any

from digitexp.cli.output import EXIT_OK, fmt, table


def cmd_analyze(args: argparse.Namespace) -> int:
    from digitexp.insight.analysis import COCO_SIZE_TITLES
    from digitexp.insight.failures import FAILURE_CLASSES, FAILURE_TITLES
    from digitexp.insight.runs import analyze_run
    from digitexp.metrics.breakdown import COCO_SIZES, HEIGHT_BINS, height_bin_label
    from digitexp.tracking import TrackingStore

    predictions, analysis = analyze_run(
        TrackingStore(),
        args.run_id,
        data_root=args.data,
        device=args.device,
        log_to_run=not args.no_log,
    )
    run = predictions.run
    b = analysis.breakdown
    print(f"{run.name} ({run.run_id}): {analysis.images} validation images")
    print("\nAP per digit (IoU 0.50:0.95)")
    rows = [
        [d, n, fmt(ap)] for d, (n, ap) in enumerate(zip(b.gt_per_digit, b.per_digit, strict=True))
    ]
    print(table(rows, ["digit", "boxes", "AP"]))
    print("\nAP per box size")
    rows = [
        [f"height {height_bin_label(k)}", b.gt_per_height[k], fmt(b.heights[k])]
        for k, _, _ in HEIGHT_BINS
    ]
    rows += [[COCO_SIZE_TITLES[s], "", fmt(b.coco_sizes[s])] for s in COCO_SIZES]
    print(table(rows, ["size", "boxes", "AP"]))
    print("\nTask-2 reading of each image (the first class that applies)")
    shares = analysis.failure_shares()
    rows = [[FAILURE_TITLES[f], analysis.failures[f], f"{shares[f]:.1%}"] for f in FAILURE_CLASSES]
    print(table(rows, ["class", "images", "share"]))
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
