"""A spec's section rendered as a Markdown table and a CSV, and the final setup's Table 8."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from digitexp.report.statistics import Delta, Section, Stat
from digitexp.tracking import contract as names


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    higher_is_better: bool | None  # None: never bold
    digits: int = 4


COLUMNS = (
    Column(names.VAL_MAP, "val mAP", True),
    Column(names.VAL_MAP50, "val AP50", True),
    Column(names.VAL_NUMBER_ACC, "val Task-2", True),
    Column(names.VAL_DIGIT_ACC, "val digit acc", True),
    Column(names.TEST_MAP, "test mAP", True),
    Column(names.TEST_NUMBER_ACC, "test Task-2", True),
    Column(names.FINAL_TRAIN_LOSS, "final train loss", False),
    Column(names.BEST_EPOCH, "best epoch", None, 1),
)
PUBLISHED = (
    ("val_map", "published val mAP"),
    ("public_task1", "public Task 1"),
    ("public_task2", "public Task 2"),
)


def number_text(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if digits > 1 else f"{value:.1f}".rstrip("0").rstrip(".")


def _cell(stat: Stat, digits: int) -> str:
    if stat.n == 0:
        return "–"
    if stat.n == 1 or stat.std is None:
        return number_text(stat.mean, digits)
    return f"{number_text(stat.mean, digits)} ± {number_text(stat.std, digits)} (n={stat.n})"


def _best(section: Section, column: Column) -> float | None:
    means = [
        section.stats[v][column.key].mean
        for v in section.spec.variants
        if section.stats[v][column.key].mean is not None
    ]
    if column.higher_is_better is None or len(means) < 2:
        return None
    return max(means) if column.higher_is_better else min(means)


def _delta_cell(d: Delta | None) -> str:
    if d is None:
        return "–"
    text = f"{d.value:+.4f}"
    if d.low is not None and d.high is not None:
        text += f" [{d.low:+.4f}, {d.high:+.4f}]"
    match d.distinguishable:
        case None:
            return f"{text} (1 seed)"
        case False:
            return f"{text} ≈"
    return text


def table_columns(section: Section) -> list[Column]:
    """The table's columns: test columns only where some run has test metrics."""
    present = section.present_keys()
    return [c for c in COLUMNS if c.key in present or not c.key.startswith("test_")]


def markdown_table(section: Section) -> str:
    columns = table_columns(section)
    header = ["variant", *(c.title for c in columns), "Δ val mAP vs first"]
    header += [title for _, title in PUBLISHED]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    bests = {c.key: _best(section, c) for c in columns}
    for variant in section.spec.variants:
        stats = section.stats[variant]
        cells = [f"`{variant}`"]
        for c in columns:
            text = _cell(stats[c.key], c.digits)
            best = bests[c.key]
            if best is not None and stats[c.key].mean is not None and stats[c.key].mean == best:
                text = f"**{text}**"
            cells.append(text)
        cells.append(_delta_cell(section.deltas.get(variant)))
        published = section.spec.variants[variant].published
        cells += [
            "–" if published.get(key) is None else f"{published[key]:g}" for key, _ in PUBLISHED
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def csv_frame(section: Section) -> pd.DataFrame:
    rows = []
    for variant in section.spec.variants:
        stats = section.stats[variant]
        row: dict[str, Any] = {"spec": section.spec.name, "variant": variant}
        row["n"] = max((s.n for s in stats.values()), default=0)
        for c in COLUMNS:
            row[f"{c.key}_mean"] = stats[c.key].mean
            row[f"{c.key}_std"] = stats[c.key].std
        d = section.deltas.get(variant)
        row["delta_val_map"] = d.value if d else None
        row["delta_spread"] = d.spread if d else None
        row["delta_low"] = d.low if d else None
        row["delta_high"] = d.high if d else None
        row["distinguishable"] = d.distinguishable if d else None
        published = section.spec.variants[variant].published
        for key, _ in PUBLISHED:
            row[f"published_{key}"] = published.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def final_config_table(section: Section) -> str:
    """The report's Table 8, from the logged params of the chosen final runs."""
    if not section.runs:
        return ""
    params = section.runs[0].run.params
    rows = [
        ("Data processing", params.get("data.preprocess")),
        ("Pre-normalize (ImageNet)", params.get("data.pre_normalize")),
        ("Architecture", params.get("model.arch")),
        ("Weights", params.get("model.weights")),
        ("Min / max size", f"{params.get('model.min_size')} / {params.get('model.max_size')}"),
        ("NMS threshold", params.get("model.box_nms_thresh")),
        ("Score threshold", params.get("model.box_score_thresh")),
        ("Batch size", params.get("train.batch_size")),
        ("Anchor sizes", params.get("model.anchor_sizes")),
        ("Aspect ratios (h/w)", params.get("model.aspect_ratios")),
        (
            "RoI pooling",
            f"MultiScaleRoIAlign(levels {params.get('model.roi_levels')}, "
            f"output {params.get('model.roi_output_size')}, "
            f"sampling {params.get('model.roi_sampling_ratio')})",
        ),
        (
            "Optimizer",
            f"{params.get('train.optimizer')} lr {params.get('train.lr')} "
            f"wd {params.get('train.weight_decay')}",
        ),
        ("Scheduler", params.get("train.scheduler")),
        (
            "Epochs / early stop",
            f"{params.get('train.epochs')} / {params.get('train.early_stop_patience')}",
        ),
    ]
    lines = ["| Parameter | Setting |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"
