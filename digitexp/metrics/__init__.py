"""Every metric, defined once (docs/architecture.md, "Metrics").

- :func:`evaluate` scores one split's detections per image, the reference definitions:
  COCO mAP (:mod:`.coco`), digit accuracy (:mod:`.digits`), whole-number accuracy, the
  report's Task 2 (:mod:`.numbers`).
- :class:`CandidatePool` (:mod:`.pool`) returns exactly the same numbers for many subsets of
  one fixed set of candidate detections, vectorized (the threshold search scores hundreds).

This package imports nothing of the training engine, tracking, search, launch, report or CLI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from digitexp.config import EvalConfig
from digitexp.data import Split
from digitexp.metrics.coco import coco_map
from digitexp.metrics.detections import Detections, coco_results, detections_from_results
from digitexp.metrics.digits import UNDEFINED, agnostic_nms, box_iou, digit_accuracy
from digitexp.metrics.numbers import (
    NO_NUMBER,
    above_threshold,
    number_accuracy,
    predicted_number,
    read_number,
)
from digitexp.metrics.pool import CandidatePool, PoolDetections

METRIC_KEYS = ("map", "map50", "map75", "digit_acc", "number_acc")


def evaluate(
    split: Split, detections: Sequence[Detections] | Mapping[int, Detections], cfg: EvalConfig
) -> dict[str, float]:
    """All metrics of one annotated split (``digit_acc`` is NaN when no prediction counts)."""
    by_id = (
        dict(detections) if isinstance(detections, Mapping) else {d.image_id: d for d in detections}
    )
    metrics = coco_map(split.coco_gt(), coco_results(by_id.values()), cfg.coco_backend)
    metrics["digit_acc"] = digit_accuracy(split, by_id, cfg.digit_iou, cfg.digit_nms_iou)
    metrics["number_acc"] = number_accuracy(split, by_id, cfg)
    return metrics


__all__ = [
    "METRIC_KEYS",
    "NO_NUMBER",
    "UNDEFINED",
    "CandidatePool",
    "Detections",
    "PoolDetections",
    "above_threshold",
    "agnostic_nms",
    "box_iou",
    "coco_map",
    "coco_results",
    "detections_from_results",
    "digit_accuracy",
    "evaluate",
    "number_accuracy",
    "predicted_number",
    "read_number",
]
