"""One trial: its settings drawn from the space, trained as a nested MLflow run of the study's
run (with the whole tracking contract, through :func:`digitexp.launch.jobs.run_one`), and its
value, pruning or failure handed back to Optuna.

A retried trial (its worker died: Optuna's heartbeat failed it and enqueued it again with the
same params and user attrs) resumes the MLflow run the first attempt started, from its last
checkpoint, instead of training from scratch.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitexp.config import ExperimentConfig, apply_overrides, config_hash
from digitexp.data import DataBundle, load_data
from digitexp.engine import RunResult
from digitexp.errors import DigitexpError, RunNotFound
from digitexp.launch.jobs import Job, open_child, run_hooks, run_one
from digitexp.launch.local import run_config
from digitexp.launch.plans import RunPlan
from digitexp.model import check_model
from digitexp.spec import Spec
from digitexp.tracking import RunRecord, TrackingStore, run_state
from digitexp.tracking import contract as names
from digitexp.tracking.liveness import STALE_AFTER_SECONDS
from digitexp.tune.pruning import TrialHook
from digitexp.tune.space import Space, value_text
from digitexp.tune.story import trial_description, trial_run_name
from digitexp.tune.study import EPOCH_METRIC, MLFLOW_RUN, Objective

log = logging.getLogger("digitexp.tune")

# trial user attrs (besides MLFLOW_RUN)
EPOCHS = "epochs"  # epochs the trial's run trained (a resumed run: all of them)
PLANNED_EPOCHS = "planned_epochs"
TRAIN_SECONDS = "train_seconds"  # the sum of its epoch_seconds
PRUNED_AT = "pruned_at"
VAL_MAP = "val_map"  # at the run's best epoch (by val mAP) so far
VAL_NUMBER_ACC = "val_number_acc"
CURVE_MAP = "curve_val_map"  # val mAP per epoch
CURVE_NUMBER_ACC = "curve_val_number_acc"
ERROR = "error"
CONFIG_HASH = "config_hash"
RETRY_OF = "failed_trial"  # Optuna's system attr on a retried trial: the first attempt


class TrialFailed(Exception):
    """The trial's run failed (a diverged loss, settings that do not make a model): the
    trial fails for good (its run, if any, says why); the study goes on."""


@dataclass
class TrialRecord:
    """What this worker did with one trial, for the command's table."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    values: dict[str, Any]
    run_id: str | None = None
    val_map: float | None = None
    val_number_acc: float | None = None
    epochs: int = 0
    minutes: float = 0.0
    retry_of: int | None = None
    note: str = ""


def _scores(record: TrialRecord) -> str:
    def text(value: float | None) -> str:
        return "–" if value is None else f"{value:.4f}"

    return f"val mAP {text(record.val_map)}, val Task-2 {text(record.val_number_acc)}"


def frozen_trial(trial: Any) -> Any:
    """The stored (frozen) form of a running Optuna trial."""
    return next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)


def at_best_epoch(history: Mapping[str, list[float]]) -> tuple[float | None, float | None]:
    """(val mAP, val Task-2) at the first epoch of highest val mAP, as the trainer picks its
    best checkpoint."""
    maps = history.get(names.VAL_MAP, [])
    if not maps:
        return None, None
    best = max(range(len(maps)), key=lambda i: (maps[i], -i))
    accs = history.get(names.VAL_NUMBER_ACC, [])
    return float(maps[best]), float(accs[best]) if best < len(accs) else None


