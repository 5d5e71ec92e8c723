"""Paired bootstrap speed: 1,000 resamples of an HW2-sized validation split, two variants.

Ground truth: 3,340 images (HW2's validation size) of 1 to 4 digits, built in memory.
Detections of two variants: per image, the digits jittered (some with the wrong label) plus
background clutter, about 20 per image with random scores. Measured in one process, on one
core (BLAS and OpenMP threads set to 1):

- ``setup_seconds``: both variants' scorers (the matching, once per run);
- ``seconds``: scoring both variants on every resample (the paired bootstrap);
- ``pycocotools_seconds``: one resample materialized and scored by pycocotools (the plain
  way), per variant; the two must agree (``max_abs_diff``, over the first resamples).

Last line: a JSON object with ``resamples_per_s`` (paired resamples, both variants scored)
and ``ratio`` = pycocotools time per paired resample / ours.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from digitexp.config import EvalConfig  # noqa: E402
from digitexp.data import ImageRecord, Split  # noqa: E402
from digitexp.insight.bootstrap import (  # noqa: E402
    ResampleScorer,
    compare,
    resample_counts,
)
from digitexp.metrics import Detections, evaluate  # noqa: E402


def hw2_like_split(images: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    records, boxes, labels = [], {}, {}
    for image_id in range(1, images + 1):
        w, h = int(rng.integers(60, 300)), int(rng.integers(30, 150))
        n = int(rng.integers(1, 5))
        dh = rng.uniform(0.4, 0.9) * h
        dw = dh * rng.uniform(0.35, 0.6)
        x0 = rng.uniform(0, max(1.0, w - n * dw))
        y0 = rng.uniform(0, h - dh)
        xs = x0 + np.arange(n) * dw
        b = np.stack([xs, np.full(n, y0), xs + dw, np.full(n, y0 + dh)], axis=1)
        records.append(ImageRecord(image_id, f"{image_id}.png", w, h))
        boxes[image_id] = np.clip(b, 0, [w, h, w, h]).astype(np.float32)
        labels[image_id] = rng.integers(1, 11, n).astype(np.int64)
    return Split("valid", Path("."), Path("valid.json"), tuple(records), boxes, labels)


def detections(split: Split, seed: int, per_image: int, skill: float) -> dict[int, Detections]:
    rng = np.random.default_rng(seed)
    out = {}
    for record in split.images:
        gt, gl = split.boxes[record.id], split.labels[record.id]
        rows = []
        for box, label in zip(gt, gl, strict=True):
            for _ in range(3):
                jitter = rng.normal(0, (1.1 - skill) * 0.15 * (box[3] - box[1]), 4)
                wrong = rng.random() > skill
                rows.append((box + jitter, int(rng.integers(1, 11)) if wrong else int(label)))
        while len(rows) < per_image:
            x, y = rng.uniform(0, record.width - 4), rng.uniform(0, record.height - 4)
            w, h = rng.uniform(3, record.width / 3), rng.uniform(3, record.height)
            rows.append((np.array([x, y, x + w, y + h]), int(rng.integers(1, 11))))
        b = np.array([r[0] for r in rows], np.float32)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        scores = np.sort(rng.random(len(rows)).astype(np.float32))[::-1]
        out[record.id] = Detections(record.id, b, scores, np.array([r[1] for r in rows]))
    return out


def materialized(split: Split, dets: dict[int, Detections], counts: np.ndarray):
    """The resample as a split of its own: every copy of an image is a new image."""
    records, boxes, labels, out = [], {}, {}, []
    new = 0
    for i, r in enumerate(sorted(split.images, key=lambda r: r.id)):
        for _ in range(int(counts[i])):
            new += 1
            records.append(ImageRecord(new, f"{new}.png", r.width, r.height))
            boxes[new], labels[new] = split.boxes[r.id], split.labels[r.id]
            d = dets[r.id]
            out.append(Detections(new, d.boxes, d.scores, d.labels))
    return Split("resample", Path("."), Path("r.json"), tuple(records), boxes, labels), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3340)
    parser.add_argument("--per-image", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--check", type=int, default=2, help="resamples checked by pycocotools")
    args = parser.parse_args()
    cfg = EvalConfig()
    split = hw2_like_split(args.images, 0)
    runs = [detections(split, seed, args.per_image, skill) for seed, skill in ((1, 0.8), (2, 0.85))]
    total = sum(len(d.scores) for d in runs[0].values())
    t = time.perf_counter()
    scorers = [ResampleScorer(split, dets, cfg) for dets in runs]
    setup = time.perf_counter() - t
    counts = resample_counts(args.images, args.resamples, seed=0)
    t = time.perf_counter()
    scores = [s.scores(counts) for s in scorers]
    seconds = time.perf_counter() - t
    ones = np.ones(args.images, dtype=np.int64)
    observed = [s.score(ones)[0] for s in scorers]
    interval = compare([observed[0]], [observed[1]], [scores[0].map], [scores[1].map])
    worst = 0.0
    t = time.perf_counter()
    for b in range(args.check):
        for dets, score in zip(runs, scores, strict=True):
            m_split, m_dets = materialized(split, dets, counts[b])
            reference = evaluate(m_split, m_dets, cfg)
            worst = max(worst, abs(reference["map"] - score.map[b]))
            worst = max(worst, abs(reference["number_acc"] - score.number_acc[b]))
    reference_seconds = (time.perf_counter() - t) / max(args.check, 1)
    per_resample = seconds / args.resamples
    print(
        f"{args.images} images, {total} detections per variant; setup {setup:.1f} s; "
        f"{args.resamples} paired resamples in {seconds:.1f} s "
        f"({args.resamples / seconds:.0f}/s)"
    )
    print(
        f"pycocotools on one materialized resample (both variants): {reference_seconds:.2f} s; "
        f"max |difference| {worst:.2e}; Δ mAP {interval.delta:+.4f} "
        f"[{interval.low:+.4f}, {interval.high:+.4f}]"
    )
    print(
        json.dumps(
            {
                "images": args.images,
                "detections_per_variant": total,
                "resamples": args.resamples,
                "setup_seconds": round(setup, 2),
                "seconds": round(seconds, 2),
                "resamples_per_s": round(args.resamples / seconds, 1),
                "pycocotools_seconds": round(reference_seconds, 2),
                "ratio": round(reference_seconds / per_resample, 1),
                "max_abs_diff": worst,
            }
        )
    )


if __name__ == "__main__":
    main()
