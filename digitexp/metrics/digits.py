"""Digit accuracy: the report's "validation accuracy" (see :func:`digit_accuracy`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from digitexp.data import Split
from digitexp.metrics.detections import Detections


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def digit_accuracy(split: Split, detections: Mapping[int, Detections], iou: float) -> float:
    """The report's validation accuracy.

    Each prediction is matched to the ground-truth box of highest IoU in its image; it counts
    when that IoU is > ``iou`` and is correct when the labels agree. Predictions on images
    without ground truth count as wrong; the rest are ignored.
    """
    counted = correct = 0
    for record in split.images:
        det = detections.get(record.id)
        if det is None or len(det.labels) == 0:
            continue
        gt_boxes, gt_labels = split.boxes[record.id], split.labels[record.id]
        if len(gt_labels) == 0:
            counted += len(det.labels)
            continue
        ious = box_iou(det.boxes.astype(np.float64), gt_boxes.astype(np.float64))
        best = ious.argmax(axis=1)
        matched = ious[np.arange(len(best)), best] > iou
        counted += int(matched.sum())
        correct += int((det.labels[matched] == gt_labels[best[matched]]).sum())
    return correct / counted if counted else 0.0
