"""COCO evaluation of an HW2-sized validation set: pycocotools against faster-coco-eval.

Ground truth: a synthetic validation split of 3,340 images (HW2's size). Detections: per
image, the digits jittered (some with the wrong label) plus background clutter, about 20 per
image with random scores, as a trained detector with a low score threshold gives. Both
backends run through ``evaluate.coco_map`` (the ``eval.coco_backend`` switch); the metrics
must be identical. Last line: a JSON object whose ``ratio`` is pycocotools time /
faster-coco-eval time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fake_detections import fake_detections

from digitexp.data import load_split
from digitexp.data.synth import generate
from digitexp.metrics import coco_map, coco_results


def timed(gt: dict, results: list, backend: str, repeats: int) -> tuple[float, dict]:
    times, metrics = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        metrics = coco_map(gt, results, backend)
        times.append(time.perf_counter() - start)
    return statistics.median(times), metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3340)
    parser.add_argument("--per-image", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eval_speed_") as tmp:
        generate(Path(tmp), {"valid": args.images}, seed=5, progress=False)
        split = load_split(Path(tmp), "valid")
    gt = split.coco_gt()
    results = coco_results(
        fake_detections(split, 0, per_image=args.per_image, jitter=0.08, wrong_rate=0.15)
    )
    slow, reference = timed(gt, results, "pycocotools", args.repeats)
    fast, metrics = timed(gt, results, "faster_coco_eval", args.repeats)
    identical = metrics == reference
    print(f"{len(results)} detections on {args.images} images")
    print(f"pycocotools {slow:.2f} s, faster-coco-eval {fast:.2f} s; metrics {reference}")
    print(f"faster-coco-eval metrics identical: {identical} {'' if identical else metrics}")
    print(
        json.dumps(
            {
                "images": args.images,
                "detections": len(results),
                "pycocotools_seconds": round(slow, 3),
                "faster_coco_eval_seconds": round(fast, 3),
                "ratio": round(slow / fast, 2),
                "identical": identical,
                "max_abs_diff": max(abs(metrics[k] - reference[k]) for k in reference),
            }
        )
    )


if __name__ == "__main__":
    main()
