"""``digitexp report``: MLflow runs -> the report's comparison tables and curves in reports/.

Reads only the tracking contract of DESIGN.md (any tracking URI). Which runs count: per
spec x variant x seed the latest FINISHED training run (tag ``digitexp.kind=train``); failed,
killed and still-running runs are left out and listed. With several seeds a cell is
``mean ± std (n)``; a variant's difference to the spec's first variant is marked ``≈`` (not
distinguishable) when it is within the seed-to-seed spread: |Δ mean| <= std_a + std_b (sample
standard deviations over seeds; the mean ± std bands overlap; when only one of the two has
several seeds, twice its std). When neither variant has two seeds, the spread of
``final.py``'s seeds (same preset) stands in, and the table says so.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from digitexp import fsutil
from digitexp.errors import DigitexpError
from digitexp.plotting import pyplot, save
from digitexp.spec import Spec, load_spec
from digitexp.tracking import (
    TAG_ERROR,
    TAG_KIND,
    TAG_PRESET,
    TAG_SEED,
    TAG_SOURCE_RUN,
    TAG_SPEC,
    TAG_VARIANT,
    RunRecord,
    TrackingStore,
)

log = logging.getLogger("digitexp.report")

REPORT_ORDER = (
    "lr_schedule",
    "batch_size",
    "preprocessing",
    "anchors",
    "thresholds",
    "roi_levels",
    "final",
)
CURVE_KEYS = ("train_loss", "val_map", "val_digit_acc")
AT_BEST_KEYS = ("val_map50", "val_number_acc", "val_digit_acc")
HISTORY_KEYS = tuple(dict.fromkeys(CURVE_KEYS + AT_BEST_KEYS))


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    higher_is_better: bool | None  # None: never bold
    digits: int = 4


COLUMNS = (
    Column("val_map", "val mAP", True),
    Column("val_map50", "val AP50", True),
    Column("val_number_acc", "val Task-2", True),
    Column("val_digit_acc", "val digit acc", True),
    Column("test_map", "test mAP", True),
    Column("test_number_acc", "test Task-2", True),
    Column("final_train_loss", "final train loss", False),
    Column("best_epoch", "best epoch", None, 1),
)
PUBLISHED = (
    ("val_map", "published val mAP"),
    ("public_task1", "public Task 1"),
    ("public_task2", "public Task 2"),
)


class ReportError(DigitexpError):
    """Nothing to report, or the report cannot be written."""


# --------------------------------------------------------------------------- run values


@dataclass(frozen=True)
class RunValues:
    run: RunRecord
    variant: str
    seed: int
    values: Mapping[str, float | None]
    history: Mapping[str, list[tuple[int, float]]]


def _at_step(points: Sequence[tuple[int, float]], step: int) -> float | None:
    return next((v for s, v in points if s == step), None)


def run_values(run: RunRecord, history: Mapping[str, list[tuple[int, float]]]) -> RunValues:
    m = run.metrics
    best_epoch = int(m["best_epoch"]) if "best_epoch" in m else None
    values: dict[str, float | None] = {
        "val_map": m.get("best_val_map"),
        "test_map": m.get("test_map"),
        "test_number_acc": m.get("test_number_acc"),
        "final_train_loss": m.get("final_train_loss"),
        "best_epoch": float(best_epoch) if best_epoch is not None else None,
    }
    for key in AT_BEST_KEYS:
        points = history.get(key, [])
        values[key] = _at_step(points, best_epoch) if best_epoch is not None else None
    return RunValues(
        run=run,
        variant=run.tag(TAG_VARIANT),
        seed=int(run.tag(TAG_SEED, "0") or 0),
        values=values,
        history=history,
    )


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        xs = [v for v in values if v is not None and math.isfinite(v)]
        if not xs:
            return cls(None, None, 0)
        std = statistics.stdev(xs) if len(xs) > 1 else None
        return cls(statistics.fmean(xs), std, len(xs))


@dataclass(frozen=True)
class Delta:
    value: float
    spread: float | None
    spread_source: str  # "seeds" | "final.py" | ""

    @property
    def distinguishable(self) -> bool | None:
        if self.spread is None:
            return None
        return abs(self.value) > self.spread


def delta(a: Stat, b: Stat, fallback_std: float | None) -> Delta | None:
    """b - a on the means, with the spread the rule compares it against."""
    if a.mean is None or b.mean is None:
        return None
    stds = [s for s in (a.std, b.std) if s is not None]
    if len(stds) == 2:
        return Delta(b.mean - a.mean, sum(stds), "seeds")
    if stds:  # one side has one seed: take the other side's spread for both
        return Delta(b.mean - a.mean, 2 * stds[0], "seeds")
    if fallback_std is not None:
        return Delta(b.mean - a.mean, 2 * fallback_std, "final.py")
    return Delta(b.mean - a.mean, None, "")


# --------------------------------------------------------------------------- sections


@dataclass
class Section:
    spec: Spec
    runs: list[RunValues]
    left_out: list[RunRecord]
    stats: dict[str, dict[str, Stat]] = field(default_factory=dict)
    deltas: dict[str, Delta | None] = field(default_factory=dict)

    @property
    def variants_with_runs(self) -> list[str]:
        return [v for v in self.spec.variants if any(r.variant == v for r in self.runs)]

    def columns(self) -> list[Column]:
        present = {k for r in self.runs for k, v in r.values.items() if v is not None}
        return [c for c in COLUMNS if c.key in present or not c.key.startswith("test_")]

    def presets(self) -> list[str]:
        return sorted({r.run.tag(TAG_PRESET, "none") for r in self.runs})

    def data_roots(self) -> list[str]:
        return sorted({r.run.params.get("data.root", "?") for r in self.runs})


def select_runs(
    runs: Sequence[RunRecord], spec_name: str, preset: str | None
) -> tuple[list[RunRecord], list[RunRecord]]:
    """(latest FINISHED run per variant x seed, runs left out) of one spec."""
    mine = [
        r
        for r in runs
        if r.tag(TAG_SPEC) == spec_name
        and r.tag(TAG_KIND, "train") == "train"
        and r.parent_id is not None
        and (preset is None or r.tag(TAG_PRESET, "none") == preset)
    ]
    chosen: dict[tuple[str, str], RunRecord] = {}
    left_out: list[RunRecord] = []
    for run in sorted(mine, key=lambda r: (r.start_time, r.run_id), reverse=True):
        key = (run.tag(TAG_VARIANT), run.tag(TAG_SEED))
        if run.status != "FINISHED":
            left_out.append(run)
        elif key not in chosen:
            chosen[key] = run
    return sorted(chosen.values(), key=lambda r: r.run_id), left_out


def build_section(
    spec: Spec,
    runs: Sequence[RunRecord],
    histories: Mapping[str, Mapping[str, list[tuple[int, float]]]],
    fallback_std: float | None,
) -> Section:
    values = [run_values(r, histories.get(r.run_id, {})) for r in runs]
    values = [v for v in values if v.variant in spec.variants]
    section = Section(spec=spec, runs=values, left_out=[])
    for variant in spec.variants:
        mine = [v for v in values if v.variant == variant]
        section.stats[variant] = {c.key: Stat.of(r.values[c.key] for r in mine) for c in COLUMNS}
    first = next(iter(spec.variants))
    for variant in spec.variants:
        if variant == first:
            section.deltas[variant] = None
            continue
        section.deltas[variant] = delta(
            section.stats[first]["val_map"], section.stats[variant]["val_map"], fallback_std
        )
    return section


# --------------------------------------------------------------------------- formatting


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if digits > 1 else f"{value:.1f}".rstrip("0").rstrip(".")


def _cell(stat: Stat, digits: int) -> str:
    if stat.n == 0:
        return "–"
    if stat.n == 1 or stat.std is None:
        return _num(stat.mean, digits)
    return f"{_num(stat.mean, digits)} ± {_num(stat.std, digits)} (n={stat.n})"


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
    match d.distinguishable:
        case None:
            return f"{text} (1 seed)"
        case False:
            return f"{text} ≈"
    return text


def markdown_table(section: Section) -> str:
    columns = section.columns()
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
        published = section.spec.published.get(variant, {})
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
        row["distinguishable"] = d.distinguishable if d else None
        published = section.spec.published.get(variant, {})
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


# --------------------------------------------------------------------------- figures


def plot_curves(section: Section) -> Any:
    """Training loss, val mAP and val digit accuracy per epoch: one line per variant (mean over
    seeds, band = min..max over seeds). Returns the matplotlib Figure."""
    import numpy as np

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
            mean = np.nanmean(matrix, axis=0)
            (line,) = ax.plot(steps, mean, marker=".", label=variant)
            if len(runs) > 1:
                ax.fill_between(
                    steps,
                    np.nanmin(matrix, axis=0),
                    np.nanmax(matrix, axis=0),
                    color=line.get_color(),
                    alpha=0.2,
                )
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
    """The best variant's predictions on the first validation images (boxes and digits)."""
    best = _best_run(section)
    if best is None:
        return None
    params = best.run.params
    root = Path(params.get("data.root", ""))
    gt_path = root / f"{params.get('data.valid_split', 'valid')}.json"
    if not gt_path.is_file():
        log.info("no examples figure for %s: %s is not here", section.spec.name, gt_path)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = store.download_artifact(best.run.run_id, "predictions/val.json", Path(tmp))
        except DigitexpError:
            return None
        results = json.loads(local.read_text())
    return _draw_examples(
        section, best, results, gt_path, float(params.get("eval.score_thresh", 0.5)), path, count
    )


