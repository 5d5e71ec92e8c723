"""``data check | synth | svhn``: validate, generate or convert a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from digitexp.cli.output import EXIT_BAD_INPUT, EXIT_OK, non_negative_int, positive_int


def _triple(t: tuple[float, float, float], fmt: str = ".0f") -> str:
    return " / ".join(format(v, fmt) for v in t)


def cmd_data_check(args: argparse.Namespace) -> int:
    from digitexp.data import check_split, split_problems
    from digitexp.data.summary import split_stats

    root = Path(args.root)
    problems: list[str] = []
    stats = []
    for name in dict.fromkeys(args.splits):
        optional = name == "test"
        if optional and not (root / name).is_dir():
            continue
        split, found = check_split(
            root, name, require_annotations=not optional, clip_boxes=args.clip_boxes
        )
        if split is not None and not args.headers_only:
            found = found + split_problems(split)  # every image decoded (once: remembered)
        problems.extend(found)
        if split is not None and not found:
            stats.append(split_stats(split))
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        print(f"{len(problems)} problem(s) in {root}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for s in stats:
        print(
            f"{s.name}: {s.images} images, {s.boxes} boxes"
            + ("" if s.annotated else " (no annotations)")
        )
        if s.clipped_boxes:
            print(f"  {s.clipped_boxes} boxes clipped to their image")
        print(f"  image width  min/median/max: {_triple(s.image_width)} px")
        print(f"  image height min/median/max: {_triple(s.image_height)} px")
        if s.annotated:
            per = ", ".join(f"{n}: {c}" for n, c in s.digits_per_image.items())
            print(f"  digits per image: {per}")
            counts = " ".join(f"{d}:{c}" for d, c in s.digit_counts.items())
            print(f"  boxes per digit: {counts}")
            print(f"  box height min/median/max: {_triple(s.box_height)} px")
            print(f"  box h/w 5%/median/95%: {_triple(s.box_aspect_hw, '.2f')}")
    checked = "image headers checked" if args.headers_only else "every image decoded"
    print(f"ok: {root} ({checked})")
    return EXIT_OK


def cmd_data_synth(args: argparse.Namespace) -> int:
    from digitexp.data.synth import SynthOptions, generate

    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    options = SynthOptions(min_height=args.min_height, max_height=args.max_height)
    summary = generate(
        Path(args.out), counts, seed=args.seed, options=options, workers=args.workers
    )
    for s in summary.splits:
        print(f"{s.name}: {s.images} images, {s.boxes} boxes")
    print(
        f"wrote {summary.out} in {summary.seconds:.1f} s ({summary.images_per_second:.0f} images/s)"
    )
    return EXIT_OK


def cmd_data_svhn(args: argparse.Namespace) -> int:
    from digitexp.data.svhn import convert

    result = convert(Path(args.mat), Path(args.images), Path(args.out))
    print(
        f"wrote {result.out}: {result.images} images, {result.boxes} boxes "
        f"({result.clamped} clamped to the image, {result.dropped} dropped)"
    )
    return EXIT_OK


def register(sub: Any) -> None:
    data = sub.add_parser("data", help="check, generate or convert datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    p = dsub.add_parser("check", help="validate a dataset root and summarise it")
    p.add_argument("root")
    p.add_argument("--splits", nargs="+", default=["train", "valid", "test"])
    p.add_argument("--clip-boxes", action="store_true", help="clip boxes outside the image")
    p.add_argument(
        "--headers-only",
        action="store_true",
        help="read image headers only (quick; truncated pixel data goes unseen)",
    )
    p.set_defaults(func=cmd_data_check)
    p = dsub.add_parser("synth", help="generate synthetic house numbers in the HW2 layout")
    p.add_argument("--out", default="data/synth")
    p.add_argument("--train", type=positive_int, default=2000, help="images (default 2000)")
    p.add_argument("--valid", type=positive_int, default=300, help="images (default 300)")
    p.add_argument("--test", type=positive_int, default=300, help="images (default 300)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--workers", type=positive_int, default=None, help="default: one per core")
    p.add_argument("--min-height", type=positive_int, default=32, help="pixels, >= 16")
    p.add_argument("--max-height", type=positive_int, default=160, help="pixels, <= 4096")
    p.set_defaults(func=cmd_data_synth)
    p = dsub.add_parser("svhn", help="convert SVHN digitStruct.mat (format 1) to COCO JSON")
    p.add_argument("--mat", required=True)
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data_svhn)
