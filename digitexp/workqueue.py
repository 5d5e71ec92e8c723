"""``run SPEC --queue STORAGE_URL``: a spec's variants x seeds as an Optuna work queue.

Any number of workers, on any machines, point at one Optuna RDB storage (PostgreSQL for many
machines) and one MLflow tracking server. The first worker enqueues every variant x seed once
(one WAITING trial per job); each worker claims the next waiting trial (Optuna pops it
atomically), trains that job and logs to ``MLFLOW_TRACKING_URI``. While a job trains, Optuna's
storage heartbeat marks the trial alive; a worker that dies stops beating, another worker
fails its trial as stale and Optuna's retry callback enqueues it again, and whoever claims
the retry resumes the same MLflow run from its last checkpoint. Jobs already finished are
never run again.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from digitexp.config import config_hash
from digitexp.errors import DigitexpError, TrackingError, first_line
from digitexp.runner import RunOutcome, RunPlan, _Job, _run_one, _tags, preflight
from digitexp.tracking import (
    TAG_KIND,
    TAG_PRESET,
    TAG_SPEC,
    TAG_SPEC_PATH,
    TrackingStore,
    git_commit,
    mask_uri,
)

log = logging.getLogger("digitexp.queue")

JOB = "job"
MLFLOW_RUN = "mlflow_run"
ENQUEUED = "enqueued"


class QueueError(DigitexpError):
    """The queue's storage cannot be used."""


class _JobFailed(Exception):
    """A job ended without finishing (its MLflow run says why); the trial fails, no retry."""


def queue_name(plans: Sequence[RunPlan], experiment: str) -> str:
    """One queue per spec, experiment and set of resolved configs (preset and --set included)."""
    digest = hashlib.sha256()
    for plan in plans:
        digest.update(f"{plan.name}:{config_hash(plan.cfg)};".encode())
    return f"digitexp-{plans[0].spec.name}-{experiment}-{digest.hexdigest()[:10]}"


