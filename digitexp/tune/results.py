"""A study's results, as its MLflow run holds them: ``trials.csv``, the totals (trials complete,
pruned, failed; epochs and seconds trained and pruned away), the best trials as a ``--set``
line and a spec ``Variant(...)`` line, parameter importances and the figures."""

from __future__ import annotations

import csv
import io
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitexp.common import files
from digitexp.tracking import Tracker
from digitexp.tracking import contract as names
from digitexp.tune import trials as attrs
from digitexp.tune.figures import plot_curves, plot_history, plot_importances
from digitexp.tune.space import Space, set_line, value_text, variant_line
from digitexp.tune.study import MLFLOW_RUN, VALUE_LABEL, Objective

log = logging.getLogger("digitexp.tune")


@dataclass(frozen=True)
class Best:
    """A best trial: its settings, values and run."""

    label: str  # "best val mAP"
    number: int
    values: dict[str, Any]  # the space's keys -> the config values trained
    val_map: float | None
    val_number_acc: float | None
    run_id: str | None

    def set_line(self) -> str:
        return set_line(self.values)

    def variant_line(self) -> str:
        return variant_line(f"tuned_t{self.number}", self.values)


def retried(study_trials: Sequence[Any]) -> set[int]:
    """The numbers of failed trials that were enqueued again (their retries carry on)."""
    out: set[int] = set()
    for trial in study_trials:
        out.update(trial.system_attrs.get("retry_history", []))
    return out


