"""A spec's figures: training curves per variant, and the best run's predictions drawn on
validation images against the truth."""

from __future__ import annotations

import json
import logging
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from digitexp.common.plotting import pyplot, save
from digitexp.config import EvalConfig, from_dict
from digitexp.data import Split, load_split
from digitexp.data.categories import digit_of
from digitexp.errors import DigitexpError
from digitexp.metrics import Detections, detections_from_results, predicted_number, read_number
from digitexp.report.selection import CURVE_KEYS, RunValues
from digitexp.report.statistics import Section
from digitexp.tracking import TrackingStore
from digitexp.tracking import contract as names

log = logging.getLogger("digitexp.report")


def plot_curves(section: Section) -> Any:
    """Training loss, val mAP and val digit accuracy per epoch: one line per variant (mean over
    seeds, band = min..max over seeds). Returns the matplotlib Figure."""
    plt = pyplot()

    titles = {"train_loss": "training loss", "val_map": "val mAP", "val_digit_acc": "val digit acc"}
    rows = math.ceil(len(section.variants_with_runs) / 2)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2 + 0.3 * rows))
    for variant in section.variants_with_runs:
        runs = [r for r in section.runs if r.variant == variant]
        for ax, key in zip(axes, CURVE_KEYS, strict=True):
            series = [dict(r.history.get(key, [])) for r in runs]
            steps = sorted({s for d in series for s in d})
            if not steps:
                continue
            matrix = np.array([[d.get(s, np.nan) for s in steps] for d in series], dtype=float)
            with warnings.catch_warnings():  # an epoch undefined in every seed (NaN): a gap
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(matrix, axis=0)
            (line,) = ax.plot(steps, mean, marker=".", label=variant)
            if len(runs) > 1:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    low, high = np.nanmin(matrix, axis=0), np.nanmax(matrix, axis=0)
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes, CURVE_KEYS, strict=True):
        ax.set_title(titles[key])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    rows = math.ceil(len(labels) / 2) if labels else 0
    if labels:
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{section.spec.name}: {section.spec.question}", fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * rows, 1, 1))
    return fig


def curves_figure(section: Section, path: Path) -> Path:
    return save(plot_curves(section), path)


def _best_run(section: Section) -> RunValues | None:
    scored = [r for r in section.runs if r.values.get("val_map") is not None]
    if not scored:
        return None
    best_variant = max(
        section.variants_with_runs, key=lambda v: section.stats[v]["val_map"].mean or -1
    )
    mine = [r for r in scored if r.variant == best_variant] or scored
    return max(mine, key=lambda r: (r.values["val_map"] or 0, r.run.run_id))


def examples_figure(
    section: Section, store: TrackingStore, path: Path, count: int = 8
) -> Path | None:
    """The best variant's predictions on the first validation images (boxes and digits),
    each read as a house number by the run's own Task-2 rule against the truth."""
    best = _best_run(section)
    if best is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config = store.download_artifact(best.run.run_id, names.CONFIG_JSON, Path(tmp))
            results = store.download_artifact(best.run.run_id, names.VAL_PREDICTIONS, Path(tmp))
            cfg = from_dict(json.loads(config.read_text()))
            detections = detections_from_results(json.loads(results.read_text()))
        except (DigitexpError, ValueError) as exc:
            log.info("no examples figure for %s: %s", section.spec.name, exc)
            return None
    try:
        split = load_split(
            Path(cfg.data.root), cfg.data.valid_split, clip_boxes=cfg.data.clip_boxes
        )
    except DigitexpError as exc:
        log.info("no examples figure for %s: %s", section.spec.name, exc)
        return None
    return _draw_examples(section, best, split, detections, cfg.eval, path, count)


def _draw_examples(
    section: Section,
    best: RunValues,
    split: Split,
    detections: dict[int, Detections],
    cfg: EvalConfig,
    path: Path,
    count: int,
) -> Path | None:
    import matplotlib.patches as patches
    from PIL import Image

    plt = pyplot()
    images = sorted(split.images, key=lambda r: r.id)[:count]
    if not images:
        return None
    cols = 4
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, record in zip(axes.flat, images, strict=False):
        with Image.open(split.path(record)) as img:
            ax.imshow(img.convert("RGB"))
        det = detections.get(record.id) or Detections.empty(record.id)
        shown = det.scores > cfg.score_thresh
        for (x1, y1, x2, y2), label in zip(det.boxes[shown], det.labels[shown], strict=True):
            ax.add_patch(
                patches.Rectangle(
                    (x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=1.2
                )
            )
            ax.text(x1, y1 - 1, str(digit_of(int(label))), color="yellow", fontsize=8)
        read = predicted_number(det, cfg)
        expected = read_number(split.boxes[record.id], split.labels[record.id])
        mark = "✓" if read == expected else "✗"
        ax.set_title(f"id {record.id}: read {read}, truth {expected} {mark}", fontsize=8)
    fig.suptitle(
        f"{section.spec.name}: {best.variant} (seed {best.seed}), detections with score > "
        f"{cfg.score_thresh}",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, path)
