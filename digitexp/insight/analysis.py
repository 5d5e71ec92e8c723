"""Error analysis of one run's validation predictions: what it gets wrong, by digit, by size
and by kind of Task-2 failure.

:func:`analyze` gathers AP per digit and per size (:mod:`digitexp.metrics.breakdown`), every
image read and classified (:mod:`.failures`) and the confusion matrix (:mod:`.confusion`);
:meth:`RunAnalysis.values` names the numbers logged as metrics (``analysis/<key>`` in the
tracking contract) and the ``*_frame`` functions give the CSV tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from digitexp.config import EvalConfig
from digitexp.data import Split
from digitexp.insight.confusion import COLUMNS, ROWS, confusion_matrix
from digitexp.insight.failures import (
    FAILURE_CLASSES,
    FAILURE_TITLES,
    ImageReading,
    failure_counts,
    read_images,
)
from digitexp.metrics import Detections
from digitexp.metrics.breakdown import (
    COCO_SIZES,
    HEIGHT_BINS,
    APBreakdown,
    ap_breakdown,
    height_bin_label,
)

COCO_SIZE_TITLES = {
    "small": "COCO small (area < 32²)",
    "medium": "COCO medium (32²-96²)",
    "large": "COCO large (area > 96²)",
}


def digit_key(digit: int) -> str:
    return f"ap_digit_{digit}"


def size_key(size: str) -> str:
    return f"ap_{size}"


def height_key(bin_key: str) -> str:
    return f"ap_height_{bin_key}"


def failure_key(failure: str) -> str:
    return f"task2_{failure}"


def value_keys() -> tuple[str, ...]:
    """Every key :meth:`RunAnalysis.values` can hold, in a stable order."""
    return (
        *(digit_key(d) for d in range(10)),
        *(size_key(s) for s in COCO_SIZES),
        *(height_key(k) for k, _, _ in HEIGHT_BINS),
        *(failure_key(f) for f in FAILURE_CLASSES),
    )


@dataclass(frozen=True)
class RunAnalysis:
    breakdown: APBreakdown
    readings: tuple[ImageReading, ...]
    confusion: np.ndarray  # (11, 11): confusion.ROWS x confusion.COLUMNS
    failures: Mapping[str, int]  # images per class

    @property
    def images(self) -> int:
        return len(self.readings)

    def failure_shares(self) -> dict[str, float]:
        n = max(self.images, 1)
        return {k: v / n for k, v in self.failures.items()}

    def values(self) -> dict[str, float]:
        """The numbers logged as metrics: AP per digit, per COCO size and per height bin
        (left out where the split has no ground truth for it), and the share of images in
        each Task-2 failure class."""
        b = self.breakdown
        out: dict[str, float | None] = {digit_key(d): ap for d, ap in enumerate(b.per_digit)}
        out.update({size_key(s): b.coco_sizes[s] for s in COCO_SIZES})
        out.update({height_key(k): b.heights[k] for k, _, _ in HEIGHT_BINS})
        out.update({failure_key(f): v for f, v in self.failure_shares().items()})
        return {k: float(v) for k, v in out.items() if v is not None}


def analyze(split: Split, detections: Mapping[int, Detections], cfg: EvalConfig) -> RunAnalysis:
    """The error analysis of ``detections`` on ``split`` (Task-2 rule settings ``cfg``)."""
    readings = tuple(read_images(split, detections, cfg))
    return RunAnalysis(
        breakdown=ap_breakdown(split, detections),
        readings=readings,
        confusion=confusion_matrix(readings),
        failures=failure_counts(readings),
    )


# --------------------------------------------------------------------------- tables


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def digit_frame(analysis: RunAnalysis) -> pd.DataFrame:
    b = analysis.breakdown
    return pd.DataFrame(
        {
            "digit": list(range(10)),
            "ground_truth_boxes": list(b.gt_per_digit),
            "ap": [_rounded(v) for v in b.per_digit],
        }
    )


def size_frame(analysis: RunAnalysis) -> pd.DataFrame:
    b = analysis.breakdown
    rows = [
        {
            "bin": f"height {height_bin_label(k)}",
            "key": height_key(k),
            "ground_truth_boxes": b.gt_per_height[k],
            "ap": _rounded(b.heights[k]),
        }
        for k, _, _ in HEIGHT_BINS
    ]
    rows += [
        {
            "bin": COCO_SIZE_TITLES[s],
            "key": size_key(s),
            "ground_truth_boxes": None,
            "ap": _rounded(b.coco_sizes[s]),
        }
        for s in COCO_SIZES
    ]
    return pd.DataFrame(rows)


def confusion_frame(analysis: RunAnalysis) -> pd.DataFrame:
    frame = pd.DataFrame(analysis.confusion, index=list(ROWS), columns=list(COLUMNS))
    frame.index.name = "read \\ true"
    return frame.reset_index()


def failure_frame(analysis: RunAnalysis) -> pd.DataFrame:
    shares = analysis.failure_shares()
    return pd.DataFrame(
        {
            "class": list(FAILURE_CLASSES),
            "title": [FAILURE_TITLES[f] for f in FAILURE_CLASSES],
            "images": [analysis.failures[f] for f in FAILURE_CLASSES],
            "share": [round(shares[f], 6) for f in FAILURE_CLASSES],
        }
    )


def images_frame(analysis: RunAnalysis) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [r.image_id for r in analysis.readings],
            "truth": [r.truth for r in analysis.readings],
            "read": [r.read for r in analysis.readings],
            "failure": [r.failure for r in analysis.readings],
            "errors": [r.errors for r in analysis.readings],
        }
    )
