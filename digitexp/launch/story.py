"""What the MLflow UI tells of a launch: the names of its runs, their descriptions, the
parent's constant params and, once its children end, its comparison of them; and the
experiment's description and view.

- A parent run is named by its spec's question (short form), the preset and the time; its
  description is the question and a table of the variants and their overrides; its params are
  the settings every variant shares; when its children end it gets ``comparison/*`` metrics
  (the best and worst variant's mean best val mAP, the spread), the tag
  ``digitexp.best_variant`` and a results table in its description.
- A child run is named ``{variant}/s{seed}`` (the part that differs first; the spec is the
  experiment); its description says what the variant changes and, at the end, its results
  with its figures.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from statistics import mean
from typing import Any

from digitexp.config import flatten, format_set
from digitexp.engine import RunResult
from digitexp.errors import TrackingError
from digitexp.launch.plans import RunPlan
from digitexp.spec import Spec
from digitexp.tracking import RunRecord, TrackingStore, artifact_markdown
from digitexp.tracking import contract as names
from digitexp.tracking.ui import run_name_width, view_state

log = logging.getLogger("digitexp.launch")

QUESTION_CHARS = 64


def short_question(question: str, limit: int = QUESTION_CHARS) -> str:
    """The question without its trailing "(report Table 5, ...)" reference, cut to ``limit``."""
    text = re.sub(r"\s*\([^()]*\)\s*$", "", question).strip() or question
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def overrides_text(sets: Mapping[str, Any]) -> str:
    """The ``--set`` line of ``sets`` (pasteable), or ``none``."""
    if not sets:
        return "none"
    return "--set " + " ".join(format_set(k, v) for k, v in sets.items())


def invocation_name(spec: Spec, role: str = "") -> str:
    """``11-26 18:40 · Do digit-sized anchors and other aspect ratios raise val mAP? · demo``:
    the time first (what tells one invocation of a spec from another), then the question, the
    preset and, for a queue worker's parent, ``worker``."""
    parts = [time.strftime("%m-%d %H:%M"), short_question(spec.question)]
    if spec.preset:
        parts.append(spec.preset)
    if role:
        parts.append(role)
    return " · ".join(parts)


MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+!|])")


def md(text: Any) -> str:
    """``text`` with Markdown's special characters escaped (variant names hold underscores)."""
    return MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def variant_changes(spec: Spec, variant: str) -> list[str]:
    """``key = value`` per override of the variant (plain text, escaped)."""
    flat = flatten(spec.config(variant))
    return [
        f"{md(k)} = {md(repr(flat[k]) if isinstance(flat[k], str) else flat[k])}"
        for k in spec.variants[variant].overrides
    ]


def variant_line(spec: Spec, variant: str) -> str:
    return "; ".join(variant_changes(spec, variant)) or "BASE as is"


def invocation_description(spec: Spec, plans: Sequence[RunPlan]) -> str:
    """The question, where it comes from, and the variants with what each changes."""
    seeds = sorted({p.seed for p in plans})
    lines = [
        f"**{md(spec.question)}**",
        "",
        f"Spec {md(spec.path)} · preset {md(spec.preset or 'none')} · overrides "
        f"{md(overrides_text(spec.sets))} · seeds {', '.join(map(str, seeds))}. "
        "Children: one run per variant × seed; the settings every variant shares are this "
        "run's params.",
        "",
        "| variant | changes |",
        "|---|---|",
    ]
    for variant in dict.fromkeys(p.variant for p in plans):
        lines.append(f"| {md(variant)} | {variant_line(spec, variant)} |")
    return "\n".join(lines) + "\n"


def shared_params(plans: Sequence[RunPlan]) -> dict[str, Any]:
    """The config values every plan shares (what the variants do not vary)."""
    flats = [flatten(p.cfg) for p in plans]
    return {k: v for k, v in flats[0].items() if all(f[k] == v for f in flats[1:])}


def experiment_description(spec: Spec) -> str:
    return (
        f"**{md(spec.question)}** Spec {md(spec.path)}, {len(spec.variants)} variant(s).\n\n"
        "Each top-level run is one `digitexp run`: its description states the question and "
        "the variants, its `comparison/*` metrics compare them. Expand it for the variant × "
        "seed training runs (per-epoch curves first in the chart view; `figures/` in a run's "
        "artifacts holds its curves and validation predictions); a threshold search sits "
        "under the run it searched. Tables: `python -m digitexp report`.\n"
    )


def describe_experiment(
    store: TrackingStore, experiment: str, spec: Spec, parent_name: str, plans: Sequence[RunPlan]
) -> None:
    """The experiment's description and the view its printed URL selects: a Run Name column
    as wide as the children's names (a parent's name, longer, shows its time and the start of
    its question)."""
    width = run_name_width((p.name, 1) for p in plans)
    store.describe_experiment(experiment, experiment_description(spec), view_state(width))


