"""The insight figures: AP per digit and size, the confusion matrix, Task-2 failures, the
worst validation images, and anchor shapes against the digits' sizes. Each function returns
a matplotlib Figure (save it with :func:`digitexp.common.plotting.save`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from digitexp.common.plotting import draw_box, pyplot
from digitexp.data import Split
from digitexp.data.categories import digit_of
from digitexp.insight.analysis import RunAnalysis
from digitexp.insight.confusion import COLUMNS, ROWS
from digitexp.insight.coverage import Coverage
from digitexp.insight.failures import FAILURE_CLASSES, FAILURE_TITLES, ImageReading
from digitexp.insight.matching import UNMATCHED
from digitexp.metrics.breakdown import COCO_SIZES, HEIGHT_BINS, height_bin_label

TRUTH_COLOR = "#00d5ff"
RIGHT_COLOR = "#39ff14"
WRONG_COLOR = "#ff2d2d"
EXTRA_COLOR = "#ffa500"
COCO_SIZE_LABELS = {
    "small": "COCO S\narea < 32²",
    "medium": "COCO M\n32²-96²",
    "large": "COCO L\n> 96²",
}


def _bars(ax: Any, labels: Sequence[str], values: Sequence[float | None], color: str) -> None:
    heights = [0.0 if v is None else v for v in values]
    bars = ax.bar(range(len(labels)), heights, color=color)
    for bar, value in zip(bars, values, strict=True):
        text = "n/a" if value is None else f"{value:.2f}"
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            bar.get_height() + 0.01,
            text,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1.08)
    ax.grid(axis="y", alpha=0.3)


def ap_figure(analysis: RunAnalysis, title: str) -> Any:
    """AP per digit (left) and per box height and COCO size (right)."""
    plt = pyplot()
    b = analysis.breakdown
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(14, 4.6), gridspec_kw={"width_ratios": [10, 8]}
    )
    _bars(
        left, [f"{d}\n(n={n})" for d, n in enumerate(b.gt_per_digit)], list(b.per_digit), "#4c72b0"
    )
    left.set_xlabel("digit (n = ground-truth boxes)")
    left.set_ylabel("AP (IoU 0.50:0.95)")
    left.set_title("AP per digit")
    labels = [f"{height_bin_label(k)}\nn={b.gt_per_height[k]}" for k, _, _ in HEIGHT_BINS]
    labels += [COCO_SIZE_LABELS[s] for s in COCO_SIZES]
    values = [b.heights[k] for k, _, _ in HEIGHT_BINS] + [b.coco_sizes[s] for s in COCO_SIZES]
    _bars(right, labels, values, "#55a868")
    for patch in right.patches[len(HEIGHT_BINS) :]:
        patch.set_color("#8172b2")
    right.tick_params(axis="x", labelsize=8)
    right.set_xlabel("true box height in the original image | COCO area ranges (px²)")
    right.set_ylabel("AP (IoU 0.50:0.95)")
    right.set_title("AP per box size")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion_figure(matrix: np.ndarray, title: str) -> Any:
    """Counts in each cell; colour = the share of each true digit (column) read as each row."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.4, 7))
    totals = matrix.sum(axis=0, keepdims=True)
    share = np.where(totals > 0, matrix / np.maximum(totals, 1), 0.0)
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            color = "white" if share[row, col] > 0.6 else "black"
            ax.text(col, row, str(count), ha="center", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(COLUMNS)), COLUMNS)
    ax.set_yticks(range(len(ROWS)), ROWS)
    ax.axhline(len(ROWS) - 1.5, color="grey", linewidth=0.8)
    ax.axvline(len(COLUMNS) - 1.5, color="grey", linewidth=0.8)
    ax.set_xlabel("true digit (spurious: a read box on no digit, or a 2nd box on one)")
    ax.set_ylabel("digit read (missed: a true digit not read)")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the column's boxes")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def failures_figure(
    shares: Mapping[str, Mapping[str, float]],
    title: str,
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> Any:
    """Share of images per Task-2 failure class; one bar per run or variant (the keys of
    ``shares``), labelled with the image counts when given, else the percentage."""
    plt = pyplot()
    names = list(shares)
    height = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(10, 1.4 + len(FAILURE_CLASSES) * max(0.45, 0.22 * len(names))))
    positions = np.arange(len(FAILURE_CLASSES))
    for i, name in enumerate(names):
        values = [shares[name].get(f, 0.0) for f in FAILURE_CLASSES]
        bars = ax.barh(positions + i * height, values, height=height, label=name)
        for bar, f, value in zip(bars, FAILURE_CLASSES, values, strict=True):
            text = str(counts[name][f]) if counts is not None else f"{value:.0%}"
            ax.text(
                bar.get_width() + 0.005,
                bar.get_y() + bar.get_height() / 2,
                text,
                va="center",
                fontsize=8,
            )
    ax.set_yticks(
        positions + height * (len(names) - 1) / 2, [FAILURE_TITLES[f] for f in FAILURE_CLASSES]
    )
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    what = "numbers: images" if counts is not None else "mean over seeds"
    ax.set_xlabel(f"share of validation images ({what})")
    ax.grid(axis="x", alpha=0.3)
    if len(names) > 1:
        ax.legend(fontsize=8, loc="lower right", title="variant", title_fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def gallery_figure(
    readings: Sequence[ImageReading], split: Split, title: str, cols: int = 4
) -> Any:
    """The images drawn: true boxes dashed (digit below), read boxes solid (digit above):
    green right, red wrong digit, orange on no digit or a digit read twice."""
    from matplotlib.lines import Line2D

    from digitexp.data.images import decode_rgb

    plt = pyplot()
    records = {r.id: r for r in split.images}
    count = max(len(readings), 1)
    cols = min(cols, count)
    rows = math.ceil(count / cols)
    panel = 3.6 if cols > 2 else 5.0  # a few images get larger panels
    fig, axes = plt.subplots(
        rows, cols, figsize=(panel * cols, panel * 0.86 * rows + 0.8), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    label_box = {"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0}
    for ax, reading in zip(axes.flat, readings, strict=False):
        record = records[reading.image_id]
        ax.imshow(decode_rgb(split.path(record)), interpolation="nearest")
        for box, label in zip(reading.gt_boxes, reading.gt_labels, strict=True):
            draw_box(
                ax,
                box,
                TRUTH_COLOR,
                str(digit_of(int(label))),
                text_xy=(float(box[0]), float(box[3])),
                dashed=True,
                linewidth=1.4,
                color=TRUTH_COLOR,
                fontsize=9,
                va="top",
                bbox=label_box,
            )
        det = reading.detections
        for i, (box, label) in enumerate(zip(det.boxes, det.labels, strict=True)):
            gt = reading.match.det_to_gt[i]
            if gt == UNMATCHED:
                color = EXTRA_COLOR
            elif reading.gt_labels[gt] == label:
                color = RIGHT_COLOR
            else:
                color = WRONG_COLOR
            draw_box(
                ax, box, color, str(digit_of(int(label))), color=color, fontsize=9, bbox=label_box
            )
        truth = "–" if reading.truth < 0 else str(reading.truth)
        read = "nothing" if reading.read < 0 else str(reading.read)
        ax.set_title(
            f"id {reading.image_id}: truth {truth}, read {read}\n{FAILURE_TITLES[reading.failure]}",
            fontsize=9,
        )
        ax.set_xlim(-0.5, record.width - 0.5)
        ax.set_ylim(record.height - 0.5, -0.5)
    handles = [
        Line2D([], [], color=TRUTH_COLOR, linestyle="--", label="true digit"),
        Line2D([], [], color=RIGHT_COLOR, label="read right"),
        Line2D([], [], color=WRONG_COLOR, label="read as another digit"),
        Line2D([], [], color=EXTRA_COLOR, label="read on no digit / a second time"),
    ]
    fig.legend(
        handles=handles, loc="lower center", ncol=2 if cols < 3 else 4, fontsize=9, frameon=False
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.5 / (panel * 0.86 * rows + 0.8), 1, 1))
    return fig


def coverage_figure(coverages: Mapping[str, Coverage], title: str) -> Any:
    """Per variant: ground-truth width x height after the resize (dots, coloured by the best
    anchor IoU) against the anchor shapes of each FPN level (markers)."""
    plt = pyplot()
    from matplotlib.ticker import ScalarFormatter

    names = list(coverages)
    cols = min(2, max(len(names), 1))
    rows = math.ceil(max(len(names), 1) / cols)
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(6.4 * cols + 1, 5.2 * rows + 0.4),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    markers = ("s", "D", "^", "v", "P", "X", "*")
    scatter = None
    for ax, name in zip(axes.flat, names, strict=False):
        cov = coverages[name]
        if cov.boxes:
            scatter = ax.scatter(
                cov.sizes[:, 0],
                cov.sizes[:, 1],
                c=cov.best_iou,
                cmap="viridis",
                vmin=0,
                vmax=1,
                s=10,
                alpha=0.7,
                linewidths=0,
            )
        for i, level in enumerate(cov.levels):
            ax.scatter(
                level.widths,
                level.heights,
                marker=markers[i % len(markers)],
                s=70,
                facecolors="none",
                edgecolors=f"C{i}",
                linewidths=1.6,
                label=f"level {level.level} (stride {level.stride})",
            )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("width after resize (px)")
        ax.set_ylabel("height after resize (px)")
        share = "–" if cov.share_fg is None else f"{cov.share_fg:.0%}"
        mean = "–" if cov.mean_iou is None else f"{cov.mean_iou:.2f}"
        ax.set_title(
            f"{name}\n{cov.boxes} boxes: {share} with an anchor IoU >= {cov.fg_thresh:g}, "
            f"mean best IoU {mean}",
            fontsize=8,
        )
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left", title="anchors", title_fontsize=7)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes, shrink=0.6, label="best anchor IoU of the box")
    fig.suptitle(title, fontsize=10)
    return fig
