"""How fast digitexp.data.synth generates images (PNG + COCO JSON) on this machine.

    python benchmarks/synth_rate.py [--images 2000] [--workers N] [--seed 0]

Generates ``--images`` training images with the default options into a temporary folder and
prints, as its last line, one JSON object: images, seconds, images_per_s, workers and
hw2_estimate_minutes (the time for the 46,470 images of an HW2-sized set at that rate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from digitexp.data.synth import HW2_COUNTS, generate


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images to generate")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workers = args.workers or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="synth_rate_") as tmp:
        summary = generate(
            Path(tmp), {"train": args.images}, seed=args.seed, workers=workers, progress=False
        )
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    rate = summary.images_per_second
    hw2 = sum(HW2_COUNTS.values())
    print(f"{summary.images} images, {summary.splits[0].boxes} boxes, {size / 2**20:.1f} MiB")
    result = {
        "images": summary.images,
        "seconds": round(summary.seconds, 2),
        "images_per_s": round(rate, 1),
        "workers": workers,
        "hw2_estimate_minutes": round(hw2 / rate / 60, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
