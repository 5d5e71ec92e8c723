"""A panel of validation predictions drawn against the truth, the one figure of predictions
that a training run logs and the report shows.

Rules (docs/architecture.md, "Figures"):

- images are chosen by outcome, half read right and half read wrong by the Task-2 rule (or
  as many as there are of each), spread evenly over the split in id order;
- the truth is drawn on every image (dashed green boxes, the digit under each box);
- predictions are drawn with their digit and score on a filled label: blue when the digit is
  right, red when it is the wrong digit, orange where there is no true digit (matched as the
  digit accuracy matches: the ground-truth box of highest IoU, above ``eval.digit_iou``);
- predictions shown are those the Task-2 rule reads (score > ``eval.score_thresh``); when no
  detection of the split passes it, a lower threshold is used so the boxes still show, and
  the figure says so and why; each image's title still gives the Task-2 reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitexp.common.plotting import draw_box, pyplot, save
from digitexp.config import EvalConfig
from digitexp.data import ImageRecord, Split
from digitexp.data.categories import digit_of
from digitexp.metrics import Detections, box_iou, predicted_number, read_number

TRUTH_COLOR = "#1a9850"
RIGHT_COLOR = "#2166ac"
WRONG_COLOR = "#d73027"
EXTRA_COLOR = "#f46d43"
COLUMNS = 4


@dataclass(frozen=True)
class Example:
    record: ImageRecord
    read: int  # the Task-2 reading of the predictions
    truth: int  # the reading of the ground truth

    @property
    def correct(self) -> bool:
        return self.read == self.truth


@dataclass(frozen=True)
class Shown:
    """Which predictions a panel draws: those scoring above ``threshold``."""

    threshold: float
    note: str  # "" when it is the Task-2 threshold, else why it is lower


def examples(split: Split, detections: Mapping[int, Detections], cfg: EvalConfig) -> list[Example]:
    """Every image of ``split`` with its Task-2 reading and the truth's."""
    out = []
    for record in split.images:
        det = detections.get(record.id) or Detections.empty(record.id)
        truth = read_number(split.boxes[record.id], split.labels[record.id])
        out.append(Example(record, predicted_number(det, cfg), truth))
    return out


def _spread(items: Sequence[Example], n: int) -> list[Example]:
    """``n`` items evenly spread over ``items`` (in id order)."""
    ordered = sorted(items, key=lambda e: e.record.id)
    if n >= len(ordered):
        return ordered
    picks = np.linspace(0, len(ordered) - 1, n).round().astype(int)
    return [ordered[i] for i in picks]


