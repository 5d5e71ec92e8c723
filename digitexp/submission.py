"""The submission files, as the report's author wrote them: ``pred.json`` and ``pred.csv``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from digitexp.common import files
from digitexp.config import EvalConfig
from digitexp.metrics import Detections, coco_results, predicted_number

SUBMISSION_JSON = "pred.json"  # COCO results: image_id, bbox [x, y, w, h], score, category_id
SUBMISSION_CSV = "pred.csv"  # image_id,pred_label: the whole number per test image (-1: none)


def submission_rows(
    detections: Sequence[Detections], image_ids: Sequence[int], cfg: EvalConfig
) -> list[tuple[int, int]]:
    """``(image_id, pred_label)`` for every image, sorted by image_id; -1 when nothing is read."""
    by_id = {d.image_id: d for d in detections}
    rows = []
    for image_id in sorted(image_ids):
        det = by_id.get(image_id) or Detections.empty(image_id)
        rows.append((image_id, predicted_number(det, cfg)))
    return rows


def write_submission(
    detections: Sequence[Detections], image_ids: Sequence[int], out_dir: Path, cfg: EvalConfig
) -> tuple[Path, Path]:
    """Write ``pred.json`` (COCO results) and ``pred.csv`` (``image_id,pred_label``) atomically."""
    json_path = files.write_json(out_dir / SUBMISSION_JSON, coco_results(detections))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "pred_label"])
    writer.writerows(submission_rows(detections, image_ids, cfg))
    csv_path = files.write_text(out_dir / SUBMISSION_CSV, buf.getvalue())
    return json_path, csv_path
