"""The digit confusion matrix at IoU 0.5, from the images as the house-number rule reads them.

Rows: the digit read (0-9), then ``missed`` (a true digit no read box matched). Columns: the
true digit (0-9), then ``spurious`` (a read box matched to no digit: on background, or a
second box on a digit already read). The matching is :mod:`.matching`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from digitexp.data.categories import digit_of
from digitexp.insight.failures import ImageReading
from digitexp.insight.matching import UNMATCHED

LABELS = tuple(str(d) for d in range(10))
MISSED = "missed"
SPURIOUS = "spurious"
ROWS = (*LABELS, MISSED)
COLUMNS = (*LABELS, SPURIOUS)


def confusion_matrix(readings: Sequence[ImageReading]) -> np.ndarray:
    """(11, 11) int64 counts: [digit read or missed, true digit or spurious]."""
    matrix = np.zeros((11, 11), dtype=np.int64)
    for r in readings:
        read = np.array([digit_of(int(c)) for c in r.detections.labels], dtype=np.int64)
        true = np.array([digit_of(int(c)) for c in r.gt_labels], dtype=np.int64)
        hit = r.match.det_to_gt != UNMATCHED
        np.add.at(matrix, (read[hit], true[r.match.det_to_gt[hit]]), 1)
        np.add.at(matrix, (read[~hit], 10), 1)
        np.add.at(matrix, (10, true[r.match.missed]), 1)
    return matrix