def choose(all_examples: Sequence[Example], count: int) -> list[Example]:
    """Half read right and half wrong (the other kind fills in when one is short), each half
    spread over the split; right ones first."""
    right = [e for e in all_examples if e.correct]
    wrong = [e for e in all_examples if not e.correct]
    n_right = min(len(right), max(count - len(wrong), count // 2))
    n_wrong = min(len(wrong), count - n_right)
    return _spread(right, n_right) + _spread(wrong, n_wrong)


def shown_predictions(
    chosen: Sequence[Example],
    split: Split,
    detections: Mapping[int, Detections],
    cfg: EvalConfig,
) -> Shown:
    """The Task-2 threshold, or, when no detection of the split passes it, the score of the
    k-th best detection on the chosen images, k = their true digits (about as many boxes as
    digits get drawn)."""
    passing = any((d.scores > cfg.score_thresh).any() for d in detections.values())
    if passing:
        return Shown(cfg.score_thresh, "")
    scores = np.concatenate(
        [detections[e.record.id].scores for e in chosen if e.record.id in detections]
        or [np.zeros(0, np.float32)]
    )
    if len(scores) == 0:
        return Shown(cfg.score_thresh, "The model detects nothing on these images")
    digits = sum(len(split.labels[e.record.id]) for e in chosen)
    k = max(1, min(len(scores), digits))
    threshold = float(np.sort(scores)[::-1][k - 1])
    # drawn are scores > threshold: step just below the k-th score so it is included
    threshold = float(np.nextafter(np.float32(threshold), np.float32(0)))
    note = (
        f"No detection scores above {cfg.score_thresh:g} (the Task-2 threshold), so every "
        f"image reads -1; drawn instead: the {k} best detections on these images "
        f"(score > {threshold:.3g})"
    )
    return Shown(threshold, note)


def _label_color(
    box: np.ndarray, label: int, gt_boxes: np.ndarray, gt_labels: np.ndarray, iou: float
) -> str:
    if len(gt_labels) == 0:
        return EXTRA_COLOR
    ious = box_iou(box[None].astype(np.float64), gt_boxes.astype(np.float64))[0]
    best = int(ious.argmax())
    if ious[best] <= iou:
        return EXTRA_COLOR
    return RIGHT_COLOR if int(gt_labels[best]) == label else WRONG_COLOR


def draw(
    split: Split,
    detections: Mapping[int, Detections],
    cfg: EvalConfig,
    path: Path,
    title: str,
    count: int = 8,
) -> Path | None:
    """Draw ``count`` chosen validation images with truth and predictions; None when the
    split has no images."""
    from matplotlib.lines import Line2D

    from digitexp.data.images import decode_rgb

    everything = examples(split, detections, cfg)
    chosen = choose(everything, count)
    if not chosen:
        return None
    shown = shown_predictions(chosen, split, detections, cfg)
    plt = pyplot()
    rows = (len(chosen) + COLUMNS - 1) // COLUMNS
    fig, axes = plt.subplots(
        rows,
        COLUMNS,
        figsize=(3.0 * COLUMNS, 2.5 * rows + 1.2),
        squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, example in zip(axes.flat, chosen, strict=False):
        record = example.record
        ax.imshow(decode_rgb(split.path(record)))  # the pixels the model saw (image rules)
        gt_boxes, gt_labels = split.boxes[record.id], split.labels[record.id]
        scale = max(record.width, record.height) / 100  # label offsets in image pixels
        for box, label in zip(gt_boxes, gt_labels, strict=True):
            x1, _, x2, y2 = (float(v) for v in box)
            draw_box(
                ax,
                box,
                TRUTH_COLOR,
                str(digit_of(int(label))),
                text_xy=((x1 + x2) / 2, y2 + 2 * scale),
                dashed=True,
                color="white",
                fontsize=9,
                fontweight="bold",
                ha="center",
                va="top",
                bbox={"facecolor": TRUTH_COLOR, "edgecolor": "none", "pad": 1},
            )
        det = detections.get(record.id) or Detections.empty(record.id)
        keep = det.scores > shown.threshold
        for box, label, score in zip(
            det.boxes[keep], det.labels[keep], det.scores[keep], strict=True
        ):
            color = _label_color(box, int(label), gt_boxes, gt_labels, cfg.digit_iou)
            draw_box(
                ax,
                box,
                color,
                f"{digit_of(int(label))} {score:.2f}",
                text_xy=(float(box[0]), float(box[1]) - scale),
                color="white",
                fontsize=8,
                ha="left",
                bbox={"facecolor": color, "edgecolor": "none", "pad": 1, "alpha": 0.9},
            )
        ax.set_xlim(-0.5, record.width - 0.5)
        ax.set_ylim(record.height + 14 * scale, -14 * scale)
        mark = "✓" if example.correct else "✗"
        ax.set_title(
            f"{mark} read {example.read}, truth {example.truth}  (id {record.id})",
            fontsize=10,
            color="black" if example.correct else WRONG_COLOR,
        )
    n_right = sum(e.correct for e in everything)
    above = f"score > {shown.threshold:.3g}"
    legend = [
        Line2D([], [], color=TRUTH_COLOR, linestyle="--", label="truth"),
        Line2D([], [], color=RIGHT_COLOR, label=f"predicted, right digit ({above})"),
        Line2D([], [], color=WRONG_COLOR, label="predicted, wrong digit"),
        Line2D([], [], color=EXTRA_COLOR, label="predicted, no true digit there"),
    ]
    fig.legend(handles=legend, loc="outside lower center", ncol=4, fontsize=9, frameon=False)
    heading = (
        f"{title}\nTask-2 reads {n_right} of {len(everything)} validation images right; "
        f"shown: {sum(e.correct for e in chosen)} right, {sum(not e.correct for e in chosen)} "
        "wrong, spread over the split"
    )
    if shown.note:
        heading += f"\n{shown.note}"
    fig.suptitle(heading, fontsize=10)
    return save(fig, path)