def _draw_examples(
    section: Section,
    best: RunValues,
    results: list[dict[str, Any]],
    gt_path: Path,
    score_thresh: float,
    path: Path,
    count: int,
) -> Path | None:
    import matplotlib.patches as patches
    from PIL import Image

    plt = pyplot()

    gt = json.loads(gt_path.read_text())
    images = sorted(gt.get("images", []), key=lambda i: i["id"])[:count]
    if not images:
        return None
    truths: dict[int, list[dict[str, Any]]] = {}
    for ann in gt.get("annotations", []):
        truths.setdefault(ann["image_id"], []).append(ann)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        if r["score"] > score_thresh:
            by_image.setdefault(r["image_id"], []).append(r)
    cols = 4
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, info in zip(axes.flat, images, strict=False):
        image_path = gt_path.parent / gt_path.stem / info["file_name"]
        if not image_path.is_file():
            continue
        with Image.open(image_path) as img:
            ax.imshow(img.convert("RGB"))
        dets = sorted(by_image.get(info["id"], []), key=lambda r: r["bbox"][0])
        for det in dets:
            x, y, w, h = det["bbox"]
            ax.add_patch(patches.Rectangle((x, y), w, h, fill=False, color="lime", linewidth=1.2))
            ax.text(
                x, y - 1, str(det["category_id"] - 1), color="yellow", fontsize=8, weight="bold"
            )
        number = "".join(str(d["category_id"] - 1) for d in dets)
        truth = "".join(
            str(a["category_id"] - 1)
            for a in sorted(truths.get(info["id"], []), key=lambda a: a["bbox"][0])
        )
        read = int(number) if number else -1
        expected = int(truth) if truth else -1
        mark = "✓" if read == expected else "✗"
        ax.set_title(f"id {info['id']}: read {read}, truth {expected} {mark}", fontsize=8)
    fig.suptitle(
        f"{section.spec.name}: {best.variant} (seed {best.seed}), detections with score > "
        f"{score_thresh}",
        fontsize=9,
    )
    fig.tight_layout()
    return save(fig, path)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class ReportSummary:
    out: Path
    specs: tuple[str, ...]
    runs: int
    left_out: int
    seconds: float


