"""A spec's insight in the report (:mod:`.evidence` has the numbers): is each difference
real (paired-bootstrap intervals), and why does a variant win (AP per size, anchor coverage,
Task-2 failures, the best variant's confusion matrix and worst images)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from digitexp.common import files
from digitexp.common.plotting import save
from digitexp.insight.analysis import failure_key, height_key, size_key
from digitexp.insight.bootstrap import Comparison
from digitexp.insight.failures import FAILURE_CLASSES, FAILURE_TITLES, worst_images, worst_title
from digitexp.insight.figures import (
    confusion_figure,
    coverage_figure,
    failures_figure,
    gallery_figure,
)
from digitexp.metrics.breakdown import COCO_SIZES, HEIGHT_BINS, height_bin_label
from digitexp.report.evidence import SpecEvidence
from digitexp.report.statistics import Section
from digitexp.report.tables import number_text

WORST = 12
ANCHOR_KEYS = ("arch", "anchor_sizes", "anchor_layout", "aspect_ratios", "min_size", "max_size")


def rule_line(evidence: SpecEvidence) -> str:
    """The distinguishability rule, in one line."""
    return (
        "_≈: the 95% interval of Δ contains 0 (the difference could be noise); the interval "
        f"is a paired bootstrap over validation images ({evidence.resamples} resamples of the "
        f"logged predictions, seed {evidence.seed}); with several seeds Δ is between seed "
        "means and the interval Δ ± 1.96·√(SE_bootstrap² + SE_seeds²): images and training "
        "seed are independent sources of noise, so their variances add._\n"
    )


def _delta_cell(c: Comparison) -> str:
    text = f"{c.delta:+.4f} [{c.low:+.4f}, {c.high:+.4f}]"
    return text if c.distinguishable else f"{text} ≈"


def _seeds_cell(c: Comparison) -> str:
    def std(s: float | None) -> str:
        return "–" if s is None else f"{s:.4f}"

    if not c.combined:
        return "1 vs 1"
    return f"{c.seeds_a} vs {c.seeds_b} (seed std {std(c.seed_std_a)} / {std(c.seed_std_b)})"


def intervals_markdown(evidence: SpecEvidence) -> list[str]:
    if not evidence.comparisons or not evidence.resamples:
        return []
    lines = [
        "**Could it be noise?** Δ = b − a on the validation split, its 95% interval and "
        "P(Δ > 0) over the resamples:\n",
        "| comparison | a | b | Δ val mAP [95%] | P(Δ>0) | Δ val Task-2 [95%] | P(Δ>0) | seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in evidence.comparisons:
        lines.append(
            f"| {c.label} | `{c.a}` | `{c.b}` | {_delta_cell(c.map)} | {c.map.p_positive:.2f} | "
            f"{_delta_cell(c.number_acc)} | {c.number_acc.p_positive:.2f} | {_seeds_cell(c.map)} |"
        )
    lines += ["", rule_line(evidence)]
    return lines


def intervals_frame(section: Section, evidence: SpecEvidence) -> pd.DataFrame:
    rows = []
    for c in evidence.comparisons:
        for metric, comparison in (("val_map", c.map), ("val_number_acc", c.number_acc)):
            rows.append(
                {
                    "spec": section.spec.name,
                    "comparison": c.label,
                    "a": c.a,
                    "b": c.b,
                    "metric": metric,
                    "delta": round(comparison.delta, 6),
                    "low": round(comparison.low, 6),
                    "high": round(comparison.high, 6),
                    "bootstrap_low": round(comparison.boot_low, 6),
                    "bootstrap_high": round(comparison.boot_high, 6),
                    "p_positive": round(comparison.p_positive, 4),
                    "resamples": comparison.resamples,
                    "seeds_a": comparison.seeds_a,
                    "seeds_b": comparison.seeds_b,
                    "distinguishable": comparison.distinguishable,
                }
            )
    return pd.DataFrame(rows)


def _size_columns() -> list[tuple[str, str]]:
    columns = [(height_key(k), f"h {height_bin_label(k)}") for k, _, _ in HEIGHT_BINS]
    return columns + [(size_key(s), f"COCO {s}") for s in COCO_SIZES]


def sizes_markdown(section: Section, evidence: SpecEvidence) -> list[str]:
    variants = [v for v in section.spec.variants if v in evidence.runs]
    if not variants:
        return []
    columns = _size_columns()
    coverage = evidence.coverage
    first = next(iter(coverage.values()), None)
    header = ["variant", *(title for _, title in columns)]
    if first is not None:
        header += [
            f"anchor IoU ≥ {first.fg_thresh:g}",
            f"anchor IoU ≥ {first.bg_thresh:g}",
            "mean best anchor IoU",
        ]
    lines = [
        "**Where does it win?** AP (IoU 0.50:0.95) by ground-truth box height in the original "
        "image and by COCO area, mean over seeds; anchor coverage of the training boxes after "
        "the model's resize (share whose best anchor reaches the RPN's foreground / "
        "background IoU, `python -m digitexp anchors`):\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for v in variants:
        cells = [f"`{v}`"] + [number_text(evidence.analysis_mean(v, k)) for k, _ in columns]
        cov = coverage.get(v)
        if first is not None:
            if cov is None:
                cells += ["–"] * 3
            else:
                cells += [_percent(cov.share_fg), _percent(cov.share_bg), number_text(cov.mean_iou)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def failures_markdown(section: Section, evidence: SpecEvidence) -> list[str]:
    variants = [v for v in section.spec.variants if v in evidence.runs]
    if not variants:
        return []
    header = ["variant", *(FAILURE_TITLES[f] for f in FAILURE_CLASSES)]
    lines = [
        "**Which Task-2 errors?** Share of validation images in each class (each image in "
        "exactly one, the first that applies in this order; mean over seeds):\n",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for v in variants:
        cells = [f"`{v}`"] + [
            _percent(evidence.analysis_mean(v, failure_key(f))) for f in FAILURE_CLASSES
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def insight_frame(section: Section, evidence: SpecEvidence) -> pd.DataFrame:
    rows = []
    keys = [k for k, _ in _size_columns()] + [failure_key(f) for f in FAILURE_CLASSES]
    for v in section.spec.variants:
        if v not in evidence.runs:
            continue
        row: dict[str, object] = {"spec": section.spec.name, "variant": v}
        for k in keys:
            value = evidence.analysis_mean(v, k)
            row[k] = None if value is None else round(value, 6)
        cov = evidence.coverage.get(v)
        row["anchor_share_fg"] = (
            None if cov is None or cov.share_fg is None else round(cov.share_fg, 6)
        )
        row["anchor_share_bg"] = (
            None if cov is None or cov.share_bg is None else round(cov.share_bg, 6)
        )
        row["anchor_mean_best_iou"] = (
            None if cov is None or cov.mean_iou is None else round(cov.mean_iou, 6)
        )
        rows.append(row)
    return pd.DataFrame(rows)


def _anchors_differ(evidence: SpecEvidence) -> bool:
    settings = {
        tuple(str(getattr(cfg.model, k)) for k in ANCHOR_KEYS) for cfg in evidence.configs.values()
    }
    return len(settings) > 1


def figures_markdown(section: Section, evidence: SpecEvidence, out: Path) -> list[str]:
    name = section.spec.name
    lines: list[str] = []
    variants = [v for v in section.spec.variants if v in evidence.runs]
    if len(variants) > 1:
        shares = {
            v: {f: evidence.analysis_mean(v, failure_key(f)) or 0.0 for f in FAILURE_CLASSES}
            for v in variants
        }
        path = save(
            failures_figure(shares, f"{name}: Task-2 reading per variant"),
            out / "figures" / f"{name}_task2_failures.png",
        )
        lines.append(f"![{name} Task-2 failures](figures/{path.name})\n")
    if evidence.coverage and _anchors_differ(evidence):
        path = save(
            coverage_figure(
                evidence.coverage, f"{name}: training boxes after the resize vs anchors"
            ),
            out / "figures" / f"{name}_anchor_coverage.png",
        )
        lines.append(f"![{name} anchor coverage](figures/{path.name})\n")
    best = evidence.best
    if best is not None:
        run = best.run.values
        what = f"best variant `{best.variant}` (`{run.run.name}`)"
        lines.append(f"The {what}: its digits confused at IoU 0.5, and its worst-read images.\n")
        path = save(
            confusion_figure(
                best.confusion, f"{name}: {best.variant} (seed {run.seed}), digit confusion"
            ),
            out / "figures" / f"{name}_confusion.png",
        )
        lines.append(f"![{name} confusion matrix](figures/{path.name})\n")
        worst = worst_images(best.readings, WORST)
        if worst:
            path = save(
                gallery_figure(
                    worst,
                    best.run.predictions.split,
                    f"{name}: {best.variant} (seed {run.seed}), {worst_title(len(worst))}",
                ),
                out / "figures" / f"{name}_worst_images.png",
            )
            lines.append(f"![{name} worst images](figures/{path.name})\n")
    return lines


def insight_markdown(section: Section, evidence: SpecEvidence | None, out: Path) -> str:
    """The spec's insight section (Markdown), its CSV tables and figures under ``out``."""
    if evidence is None or not section.runs:
        return ""
    name = section.spec.name
    lines: list[str] = []
    lines += intervals_markdown(evidence)
    lines += sizes_markdown(section, evidence)
    lines += failures_markdown(section, evidence)
    if evidence.computed_analysis:
        lines.append(
            "_Some runs had no logged `analysis/*` metrics: the report computed them from their "
            "predictions (`python -m digitexp analyze RUN_ID` logs them to the run)._\n"
        )
    lines += figures_markdown(section, evidence, out)
    lines += _notes(evidence.notes)
    if evidence.comparisons:
        frame = intervals_frame(section, evidence)
        files.write_text(out / "tables" / f"{name}_intervals.csv", frame.to_csv(index=False))
    if evidence.runs:
        frame = insight_frame(section, evidence)
        files.write_text(out / "tables" / f"{name}_insight.csv", frame.to_csv(index=False))
    return "\n".join(lines) + "\n"


def _notes(notes: Sequence[str]) -> list[str]:
    if not notes:
        return []
    return ["Not in the intervals or the analysis:\n", *(f"- {n}" for n in notes), ""]
