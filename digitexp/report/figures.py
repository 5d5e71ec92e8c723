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
from digitexp.config import from_dict
from digitexp.data import load_split
from digitexp.errors import DigitexpError
from digitexp.figures import predictions
from digitexp.metrics import detections_from_results
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
    """The best variant's best run on validation images, drawn as every run draws its own
    (:mod:`digitexp.figures.predictions`: truth and predictions, images chosen by outcome)."""
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
            Path(cfg.data.root),
            cfg.data.valid_split,
            clip_boxes=cfg.data.clip_boxes,
            limit=cfg.data.valid_limit,
        )
    except DigitexpError as exc:
        log.info("no examples figure for %s: %s", section.spec.name, exc)
        return None
    title = (
        f"{section.spec.name}: {best.variant} (seed {best.seed}), its best checkpoint on "
        "validation images"
    )
    return predictions.draw(split, detections, cfg.eval, path, title, count)