def child_description(plan: RunPlan) -> str:
    """A new child's description: what its variant changes."""
    spec = plan.spec
    changes = variant_changes(spec, plan.variant) or ["nothing (BASE as is)"]
    lines = [
        f"Variant **{md(plan.variant)}**, seed {plan.seed}, of *{md(spec.question)}* (spec "
        f"{md(spec.path.name)}). It changes:",
        "",
        *(f"- {c}" for c in changes),
    ]
    return "\n".join(lines) + "\n"


def metric_text(metrics: Mapping[str, float], key: str) -> str:
    """A metric to four places; "–" when it is missing or undefined (digit accuracy with
    nothing counted is NaN, never 0)."""
    value = metrics.get(key)
    return "–" if value is None or math.isnan(value) else f"{value:.4f}"


def finished_description(
    plan: RunPlan,
    run_id: str,
    result: RunResult,
    figures: Sequence[str],
    body: str | None = None,
) -> str:
    """A finished child's description: its results first, then ``body`` (default: what its
    variant changes), then its figures."""
    val, test = result.val, result.test
    head = (
        f"**best val mAP {result.best_val_map:.4f}** at epoch {result.best_epoch} of "
        f"{result.epochs} · val Task-2 {metric_text(val, 'number_acc')} · val digit "
        f"acc {metric_text(val, 'digit_acc')}"
    )
    if test:
        head += (
            f" · test mAP {metric_text(test, 'map')} · test Task-2 "
            f"{metric_text(test, 'number_acc')}"
        )
    lines = [head, "", body or child_description(plan)]
    lines += [f"{artifact_markdown(run_id, path)}\n" for path in figures]
    return "\n".join(lines) + "\n"


def comparison(children: Sequence[RunRecord]) -> tuple[dict[str, float], str | None, str]:
    """From a parent's children: its ``comparison/*`` metrics, the best variant, and a
    Markdown table of every variant's results (mean over its finished seeds)."""
    by_variant: dict[str, list[RunRecord]] = {}
    for run in sorted(children, key=lambda r: (r.start_time, r.run_id)):  # ties: the first run
        if run.status == "FINISHED" and names.BEST_VAL_MAP in run.metrics:
            by_variant.setdefault(run.tag(names.TAG_VARIANT), []).append(run)
    if not by_variant:
        return {names.COMPARISON_RUNS_FINISHED: 0.0}, None, ""
    means = {v: mean(r.metrics[names.BEST_VAL_MAP] for r in runs) for v, runs in by_variant.items()}
    best = max(means, key=lambda v: means[v])
    worst = min(means.values())
    metrics = {
        names.COMPARISON_BEST_VAL_MAP: means[best],
        names.COMPARISON_WORST_VAL_MAP: worst,
        names.COMPARISON_VAL_MAP_SPREAD: means[best] - worst,
        names.COMPARISON_RUNS_FINISHED: float(sum(len(r) for r in by_variant.values())),
    }
    task2 = names.at_best_metric("number_acc")
    lines = [
        "| variant | finished runs | best val mAP (mean) | val Task-2 at best (mean) |",
        "|---|---|---|---|",
    ]
    for variant in sorted(means, key=lambda v: -means[v]):
        runs = by_variant[variant]
        values = [r.metrics[task2] for r in runs if task2 in r.metrics]
        t2 = f"{mean(values):.4f}" if values else "–"
        mark = " **(best)**" if variant == best and len(means) > 1 else ""
        lines.append(f"| {md(variant)}{mark} | {len(runs)} | {means[variant]:.4f} | {t2} |")
    return metrics, best, "\n".join(lines) + "\n"


RESULTS_HEADING = "\n### Results\n"


def conclude_invocation(store: TrackingStore, parent_id: str) -> None:
    """Log the comparison of the parent's children on the parent (before it ends), and its
    results table in the description (replacing an earlier one, after a resume). A store
    that fails here is logged, not raised: the parent still ends with its true status."""
    try:
        _conclude(store, parent_id)
    except TrackingError as exc:
        log.warning("the parent run's comparison was not logged: %s", exc)


def _conclude(store: TrackingStore, parent_id: str) -> None:
    parent = store.get_run(parent_id)
    description = parent.tag(names.DESCRIPTION).split(RESULTS_HEADING)[0]
    children = [r for r in store.runs([parent.experiment]) if r.parent_id == parent_id]
    metrics, best, table = comparison(
        [r for r in children if r.tag(names.TAG_KIND) == names.KIND_TRAIN]
    )
    tracker = store.tracker(parent_id)
    tracker.log_metrics(metrics)
    if best is not None:
        tracker.set_tags({names.TAG_BEST_VARIANT: best})
    if table:
        tracker.set_description(f"{description}{RESULTS_HEADING}\n{table}")
