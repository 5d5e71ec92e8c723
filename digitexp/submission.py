"""The submission files, as the report's author wrote them: ``pred.json`` and ``pred.csv``,
with ``inference.json`` beside them saying how the detections were made.

- ``pred.json`` (Task 1): a list of COCO results ``{image_id, bbox [x, y, w, h], score,
  category_id}``, unrounded, indented by 4, images in file-name order and each image's
  detections in the model's order (descending score). By default only the detections with
  score > ``eval.score_thresh``, as the author's file holds; ``eval.submission_all_detections``
  keeps every detection the model returned (what a COCO-style Task-1 leaderboard ranks best).
- ``pred.csv`` (Task 2): ``image_id,pred_label``, one row per image sorted by id, the number
  read by :func:`digitexp.metrics.predicted_number` (-1: none).
- ``inference.json``: the settings the detections depend on, the inference batch size first
  (torchvision pads the images of a batch to one size, so detections shift slightly with it;
  the author ran test images one at a time).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from digitexp.common import files
from digitexp.config import EvalConfig
from digitexp.data import ImageRecord
from digitexp.metrics import Detections, above_threshold, coco_results, predicted_number

SUBMISSION_JSON = "pred.json"  # COCO results: image_id, bbox [x, y, w, h], score, category_id
SUBMISSION_CSV = "pred.csv"  # image_id,pred_label: the whole number per test image (-1: none)
INFERENCE_JSON = "inference.json"  # how the predictions beside it were made


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


def submission_results(
    detections: Sequence[Detections], images: Sequence[ImageRecord], cfg: EvalConfig
) -> list[dict[str, Any]]:
    """What ``pred.json`` holds: the images in file-name order (the author's sorted folder
    listing), each image's detections in the model's order, those with score >
    ``eval.score_thresh`` unless ``eval.submission_all_detections``."""
    by_id = {d.image_id: d for d in detections}
    ordered = []
    for record in sorted(images, key=lambda r: r.file_name):
        det = by_id.get(record.id)
        if det is None:
            continue
        if not cfg.submission_all_detections:
            keep = above_threshold(det.scores, cfg.score_thresh)
            det = Detections(det.image_id, det.boxes[keep], det.scores[keep], det.labels[keep])
        ordered.append(det)
    return coco_results(ordered)


def write_submission(
    detections: Sequence[Detections],
    images: Sequence[ImageRecord],
    out_dir: Path,
    cfg: EvalConfig,
    inference: Mapping[str, Any],
) -> tuple[Path, Path, Path]:
    """Write ``pred.json``, ``pred.csv`` and ``inference.json`` atomically.

    ``inference`` holds the settings the detections were made with (``batch_size``, device,
    ...); the score rule of ``pred.json`` is added to it."""
    results = submission_results(detections, images, cfg)
    json_path = files.write_json(out_dir / SUBMISSION_JSON, results, indent=4)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "pred_label"])
    writer.writerows(submission_rows(detections, [r.id for r in images], cfg))
    csv_path = files.write_text(out_dir / SUBMISSION_CSV, buf.getvalue())
    record = {
        **inference,
        "images": len(images),
        "pred_json": (
            "every detection"
            if cfg.submission_all_detections
            else f"detections with score > {cfg.score_thresh:g}"
        ),
        "pred_json_entries": len(results),
    }
    info_path = write_inference_record(out_dir, record)
    return json_path, csv_path, info_path


def write_inference_record(out_dir: Path, record: Mapping[str, Any]) -> Path:
    """``inference.json`` in ``out_dir``: how the prediction files beside it were made."""
    return files.write_json(out_dir / INFERENCE_JSON, dict(record), indent=2)