def best_trials(study: Any, space: Space, objective: Objective) -> list[Best]:
    """The best complete trial (for ``both``: the two ends of the Pareto front)."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not done:
        return []

    def pick(key: str, label: str) -> Best:
        other = attrs.VAL_NUMBER_ACC if key == attrs.VAL_MAP else attrs.VAL_MAP
        best = max(
            done,
            key=lambda t: (t.user_attrs.get(key, -1.0), t.user_attrs.get(other, -1.0), -t.number),
        )
        return Best(
            label,
            best.number,
            space.values_of(best.params),
            best.user_attrs.get(attrs.VAL_MAP),
            best.user_attrs.get(attrs.VAL_NUMBER_ACC),
            best.user_attrs.get(MLFLOW_RUN),
        )

    picks = {"map": [attrs.VAL_MAP], "number_acc": [attrs.VAL_NUMBER_ACC]}.get(
        objective, [attrs.VAL_MAP, attrs.VAL_NUMBER_ACC]
    )
    labels = {attrs.VAL_MAP: VALUE_LABEL["map"], attrs.VAL_NUMBER_ACC: VALUE_LABEL["number_acc"]}
    return [pick(key, f"best {labels[key]}") for key in picks]


def csv_text(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV, every value as written (ints stay ints; a missing value is empty)."""
    fields = (
        list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _number(value: Any, digits: int) -> Any:
    return round(float(value), digits) if isinstance(value, int | float) else value


def trial_rows(study: Any, space: Space) -> list[dict[str, Any]]:
    """One row per trial: the rows of ``trials.csv`` (values to 4 decimals, seconds to 0.1)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        u = t.user_attrs
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        for key, value in space.values_of(t.params).items():
            row[key] = value_text(value)
        row.update(
            {
                attrs.VAL_MAP: _number(u.get(attrs.VAL_MAP), 4),
                attrs.VAL_NUMBER_ACC: _number(u.get(attrs.VAL_NUMBER_ACC), 4),
                attrs.EPOCHS: u.get(attrs.EPOCHS),
                attrs.PLANNED_EPOCHS: u.get(attrs.PLANNED_EPOCHS),
                attrs.PRUNED_AT: u.get(attrs.PRUNED_AT),
                attrs.TRAIN_SECONDS: _number(u.get(attrs.TRAIN_SECONDS), 1),
                "retry_of": t.system_attrs.get(attrs.RETRY_OF),
                MLFLOW_RUN: u.get(MLFLOW_RUN),
                attrs.ERROR: u.get(attrs.ERROR),
            }
        )
        rows.append(row)
    return rows


def totals(study: Any) -> dict[str, float]:
    """The study's totals (:data:`digitexp.tracking.contract.TUNE_METRICS`). A run trained
    by several attempts (a retried trial) counts once, with its last attempt's record. The
    time pruning saved is an estimate: each pruned trial's epochs left x its own mean epoch
    time (train + validation)."""
    trials = study.get_trials(deepcopy=False)
    again = retried(trials)
    states = [t.state.name for t in trials]
    last_per_run: dict[Any, Any] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if attrs.EPOCHS in t.user_attrs:
            last_per_run[t.user_attrs.get(MLFLOW_RUN, f"trial-{t.number}")] = t
    epochs = seconds = pruned_epochs = pruned_seconds = 0.0
    for t in last_per_run.values():
        u = t.user_attrs
        done, took = int(u[attrs.EPOCHS]), float(u.get(attrs.TRAIN_SECONDS, 0.0))
        epochs += done
        seconds += took
        if t.state.name == "PRUNED" and done:
            left = max(int(u.get(attrs.PLANNED_EPOCHS, done)) - done, 0)
            pruned_epochs += left
            pruned_seconds += left * took / done
    return {
        names.TRIALS_COMPLETE: float(states.count("COMPLETE")),
        names.TRIALS_PRUNED: float(states.count("PRUNED")),
        names.TRIALS_FAILED: float(
            sum(1 for t in trials if t.state.name == "FAIL" and t.number not in again)
        ),
        names.EPOCHS_TRAINED: epochs,
        names.EPOCHS_PRUNED: pruned_epochs,
        names.TRAIN_SECONDS: round(seconds, 1),
        names.PRUNED_SECONDS: round(pruned_seconds, 1),
    }


def importances(study: Any, objective: Objective) -> tuple[dict[str, dict[str, float]], str]:
    """Parameter importances per objective (PED-ANOVA, Optuna's default evaluator: numpy only,
    offline) over the complete trials; ({}, why) when there are too few to say."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator

    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    varied = {k for t in done for k in t.params if len({str(u.params.get(k)) for u in done}) > 1}
    if len(done) < 2 or not varied:
        return {}, f"needs 2 or more complete trials with different settings ({len(done)} so far)"
    if len({tuple(t.values) for t in done}) < 2:
        return {}, "every complete trial has the same value: nothing to tell the settings apart"
    targets = (
        {VALUE_LABEL["map"]: 0, VALUE_LABEL["number_acc"]: 1}
        if objective == "both"
        else {VALUE_LABEL[objective]: None}
    )
    out: dict[str, dict[str, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for label, index in targets.items():
            target = None if index is None else (lambda t, i=index: t.values[i])
            try:
                found = optuna.importance.get_param_importances(
                    study, evaluator=PedAnovaImportanceEvaluator(), target=target
                )
            except (ValueError, RuntimeError) as exc:
                return {}, f"the evaluator could not rank them ({exc})"
            out[label] = {k: round(float(v), 3) for k, v in found.items()}
    return out, ""


def best_settings_text(study_name: str, best: Sequence[Best]) -> str:
    """``best_settings.txt``: each best trial as a ``--set`` line and a ``Variant(...)`` line."""
    if not best:
        return f"# study {study_name}: no complete trial yet\n"
    lines = []
    for b in best:
        scores = ", ".join(
            f"{label} {value:.4f}"
            for label, value in (("val mAP", b.val_map), ("val Task-2", b.val_number_acc))
            if value is not None
        )
        lines += [
            f"# study {study_name}: {b.label}: trial {b.number} ({scores}), MLflow run {b.run_id}",
            b.set_line(),
            "# as a variant of a spec file (add it to VARIANTS):",
            b.variant_line() + ",",
            "",
        ]
    return "\n".join(lines)


def log_results(
    tracker: Tracker, study: Any, space: Space, objective: Objective, workdir: Path
) -> list[Best]:
    """Write the study's results into its MLflow run (every worker, after each trial)."""
    out = workdir / "results"
    best = best_trials(study, space, objective)
    tracker.log_metrics(totals(study))
    if best:
        tracker.set_tags({names.TAG_BEST_SET: " | ".join(b.set_line() for b in best)})
    tracker.log_artifact(
        files.write_text(out / names.TRIALS_CSV, csv_text(trial_rows(study, space)))
    )
    text = best_settings_text(study.study_name, best)
    tracker.log_artifact(files.write_text(out / names.BEST_SETTINGS, text))
    tracker.log_artifact(plot_history(study, objective, out / names.TUNE_HISTORY_FIGURE))
    tracker.log_artifact(plot_curves(study, objective, out / names.TUNE_CURVES_FIGURE))
    found, why = importances(study, objective)
    table = [
        {"objective": label, "param": key, "importance": value}
        for label, ranks in found.items()
        for key, value in ranks.items()
    ]
    text = csv_text(table, ["objective", "param", "importance"])
    tracker.log_artifact(files.write_text(out / names.PARAM_IMPORTANCES_CSV, text))
    figure = plot_importances(found, why, study.study_name, out / names.PARAM_IMPORTANCES_FIGURE)
    tracker.log_artifact(figure)
    return best
