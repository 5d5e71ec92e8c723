"""Summary statistics of a validated split (``digitexp data check``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from digitexp.data.splits import Split


@dataclass(frozen=True)
class SplitStats:
    name: str
    images: int
    boxes: int
    annotated: bool
    digits_per_image: dict[int, int]
    digit_counts: dict[int, int]
    image_width: tuple[float, float, float]  # min, median, max
    image_height: tuple[float, float, float]
    box_height: tuple[float, float, float]
    box_aspect_hw: tuple[float, float, float]  # 5th percentile, median, 95th percentile
    clipped_boxes: int


def _triple(values: np.ndarray, low: float = 0, high: float = 100) -> tuple[float, float, float]:
    if values.size == 0:
        return (float("nan"),) * 3
    lo, mid, hi = np.percentile(values, [low, 50, high])
    return float(lo), float(mid), float(hi)


def split_stats(split: Split) -> SplitStats:
    widths = np.array([r.width for r in split.images], dtype=np.float64)
    heights = np.array([r.height for r in split.images], dtype=np.float64)
    boxes = (
        np.concatenate([split.boxes[r.id] for r in split.images])
        if split.has_annotations and split.images
        else np.zeros((0, 4), np.float32)
    )
    labels = (
        np.concatenate([split.labels[r.id] for r in split.images])
        if split.has_annotations and split.images
        else np.zeros((0,), np.int64)
    )
    per_image = [len(split.labels.get(r.id, ())) for r in split.images]
    bh = boxes[:, 3] - boxes[:, 1]
    bw = boxes[:, 2] - boxes[:, 0]
    return SplitStats(
        name=split.name,
        images=len(split.images),
        boxes=int(boxes.shape[0]),
        annotated=split.has_annotations,
        digits_per_image=dict(sorted({n: per_image.count(n) for n in set(per_image)}.items())),
        digit_counts={d: int((labels == d + 1).sum()) for d in range(10)},
        image_width=_triple(widths),
        image_height=_triple(heights),
        box_height=_triple(bh),
        box_aspect_hw=_triple(bh / np.maximum(bw, 1e-6), 5, 95),
        clipped_boxes=split.clipped_boxes,
    )
