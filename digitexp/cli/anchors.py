"""``anchors SPEC``: anchor coverage of every variant, before any training."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from digitexp.cli.output import EXIT_OK, add_config_args, fmt, overrides, table


def cmd_anchors(args: argparse.Namespace) -> int:
    from digitexp.common import files
    from digitexp.common.plotting import save
    from digitexp.insight.coverage import coverage_frame, variant_coverages
    from digitexp.insight.figures import coverage_figure
    from digitexp.spec import load_spec

    spec = load_spec(args.spec, preset=args.preset, sets=overrides(args))
    configs = {name: spec.config(name) for name in spec.variants}
    coverages = variant_coverages(configs, args.split)
    frame = coverage_frame(coverages, configs)
    first = next(iter(coverages.values()))
    print(f"{spec.name}: {spec.question}")
    print(
        f"ground-truth boxes of the {args.split} split after each model's resize; best anchor "
        f"IoU >= {first.fg_thresh:g} is an RPN foreground match, < {first.bg_thresh:g} background"
    )
    rows = [
        [r.variant, r.boxes, r.anchors, fmt(r.share_fg), fmt(r.share_bg), fmt(r.mean_best_iou)]
        for r in frame.itertuples(index=False)
    ]
    print(table(rows, ["variant", "boxes", "anchors", "IoU>=fg", "IoU>=bg", "mean best IoU"]))
    out = Path(args.out)
    csv = files.write_text(out / f"{spec.name}_anchor_coverage.csv", frame.to_csv(index=False))
    figure = save(
        coverage_figure(coverages, f"{spec.name}: ground-truth boxes ({args.split}) vs anchors"),
        out / f"{spec.name}_anchor_coverage.png",
    )
    print(f"wrote {csv} and {figure}")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "anchors", help="anchor coverage of a spec's variants on the data (no training)"
    )
    p.add_argument("spec", help="spec file, e.g. ablations/anchors.py")
    add_config_args(p)
    p.add_argument(
        "--split", choices=["train", "valid"], default="train", help="boxes of which split"
    )
    p.add_argument("--out", default="reports/anchors", help="folder for the CSV and the figure")
    p.set_defaults(func=cmd_anchors)
