"""Detections as a trained detector with a low score threshold gives them, for benchmarks.

Per image: each true digit found three times, jittered by ``jitter`` x its height and given a
wrong label with probability ``wrong_rate``, then background clutter up to ``per_image`` boxes,
all with random, sorted scores.
"""

from __future__ import annotations

import numpy as np

from digitexp.data import Split
from digitexp.metrics import Detections


def fake_detections(
    split: Split, seed: int, *, per_image: int, jitter: float, wrong_rate: float
) -> list[Detections]:
    rng = np.random.default_rng(seed)
    out = []
    for record in split.images:
        rows = []
        for box, label in zip(split.boxes[record.id], split.labels[record.id], strict=True):
            for _ in range(3):
                moved = box + rng.normal(0, jitter * (box[3] - box[1]), 4)
                wrong = rng.random() < wrong_rate
                rows.append((moved, int(rng.integers(1, 11)) if wrong else int(label)))
        while len(rows) < per_image:
            x, y = rng.uniform(0, record.width - 4), rng.uniform(0, record.height - 4)
            w, h = rng.uniform(3, record.width / 3), rng.uniform(3, record.height)
            rows.append((np.array([x, y, x + w, y + h]), int(rng.integers(1, 11))))
        boxes = np.array([r[0] for r in rows], np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        scores = np.sort(rng.random(len(rows)).astype(np.float32))[::-1]
        labels = np.array([r[1] for r in rows], np.int64)
        out.append(Detections(record.id, boxes, scores, labels))
    return out
