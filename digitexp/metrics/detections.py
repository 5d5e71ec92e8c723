"""Detections of one image, their COCO results form, and torchvision's class-agnostic NMS."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import nms


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes xyxy (N, 4) in pixels, scores (N,), labels 1..10 (N,)."""

    image_id: int
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls, image_id: int) -> Detections:
        return cls(
            image_id,
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int64),
        )


def agnostic_nms(det: Detections, iou: float) -> np.ndarray:
    """Indices of ``det`` kept by torchvision's class-agnostic ``nms`` at ``iou`` (score order:
    a box goes when its IoU with a kept, higher-scoring box of any label is > ``iou``)."""
    if len(det.scores) < 2:
        return np.arange(len(det.scores))
    boxes = torch.from_numpy(np.ascontiguousarray(det.boxes, dtype=np.float32))
    scores = torch.from_numpy(np.ascontiguousarray(det.scores, dtype=np.float32))
    return nms(boxes, scores, float(iou)).numpy()


def coco_results(detections: Iterable[Detections]) -> list[dict[str, Any]]:
    """COCO results: ``{image_id, bbox [x, y, w, h], score, category_id}`` per detection.

    Values are kept at full precision (no rounding), so that a results file re-scored later
    gives exactly the metrics computed in memory.
    """
    out: list[dict[str, Any]] = []
    for det in detections:
        for box, score, label in zip(
            det.boxes.tolist(), det.scores.tolist(), det.labels.tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            out.append(
                {
                    "image_id": det.image_id,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                    "category_id": int(label),
                }
            )
    return out


def detections_from_results(results: Iterable[Mapping[str, Any]]) -> dict[int, Detections]:
    """COCO results (as :func:`coco_results` writes them) back into Detections per image, in
    the order they were listed."""
    rows: dict[int, list[Mapping[str, Any]]] = {}
    for r in results:
        rows.setdefault(int(r["image_id"]), []).append(r)
    out: dict[int, Detections] = {}
    for image_id, items in rows.items():
        boxes = np.array(
            [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in items)], np.float32
        ).reshape(-1, 4)
        scores = np.array([r["score"] for r in items], np.float32)
        labels = np.array([r["category_id"] for r in items], np.int64)
        out[image_id] = Detections(image_id, boxes, scores, labels)
    return out
