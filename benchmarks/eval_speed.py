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

import numpy as np

from digitexp.data import load_split
from digitexp.data.synth import generate
from digitexp.metrics import Detections, coco_map, coco_results


def detections(split, seed: int, per_image: int) -> list[Detections]:
    rng = np.random.default_rng(seed)
    out = []
    for record in split.images:
        boxes, labels = split.boxes[record.id], split.labels[record.id]
        rows = []
        for box, label in zip(boxes, labels, strict=True):
            for _ in range(3):
                jitter = rng.normal(0, 0.08 * (box[3] - box[1]), 4)
                wrong = rng.random() < 0.15
                rows.append((box + jitter, int(rng.integers(1, 11)) if wrong else int(label)))
        while len(rows) < per_image:
            x, y = rng.uniform(0, record.width - 4), rng.uniform(0, record.height - 4)
            w, h = rng.uniform(3, record.width / 3), rng.uniform(3, record.height)
            rows.append((np.array([x, y, x + w, y + h]), int(rng.integers(1, 11))))
        b = np.array([r[0] for r in rows], np.float32)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        scores = np.sort(rng.random(len(rows)).astype(np.float32))[::-1]
        out.append(Detections(record.id, b, scores, np.array([r[1] for r in rows], np.int64)))
    return out


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
    results = coco_results(detections(split, 0, args.per_image))
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
