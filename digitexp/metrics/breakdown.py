"""AP per digit and per box size, through pycocotools' ``COCOeval`` (bbox, maxDets 100).

- AP per digit: the mean of pycocotools' precision over IoU and recall thresholds for one
  category (what ``COCOeval`` with ``catIds=[c]`` reports as its AP);
- COCO's small / medium / large: ``stats[3:6]`` (box area < 32², 32²-96², > 96² pixels);
- AP by ground-truth box height in the original image (``HEIGHT_BINS``: digits are tall and
  narrow, so height says more than area): the same COCO evaluation with each box's height in
  place of its area and half-open ranges [lo, hi), so a box falls in exactly one bin. As in
  COCO's area ranges, ground truth outside the range is ignored, and so are the detections
  matched to it and the unmatched detections whose own height is outside the range.

A value is None where the split has no ground truth of that digit or size.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from digitexp.data import Split
from digitexp.metrics.detections import Detections, coco_results

COCO_SIZES = ("small", "medium", "large")
HEIGHT_BINS: tuple[tuple[str, float, float], ...] = (
    ("0_16", 0.0, 16.0),
    ("16_32", 16.0, 32.0),
    ("32_64", 32.0, 64.0),
    ("64_up", 64.0, math.inf),
)
"""(key, lo, hi): box heights in [lo, hi) pixels of the original image."""


def height_bin_label(key: str) -> str:
    """``16_32`` -> ``16-32 px``, ``0_16`` -> ``< 16 px``, ``64_up`` -> ``>= 64 px``."""
    lo, hi = key.split("_")
    if lo == "0":
        return f"< {hi} px"
    if hi == "up":
        return f">= {lo} px"
    return f"{lo}-{hi} px"


@dataclass(frozen=True)
class APBreakdown:
    per_digit: tuple[float | None, ...]  # digits 0..9
    coco_sizes: Mapping[str, float | None]  # small, medium, large
    heights: Mapping[str, float | None]  # HEIGHT_BINS keys
    gt_per_digit: tuple[int, ...]
    gt_per_height: Mapping[str, int]


def _ap(precision: np.ndarray) -> float | None:
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else None


def _evaluator(gt: Mapping[str, Any], results: list[dict[str, Any]]) -> Any:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = dict(gt)
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(results)
    return coco_gt, coco_dt, COCOeval(coco_gt, coco_dt, iouType="bbox")


def ap_breakdown(split: Split, detections: Mapping[int, Detections]) -> APBreakdown:
    """AP per digit, per COCO size and per height bin of one split's detections."""
    gt = split.coco_gt()
    heights = np.array([a["bbox"][3] for a in gt["annotations"]], dtype=np.float64)
    labels = np.array([a["category_id"] for a in gt["annotations"]], dtype=np.int64)
    gt_per_digit = tuple(int(n) for n in np.bincount(labels - 1, minlength=10)[:10])
    gt_per_height = {
        key: int(((heights >= lo) & (heights < hi)).sum()) for key, lo, hi in HEIGHT_BINS
    }
    areas = np.array([a["area"] for a in gt["annotations"]], dtype=np.float64)
    gt_per_size = {
        "small": int((areas <= 32**2).sum()),
        "medium": int(((areas >= 32**2) & (areas <= 96**2)).sum()),
        "large": int((areas >= 96**2).sum()),
    }
    ids = [r.id for r in split.images]
    results = coco_results(detections[i] for i in ids if i in detections)
    if not results or not gt["annotations"]:
        return APBreakdown(
            per_digit=tuple(0.0 if n else None for n in gt_per_digit),
            coco_sizes={k: 0.0 if gt_per_size[k] else None for k in COCO_SIZES},
            heights={k: 0.0 if gt_per_height[k] else None for k, _, _ in HEIGHT_BINS},
            gt_per_digit=gt_per_digit,
            gt_per_height=gt_per_height,
        )
    with contextlib.redirect_stdout(io.StringIO()):
        # COCO's own ranges: AP per category at area "all", and small / medium / large
        _, _, evaluator = _evaluator(gt, results)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        precision = evaluator.eval["precision"]  # (T, R, K, A, M)
        per_digit = tuple(_ap(precision[:, :, k, 0, -1]) for k in range(precision.shape[2]))
        coco_sizes = {
            key: (None if evaluator.stats[3 + i] < 0 else float(evaluator.stats[3 + i]))
            for i, key in enumerate(COCO_SIZES)
        }
        # heights in place of areas, half-open ranges
        by_height = dict(gt)
        by_height["annotations"] = [{**a, "area": a["bbox"][3]} for a in gt["annotations"]]
        _, coco_dt, evaluator = _evaluator(by_height, results)
        for ann in coco_dt.dataset["annotations"]:
            ann["area"] = ann["bbox"][3]
        evaluator.params.areaRng = [[lo, float(np.nextafter(hi, 0))] for _, lo, hi in HEIGHT_BINS]
        evaluator.params.areaRngLbl = [key for key, _, _ in HEIGHT_BINS]
        evaluator.params.maxDets = [100]
        evaluator.evaluate()
        evaluator.accumulate()
        precision = evaluator.eval["precision"]
        height_ap = {
            key: _ap(precision[:, :, :, a, -1]) for a, (key, _, _) in enumerate(HEIGHT_BINS)
        }
    return APBreakdown(
        per_digit=per_digit,
        coco_sizes=coco_sizes,
        heights=height_ap,
        gt_per_digit=gt_per_digit,
        gt_per_height=gt_per_height,
    )