def spec_paths(ablations: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Specs in the report's order (others after, alphabetically), optionally only ``names``."""
    paths = {p.stem: p for p in sorted(ablations.glob("*.py")) if not p.stem.startswith("_")}
    order = [n for n in REPORT_ORDER if n in paths] + sorted(set(paths) - set(REPORT_ORDER))
    if names:
        unknown = [n for n in names if n not in paths]
        if unknown:
            raise ReportError(f"{ablations}: no spec named {unknown[0]!r} ({', '.join(order)})")
        order = [n for n in order if n in names]
    return [paths[n] for n in order]


def _final_std(all_runs: Sequence[RunRecord], preset: str | None) -> dict[str, float | None]:
    """Seed std of final.py's best val mAP, per preset."""
    chosen, _ = select_runs(all_runs, "final", preset)
    by_preset: dict[str, list[float]] = {}
    for r in chosen:
        if "best_val_map" in r.metrics:
            by_preset.setdefault(r.tag(TAG_PRESET, "none"), []).append(r.metrics["best_val_map"])
    return {p: (statistics.stdev(v) if len(v) > 1 else None) for p, v in by_preset.items()}


def search_section(all_runs: Sequence[RunRecord]) -> str:
    """One table of the threshold searches (`digitexp search`): the spec's thresholds against
    the best ones found, per source run (the latest finished search per run, split, study)."""
    latest: dict[tuple[str, str, str], RunRecord] = {}
    for run in sorted(all_runs, key=lambda r: (r.start_time, r.run_id)):
        if run.tag(TAG_KIND) == "search" and run.status == "FINISHED":
            key = (run.tag(TAG_SOURCE_RUN), run.tag("digitexp.split"), run.tag("digitexp.study"))
            latest[key] = run
    if not latest:
        return ""

    def pair(run: RunRecord, prefix: str) -> str:
        m = run.metrics
        if f"{prefix}_map" not in m:
            return "–"
        if prefix == "default":
            score = run.params.get("default_box_score_thresh", "?")
            nms = run.params.get("default_box_nms_thresh", "?")
        else:
            score = _num(m.get(f"{prefix}_box_score_thresh"), 2)
            nms = _num(m.get(f"{prefix}_box_nms_thresh"), 2)
        return (
            f"score {score}, NMS {nms}: mAP {_num(m[f'{prefix}_map'])}, "
            f"Task-2 {_num(m[f'{prefix}_number_acc'])}"
        )

    lines = [
        "## Threshold searches (`digitexp search`)\n",
        "Each row: the RoI heads' thresholds of the spec against the best ones an Optuna study "
        "found on the run's cached detections (no retraining).\n",
        "| source run | split | trials | spec's thresholds | best for val mAP | best for Task-2 |",
        "|---|---|---|---|---|---|",
    ]
    sets = []
    for run in sorted(
        latest.values(), key=lambda r: (r.tag(TAG_SPEC), r.tag(TAG_VARIANT), r.run_id)
    ):
        source = f"`{run.tag(TAG_SPEC)}/{run.tag(TAG_VARIANT)}/s{run.tag(TAG_SEED)}`"
        trials = int(run.metrics.get("trials_total", 0))
        lines.append(
            f"| {source} | {run.tag('digitexp.split')} | {trials} | {pair(run, 'default')} | "
            f"{pair(run, 'best_map')} | {pair(run, 'best_number_acc')} |"
        )
        if run.tag("digitexp.best_set"):
            sets.append(f"- {source}: `{run.tag('digitexp.best_set')}`")
    if sets:
        lines += ["", "To reuse (retraining is not needed for these knobs):", "", *sets]
    return "\n".join(lines) + "\n"


def generate(
    store: TrackingStore,
    out: Path,
    *,
    ablations: Path = Path("ablations"),
    specs: Sequence[str] | None = None,
    preset: str | None = None,
    extra_sections: Sequence[str] = (),
) -> ReportSummary:
    """Write reports/README.md, tables/SPEC.{csv,md} and figures/SPEC_{curves,examples}.png."""
    start = time.perf_counter()
    loaded = [load_spec(p) for p in spec_paths(ablations, specs)]
    (out / "tables").mkdir(parents=True, exist_ok=True)  # fails early on a bad --out
    (out / "figures").mkdir(parents=True, exist_ok=True)
    all_runs = store.runs()
    if not any(r.tag(TAG_KIND, "train") == "train" and r.parent_id for r in all_runs):
        raise ReportError(
            f"no training runs in {store.masked_uri}: run `make demo` or "
            "`python -m digitexp run ablations/<spec>.py` first"
        )
    selections = {s.name: select_runs(all_runs, s.name, preset) for s in loaded}
    counted = [r for chosen, _ in selections.values() for r in chosen]
    histories = store.metric_histories([r.run_id for r in counted], HISTORY_KEYS)
    final_std = _final_std(all_runs, preset)
    sections: list[Section] = []
    for spec in loaded:
        chosen, left_out = selections[spec.name]
        presets = {r.tag(TAG_PRESET, "none") for r in chosen}
        fallback = final_std.get(presets.pop()) if len(presets) == 1 else None
        section = build_section(spec, chosen, histories, fallback)
        section.left_out = left_out
        sections.append(section)
    body: list[str] = []
    for section in sections:
        body.append(_write_section(section, store, out))
    body.extend(extra_sections)
    searches = search_section(all_runs)
    if searches:
        body.append(searches)
    header = _header(store, sections)
    fsutil.write_text(out / "README.md", header + "\n".join(body))
    return ReportSummary(
        out=out,
        specs=tuple(s.spec.name for s in sections),
        runs=sum(len(s.runs) for s in sections),
        left_out=sum(len(s.left_out) for s in sections),
        seconds=time.perf_counter() - start,
    )


def _header(store: TrackingStore, sections: Sequence[Section]) -> str:
    runs = sum(len(s.runs) for s in sections)
    presets = sorted({p for s in sections for p in s.presets()})
    roots = sorted({d for s in sections for d in s.data_roots()})
    return (
        "# digitexp report\n\n"
        f"Rebuilt by `python -m digitexp report` on {time.strftime('%Y-%m-%d %H:%M:%S %Z')} "
        f"from the MLflow store `{store.masked_uri}`: {runs} run(s) counted, "
        f"preset(s) {', '.join(presets) or '–'}, data {', '.join(roots) or '–'}.\n\n"
        "Which runs count: the latest FINISHED run per spec × variant × seed. Cells with "
        "several seeds are mean ± std (n). Δ is the difference of val mAP means to the spec's "
        "first variant; **≈** marks a difference within the seed-to-seed spread "
        "(|Δ| ≤ std₁ + std₂; with one seed per variant, twice the std of `final.py`'s seeds "
        "under the same preset, when those exist). Bold: best value per column. "
        "Published numbers are the HW2 report's.\n\n"
    )


def _write_section(section: Section, store: TrackingStore, out: Path) -> str:
    spec = section.spec
    name = spec.name
    lines = [
        f"## {spec.question}\n",
        f"Spec `{spec.path.name}` · seeds {', '.join(map(str, spec.seeds))}",
    ]
    if section.runs:
        lines[-1] += (
            f" · preset(s) {', '.join(section.presets())} · data {', '.join(section.data_roots())}"
        )
    lines[-1] += "\n"
    if len(section.presets()) > 1 or len(section.data_roots()) > 1:
        lines.append(
            "_These runs mix presets or data roots: compare with care, or rebuild with "
            "`report --preset P`._\n"
        )
    table = markdown_table(section)
    fsutil.write_text(out / "tables" / f"{name}.md", table)
    frame = csv_frame(section)
    fsutil.write_text(
        out / "tables" / f"{name}.csv", frame.to_csv(index=False, float_format="%.6g")
    )
    if not section.runs:
        lines.append(
            f"No finished runs yet: `python -m digitexp run ablations/{spec.path.name}`.\n"
        )
    lines.append(table)
    sources = {d.spread_source for d in section.deltas.values() if d is not None}
    if "final.py" in sources:
        lines.append("_Spread for ≈ taken from `final.py`'s seeds (one seed per variant here)._\n")
    if name == "final" and section.runs:
        lines.append("Final configuration (the report's Table 8), from the logged config:\n")
        lines.append(final_config_table(section))
    if section.runs:
        curves = curves_figure(section, out / "figures" / f"{name}_curves.png")
        lines.append(f"![{name} curves](figures/{curves.name})\n")
        examples = examples_figure(section, store, out / "figures" / f"{name}_examples.png")
        if examples is not None:
            lines.append(f"![{name} examples](figures/{examples.name})\n")
    if section.left_out:
        lines.append("Left out (not FINISHED):\n")
        for run in section.left_out:
            reason = run.tag(TAG_ERROR)
            lines.append(
                f"- `{run.name}` ({run.run_id}): {run.status}" + (f": {reason}" if reason else "")
            )
        lines.append("")
    return "\n".join(lines) + "\n"