@dataclass
class TrialRunner:
    """The objective Optuna calls: one trial, start to end."""

    spec: Spec
    base: ExperimentConfig
    variant: str  # the starting point: a variant's name, or BASE
    seed: int
    space: Space
    objective: Objective
    pruner: str
    store: TrackingStore
    experiment: str
    parent_id: str
    commit: str
    bundles: MutableMapping[Any, DataBundle]
    progress: bool | None = None
    records: list[TrialRecord] = field(default_factory=list)
    current: int | None = None  # the number of the trial being trained

    def __call__(self, trial: Any) -> float | tuple[float, float]:
        start = time.perf_counter()
        values = self.space.suggest(trial)
        frozen = frozen_trial(trial)
        retry_of = frozen.system_attrs.get(RETRY_OF)
        record = TrialRecord(trial.number, "FAIL", values, retry_of=retry_of)
        self.records.append(record)
        self.current = trial.number
        try:
            value = self._run(trial, frozen, values, record)
        except KeyboardInterrupt:
            raise  # ``current`` stays: the worker enqueues the trial again
        except BaseException:
            self.current = None
            raise
        finally:
            record.minutes = (time.perf_counter() - start) / 60
        self.current = None
        return value

    def _run(
        self, trial: Any, frozen: Any, values: dict[str, Any], record: TrialRecord
    ) -> float | tuple[float, float]:
        import optuna

        previous = self._previous_run(trial.user_attrs.get(MLFLOW_RUN))
        if previous is not None:
            record.run_id = previous.run_id
            state = run_state(previous).name
            if state == "finished":  # its worker died after the run ended, before Optuna knew
                log.info("trial %d: run %s had finished", trial.number, previous.run_id)
                return self._finished_run(trial, previous, record)
            if state == "pruned":
                record.state = "PRUNED"
                raise optuna.TrialPruned(previous.tag(names.TAG_ERROR))
        cfg = self._config(trial, values, previous)
        data = self._data(trial, cfg)
        plan = RunPlan(self.spec, self.variant, self.seed, cfg)
        study = trial.study.study_name
        description = trial_description(self.spec, study, self.variant, trial.number, values)
        job = Job(plan, previous, description)
        tracker = open_child(
            job,
            self.store,
            self.experiment,
            self.parent_id,
            self.commit,
            data,
            name=trial_run_name(self.variant, trial.number),
            tags={
                names.TAG_KIND: names.KIND_TRIAL,
                names.TAG_STUDY: study,
                names.TAG_TRIAL: str(trial.number),
            },
        )
        record.run_id = tracker.run_id
        try:
            trial.set_user_attr(MLFLOW_RUN, tracker.run_id)
            trial.set_user_attr(CONFIG_HASH, config_hash(cfg))
            trial.set_user_attr(PLANNED_EPOCHS, cfg.train.epochs)
        except BaseException:
            self.store.end_run(tracker.run_id, "FAILED")
            raise
        settings = " ".join(f"{k}={value_text(v)}" for k, v in values.items())
        if previous is not None:
            log.info(
                "trial %d (%s) resumes run %s of trial %s",
                trial.number,
                settings,
                previous.run_id,
                record.retry_of,
            )
        else:
            log.info("trial %d: %s", trial.number, settings)
        hook = TrialHook(
            trial,
            EPOCH_METRIC.get(self.objective),
            cfg.train.epochs,
            reported=set(frozen.intermediate_values),
            pruner_name=self.pruner,
        )
        outcome = run_one(job, tracker, self.store, data, self.progress, hooks=[*run_hooks(), hook])
        history = outcome.result.history if outcome.result is not None else hook.history
        self._record_history(trial, history, record)
        if outcome.status == "FINISHED" and outcome.result is not None:
            value = self._finished(trial, outcome.result, record)
            log.info("trial %d complete: %s", trial.number, _scores(record))
            return value
        if hook.pruned_at is not None:
            trial.set_user_attr(PRUNED_AT, hook.pruned_at)
            record.state, record.note = "PRUNED", f"after epoch {hook.pruned_at}"
            log.info("trial %d %s: %s", trial.number, outcome.error, _scores(record))
            raise optuna.TrialPruned(outcome.error)
        return self._failed(trial, outcome.error or outcome.status, record)

    # ----------------------------------------------------------------- parts

    def _previous_run(self, run_id: str | None) -> RunRecord | None:
        """The MLflow run an earlier attempt of this trial started (a retry), once its old
        worker is gone: a run that still beats (its worker may only have stalled, or MLflow
        does not call it stale yet) is waited for."""
        if not run_id:
            return None
        try:
            run = self.store.get_run(run_id)
        except RunNotFound:
            return None  # another store, or deleted: start afresh
        deadline = time.monotonic() + STALE_AFTER_SECONDS + 30
        while run_state(run).name == "running":
            if time.monotonic() > deadline:
                raise TrialFailed(
                    f"run {run_id} is still being trained ({run.tag(names.TAG_OWNER)})"
                )
            log.info("run %s still beats: waiting for it to end or go stale", run_id)
            time.sleep(5)
            run = self.store.get_run(run_id)
        return run

    def _config(self, trial: Any, values: dict[str, Any], previous: RunRecord | None) -> Any:
        """The trial's config: the run's own (a resumed run), else the base with its values."""
        try:
            if previous is not None:
                with tempfile.TemporaryDirectory(prefix="digitexp-trial-") as tmp:
                    return run_config(self.store, previous, Path(tmp))
            cfg = apply_overrides(self.base, values)
            check_model(cfg.model)
            return cfg
        except DigitexpError as exc:
            self._failed(trial, f"settings do not make a valid run: {exc}", None)
            raise AssertionError("unreachable") from None  # pragma: no cover

    def _data(self, trial: Any, cfg: ExperimentConfig) -> DataBundle:
        """The trial's data (validated once per data config), before its run exists."""
        if cfg.data not in self.bundles:
            try:
                self.bundles[cfg.data] = load_data(cfg.data)
            except DigitexpError as exc:
                self._failed(trial, f"the data does not load: {exc}", None)
        return self.bundles[cfg.data]

    def _record_history(
        self, trial: Any, history: Mapping[str, list[float]], record: TrialRecord
    ) -> None:
        epochs = len(history.get(names.TRAIN_LOSS, []))
        seconds = float(sum(history.get(names.EPOCH_SECONDS, [])))
        val_map, number_acc = at_best_epoch(history)
        record.epochs, record.val_map, record.val_number_acc = epochs, val_map, number_acc
        trial.set_user_attr(EPOCHS, epochs)
        trial.set_user_attr(TRAIN_SECONDS, round(seconds, 2))
        trial.set_user_attr(CURVE_MAP, [round(v, 5) for v in history.get(names.VAL_MAP, [])])
        trial.set_user_attr(
            CURVE_NUMBER_ACC, [round(v, 5) for v in history.get(names.VAL_NUMBER_ACC, [])]
        )
        if val_map is not None:
            trial.set_user_attr(VAL_MAP, val_map)
        if number_acc is not None:
            trial.set_user_attr(VAL_NUMBER_ACC, number_acc)

    def _value(self, val_map: float, number_acc: float) -> float | tuple[float, float]:
        match self.objective:
            case "map":
                return val_map
            case "number_acc":
                return number_acc
            case _:
                return val_map, number_acc

    def _finished(
        self, trial: Any, result: RunResult, record: TrialRecord
    ) -> float | tuple[float, float]:
        number_acc = float(result.val.get("number_acc", 0.0))
        trial.set_user_attr(VAL_MAP, float(result.best_val_map))
        trial.set_user_attr(VAL_NUMBER_ACC, number_acc)
        record.state = "COMPLETE"
        record.val_map, record.val_number_acc = float(result.best_val_map), number_acc
        return self._value(float(result.best_val_map), number_acc)

    def _finished_run(
        self, trial: Any, run: RunRecord, record: TrialRecord
    ) -> float | tuple[float, float]:
        val_map = float(run.metrics.get(names.BEST_VAL_MAP, 0.0))
        number_acc = float(run.metrics.get(names.at_best_metric("number_acc"), 0.0))
        trial.set_user_attr(VAL_MAP, val_map)
        trial.set_user_attr(VAL_NUMBER_ACC, number_acc)
        record.state, record.val_map, record.val_number_acc = "COMPLETE", val_map, number_acc
        return self._value(val_map, number_acc)

    def _failed(self, trial: Any, error: str, record: TrialRecord | None) -> Any:
        trial.set_user_attr(ERROR, error[:500])
        if record is not None:
            record.note = error
        elif self.records:
            self.records[-1].note = error
        log.warning("trial %d failed: %s", trial.number, error)
        raise TrialFailed(error)
