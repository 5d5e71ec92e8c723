"""What checking every image costs before a run, the first time and the next.

    python benchmarks/data_verify.py [--images 3000] [--seed 0]

On a synthetic training split of ``--images`` images, in one process:

- ``plain_seconds``: the plain reference, a sequential loop that opens and fully decodes each
  image with Pillow (what any careful check must at least do);
- ``headers_seconds``: loading the split (annotations and image headers, every run does it);
- ``first_seconds``: ``verify_images`` on a folder never verified (every image decoded, in
  threads, the files that decoded remembered in ``.digitexp-verified.json``);
- ``second_seconds``: ``verify_images`` again (a stat per image against the record);
- ``changed_seconds``: again after 1% of the files changed (those are decoded again).

Last line: a JSON object with these and ``first_vs_plain`` (first / plain) and
``second_vs_plain`` (second / plain); ``hw2_second_estimate_s`` scales the second check to the
46,470 images of an HW2-sized set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from PIL import Image

from digitexp.data import load_split, verify_images
from digitexp.data.synth import HW2_COUNTS, generate
from digitexp.data.verification import RECORD_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="data_verify_") as tmp:
        root = Path(tmp)
        generate(root, {"train": args.images}, seed=args.seed, progress=False)
        folder = root / "train"
        paths = sorted(folder.glob("*.png"))
        start = time.perf_counter()
        for path in paths:
            with Image.open(path) as img:
                img.load()
        plain = time.perf_counter() - start

        start = time.perf_counter()
        split = load_split(root, "train")
        headers = time.perf_counter() - start

        (folder / RECORD_NAME).unlink(missing_ok=True)
        start = time.perf_counter()
        verify_images(split, progress=False)
        first = time.perf_counter() - start

        start = time.perf_counter()
        verify_images(split, progress=False)
        second = time.perf_counter() - start

        for path in paths[:: max(1, len(paths) // max(1, len(paths) // 100))]:
            os.utime(path)  # touched: a new mtime, so no longer trusted
        start = time.perf_counter()
        verify_images(split, progress=False)
        changed = time.perf_counter() - start
    hw2 = sum(HW2_COUNTS.values())
    print(
        f"{args.images} images: plain decode {plain:.2f} s, headers {headers:.2f} s, first "
        f"check {first:.2f} s, second {second:.3f} s, after 1% changed {changed:.2f} s"
    )
    print(
        json.dumps(
            {
                "images": args.images,
                "plain_seconds": round(plain, 3),
                "headers_seconds": round(headers, 3),
                "first_seconds": round(first, 3),
                "second_seconds": round(second, 4),
                "changed_seconds": round(changed, 3),
                "first_vs_plain": round(first / plain, 3),
                "second_vs_plain": round(second / plain, 4),
                "hw2_second_estimate_s": round(second * hw2 / args.images, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