def _storage(url: str, heartbeat: float) -> Any:
    import optuna

    storages = optuna.storages
    retry = getattr(storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is None:  # Optuna < 4.9
        retry = storages.RetryFailedTrialCallback
    try:
        return optuna.storages.RDBStorage(
            url,
            heartbeat_interval=max(1, round(heartbeat)),
            grace_period=max(2, round(3 * heartbeat)),
            failed_trial_callback=retry(max_retry=3),
        )
    except Exception as exc:  # SQLAlchemy errors for a bad URL or an unreachable server
        first = first_line(exc)
        raise QueueError(f"{mask_uri(url)}: cannot open the queue storage ({first})") from None


def open_queue(url: str, plans: Sequence[RunPlan], experiment: str, heartbeat: float) -> Any:
    """Create the queue (and enqueue every job once) or join it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = _storage(url, heartbeat)
    name = queue_name(plans, experiment)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="maximize")
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        created = False
    if created:
        for index, plan in enumerate(plans):
            study.enqueue_trial({}, user_attrs={JOB: index, "name": plan.name})
        study.set_user_attr(ENQUEUED, len(plans))
        log.info("queue %s: enqueued %d job(s)", name, len(plans))
        return study
    deadline = time.monotonic() + 120
    while ENQUEUED not in study.user_attrs:  # the creator is still enqueueing
        if time.monotonic() > deadline:
            raise QueueError(f"queue {name}: its creator never finished enqueueing")
        time.sleep(0.5)
    log.info("joined queue %s", name)
    return study


@dataclass
class Worker:
    """Claims and trains jobs until the queue is empty."""

    study: Any
    plans: Sequence[RunPlan]
    store: TrackingStore
    experiment: str
    preset: str | None
    progress: bool | None
    poll: float

    def __post_init__(self) -> None:
        self.outcomes: list[RunOutcome] = []
        self.bundles = preflight([p.cfg for p in self.plans])
        self.commit = git_commit(self.plans[0].spec.path.resolve().parent)
        self.parent_id: str | None = None

    def run(self) -> list[RunOutcome]:
        import optuna
        from optuna.trial import TrialState

        try:
            while True:
                optuna.storages.fail_stale_trials(self.study)
                trials = self.study.get_trials(deepcopy=False)
                if any(t.state == TrialState.WAITING for t in trials):
                    self.study.optimize(self._objective, n_trials=1, catch=(_JobFailed,))
                    continue
                if not any(t.state == TrialState.RUNNING for t in trials):
                    break  # every job finished, failed for good, or was taken as a duplicate
                time.sleep(self.poll)  # others are training: one of them may die and need a retry
        except KeyboardInterrupt:
            if self.parent_id:
                self.store.end_run(self.parent_id, "KILLED")
            raise
        if self.parent_id:
            done = all(o.status == "FINISHED" for o in self.outcomes)
            self.store.end_run(self.parent_id, "FINISHED" if done else "FAILED")
        return self.outcomes

    def _parent(self) -> str:
        if self.parent_id is None:
            spec = self.plans[0].spec
            parent = self.store.create_run(
                self.experiment,
                f"{spec.name}@{time.strftime('%Y%m%d-%H%M%S')}-worker",
                {
                    TAG_SPEC: spec.name,
                    TAG_SPEC_PATH: str(spec.path),
                    TAG_PRESET: self.preset or "none",
                    TAG_KIND: "invocation",
                    "digitexp.queue": self.study.study_name,
                },
            )
            parent.log_text(spec.source, "spec.py")
            self.parent_id = parent.run_id
        return self.parent_id

    def _objective(self, trial: Any) -> float:
        import optuna
        from optuna.trial import TrialState

        index = trial.user_attrs.get(JOB)
        if index is None:  # the queue was empty after all: Optuna made a fresh trial
            raise optuna.TrialPruned("not a queued job")
        plan = self.plans[index]
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if any(t.user_attrs.get(JOB) == index for t in done):
            raise optuna.TrialPruned(f"{plan.name} already finished")
        job, tracker = self._claim(plan, trial.user_attrs.get(MLFLOW_RUN))
        trial.set_user_attr(MLFLOW_RUN, tracker.run_id)
        trial.set_user_attr("worker", self.parent_id)
        outcome = _run_one(job, tracker, self.store, self.bundles[plan.cfg.data], self.progress)
        self.outcomes.append(outcome)
        if outcome.status != "FINISHED" or outcome.result is None:
            raise _JobFailed(outcome.error or outcome.status)
        return outcome.result.best_val_map

    def _claim(self, plan: RunPlan, previous: str | None) -> tuple[_Job, Any]:
        """A retried job continues its MLflow run when that run is reachable."""
        parent = self._parent()
        if previous:
            try:
                run = self.store.get_run(previous)
            except TrackingError:
                run = None
            if run is not None and run.status != "FINISHED":
                log.info("retrying %s: resuming run %s", plan.name, previous)
                self._close_dead_parent(run)
                return _Job(plan, run), self.store.reopen_run(previous)
        tracker = self.store.create_run(
            self.experiment, plan.name, _tags(plan, self.preset, self.commit), parent
        )
        tracker.log_text(plan.spec.source, "spec.py")
        return _Job(plan, None), tracker

    def _close_dead_parent(self, run: Any) -> None:
        """The dead worker's invocation run: Optuna's heartbeat says its process is gone."""
        if run.parent_id and run.parent_id != self.parent_id:
            parent = self.store.get_run(run.parent_id)
            if parent.status == "RUNNING":
                self.store.end_run(run.parent_id, "KILLED")


def work(
    url: str,
    plans: Sequence[RunPlan],
    store: TrackingStore,
    *,
    experiment: str,
    preset: str | None,
    heartbeat: float = 60.0,
    poll: float = 5.0,
    progress: bool | None = None,
) -> list[RunOutcome]:
    """Join (or create) the queue and train jobs until none is left."""
    study = open_queue(url, plans, experiment, heartbeat)
    worker = Worker(study, plans, store, experiment, preset, progress, poll)
    return worker.run()
