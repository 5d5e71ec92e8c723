"""``predict RUN_ID --images DIR --out DIR``: the submission files with a run's best weights."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from digitexp.cli.output import EXIT_OK, positive_int
from digitexp.errors import ConfigError


def cmd_predict(args: argparse.Namespace) -> int:
    from digitexp.config import parse_sets
    from digitexp.data import image_folder_split, verify_images
    from digitexp.engine import load_trained_run
    from digitexp.submission import write_submission
    from digitexp.tracking import TrackingStore

    sets = parse_sets(args.set or [])
    if args.device:
        sets["train.device"] = args.device
    if args.all_detections:
        sets["eval.submission_all_detections"] = True
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder; give a folder to write into")
    split = image_folder_split(Path(args.images))
    verify_images(split)
    trained = load_trained_run(
        TrackingStore(), args.run_id, overrides=sets, batch_size=args.batch_size
    )
    detections = trained.infer(split)
    json_path, csv_path, info_path = write_submission(
        detections, split.images, out, trained.cfg.eval, trained.inference_settings()
    )
    print(
        f"wrote {json_path}, {csv_path} and {info_path.name} ({len(split.images)} images, "
        f"batch size {trained.batch_size}, {trained.device})"
    )
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("predict", help="pred.json + pred.csv for a folder with a run's best.pt")
    p.add_argument("run_id")
    p.add_argument("--images", required=True, help="folder of images named by id (17.png)")
    p.add_argument("--out", required=True, help="folder for pred.json, pred.csv, inference.json")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        dest="batch_size",
        help="images per forward pass (default: the run's train.eval_batch_size); detections "
        "depend slightly on it (padding): 1 reproduces the report author's test.py",
    )
    p.add_argument(
        "--all-detections",
        action="store_true",
        help="pred.json keeps every detection, not only those with score > eval.score_thresh",
    )
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE")
    p.add_argument("--device")
    p.set_defaults(func=cmd_predict)
