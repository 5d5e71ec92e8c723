"""``predict RUN_ID --images DIR --out DIR``: the submission files with a run's best weights."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from digitexp.cli.output import EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from digitexp.config import parse_sets
    from digitexp.data import image_folder_split
    from digitexp.engine import load_trained_run
    from digitexp.submission import write_submission
    from digitexp.tracking import TrackingStore

    sets = parse_sets(args.set or [])
    if args.device:
        sets["train.device"] = args.device
    split = image_folder_split(Path(args.images))
    trained = load_trained_run(TrackingStore(), args.run_id, overrides=sets)
    detections = trained.infer(split)
    json_path, csv_path = write_submission(
        detections, [r.id for r in split.images], Path(args.out), trained.cfg.eval
    )
    print(f"wrote {json_path} and {csv_path} ({len(split.images)} images)")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="pred.json + pred.csv for a folder with a run's best.pt")
    p.add_argument("run_id")
    p.add_argument("--images", required=True, help="folder of images named by id (17.png)")
    p.add_argument("--out", required=True)
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--device")
    p.set_defaults(func=cmd_predict)
