"""What the MLflow UI tells of a tune study, in the words of :mod:`digitexp.launch.story`: the
names of the study's run and of its trials, their descriptions, and the study run's params.

- The study's run is named ``tune {study} · {question} · {preset}``: the study first (what
  tells one study of a spec from another; it is reopened by every worker and every resume,
  so no time), then the spec's question. Its description is the question, the objective and
  the space; after each trial a results section (counts, pruning's saving, the best trial's
  ``--set`` line) replaces the previous one.
- A trial's run is named ``{variant}/t{number}``, beside the ``{variant}/s{seed}`` runs of
  ``digitexp run``; its description is its values and, at the end, its results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from digitexp.config import ExperimentConfig, flatten
from digitexp.launch.story import md, short_question
from digitexp.spec import Spec
from digitexp.tracking import contract as names
from digitexp.tune.space import Space, value_text

RESULTS_HEADING = "\n### Results\n"


def study_run_name(spec: Spec, study: str) -> str:
    """``tune lr-demo · Is the final config better? · demo`` (a default study name, which
    starts with ``tune-``, as it is)."""
    parts = [study if study.startswith("tune") else f"tune {study}", short_question(spec.question)]
    if spec.preset:
        parts.append(spec.preset)
    return " · ".join(parts)


def trial_run_name(variant: str, number: int) -> str:
    """``final/t3``: trial 3 of a study that starts from variant ``final``."""
    return f"{variant}/t{number}"


def study_params(base: ExperimentConfig, space: Space) -> dict[str, Any]:
    """The settings every trial shares (the starting config less the space's keys), as a
    parent run of ``digitexp run`` logs the settings its variants share."""
    return {k: v for k, v in flatten(base).items() if k not in space.keys}


def study_description(
    spec: Spec, study: str, variant: str, objective: str, pruner: str, space: Space
) -> str:
    """The question, the study and what it searches."""
    lines = [
        f"**{md(spec.question)}**",
        "",
        f"Optuna study **{md(study)}** over spec {md(spec.path)} (starting from "
        f"{md(variant)}; preset {md(spec.preset or 'none')}): objective {md(objective)}, "
        f"pruner {md(pruner)}. Children: one training run per trial, named "
        f"{md(variant)}/t*number*; a pruned trial ends KILLED with the tag "
        f"`{names.TAG_PRUNED}`. The settings every trial shares are this run's params.",
        "",
        "| key | space |",
        "|---|---|",
        *(f"| {md(d.key)} | {md(d.text())} |" for d in space.dimensions),
    ]
    return "\n".join(lines) + "\n"


def results_description(
    base: str, totals: Mapping[str, float], best: Sequence[tuple[str, int, str]]
) -> str:
    """``base`` (the study's description, an earlier results section dropped) with the
    study's counts, pruning's saving and each best trial as ``(label, number, --set line)``."""
    head = base.split(RESULTS_HEADING)[0]
    complete, pruned = totals[names.TRIALS_COMPLETE], totals[names.TRIALS_PRUNED]
    lines = [
        f"{complete:.0f} trial(s) complete, {pruned:.0f} pruned, "
        f"{totals[names.TRIALS_FAILED]:.0f} failed. Pruning left "
        f"{totals[names.EPOCHS_PRUNED]:.0f} epoch(s) untrained (about "
        f"{totals[names.PRUNED_SECONDS] / 60:.1f} min, against "
        f"{totals[names.TRAIN_SECONDS] / 60:.1f} min trained).",
        "",
        *(f"- {md(label)}: trial {number}: `{line}`" for label, number, line in best),
        "",
        f"Every trial: `{names.TRIALS_CSV}`; the best as a spec variant: `{names.BEST_SETTINGS}`.",
    ]
    return f"{head}{RESULTS_HEADING}\n" + "\n".join(lines) + "\n"


def trial_description(
    spec: Spec, study: str, variant: str, number: int, values: Mapping[str, Any]
) -> str:
    """A trial's description: its study and the values it trains with."""
    lines = [
        f"Trial **{number}** of study {md(study)} (*{md(spec.question)}*, spec "
        f"{md(spec.path.name)}, from {md(variant)}). It trains with:",
        "",
        *(f"- {md(k)} = {md(value_text(v))}" for k, v in values.items()),
    ]
    return "\n".join(lines) + "\n"
