"""The report's section on threshold searches (``digitexp search``)."""

from __future__ import annotations

from collections.abc import Sequence

from digitexp.report.tables import number_text
from digitexp.tracking import RunRecord
from digitexp.tracking import contract as names


def search_section(all_runs: Sequence[RunRecord]) -> str:
    """One table of the threshold searches (`digitexp search`): the spec's thresholds against
    the best ones found, per source run (the latest finished search per run, split, study)."""
    latest: dict[tuple[str, str, str], RunRecord] = {}
    for run in sorted(all_runs, key=lambda r: (r.start_time, r.run_id)):
        if run.tag(names.TAG_KIND) == names.KIND_SEARCH and run.status == "FINISHED":
            key = (
                run.tag(names.TAG_SOURCE_RUN),
                run.tag(names.TAG_SPLIT),
                run.tag(names.TAG_STUDY),
            )
            latest[key] = run
    if not latest:
        return ""

    def pair(run: RunRecord, choice: str) -> str:
        m = run.metrics

        def metric(key: str) -> float | None:
            return m.get(names.search_metric(choice, key))

        if metric("map") is None:
            return "–"
        if choice == "default":
            score = run.params.get("default_box_score_thresh", "?")
            nms = run.params.get("default_box_nms_thresh", "?")
        else:
            score = number_text(metric("box_score_thresh"), 2)
            nms = number_text(metric("box_nms_thresh"), 2)
        return (
            f"score {score}, NMS {nms}: mAP {number_text(metric('map'))}, "
            f"Task-2 {number_text(metric('number_acc'))}"
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
        latest.values(),
        key=lambda r: (r.tag(names.TAG_SPEC), r.tag(names.TAG_VARIANT), r.run_id),
    ):
        spec, variant, seed = (
            run.tag(k) for k in (names.TAG_SPEC, names.TAG_VARIANT, names.TAG_SEED)
        )
        source = f"`{spec}/{variant}/s{seed}`"
        trials = int(run.metrics.get(names.SEARCH_TRIALS, 0))
        lines.append(
            f"| {source} | {run.tag(names.TAG_SPLIT)} | {trials} | {pair(run, 'default')} | "
            f"{pair(run, 'best_map')} | {pair(run, 'best_number_acc')} |"
        )
        for line in run.tag(names.TAG_BEST_SET).splitlines():  # "label: --set ..." each
            label, _, set_line = line.rpartition(": ")
            sets.append(f"- {source}, {label or 'best'}: `{set_line}`")
    if sets:
        lines += ["", "To reuse (retraining is not needed for these knobs):", "", *sets]
    return "\n".join(lines) + "\n"
