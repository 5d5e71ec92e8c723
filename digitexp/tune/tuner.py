"""``digitexp tune SPEC --space ...``: one worker of a study.

Everything that can be checked is checked before the study or any MLflow run exists: the
spec and overrides (by the caller), the space against the starting config, the settings,
the data, the device and the model. Then the worker opens (or joins) the study, opens (or
reopens) the study's MLflow run, and runs ``--trials`` new trials, each a nested run. A trial
another worker left behind (killed: its heartbeat stopped) is retried by whoever asks next
and resumes its MLflow run; a worker that is done waits for the trials still running
elsewhere, so that one left behind by a dying worker is taken over.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from digitexp.common.progress import Progress
from digitexp.config import ExperimentConfig, to_dict
from digitexp.errors import ConfigError, RunNotFound, TrackingError, first_line
from digitexp.launch.jobs import invocation_tags
from digitexp.launch.plans import RunPlan, preflight
from digitexp.launch.story import describe_experiment
from digitexp.search.study import default_storage
from digitexp.spec import Spec
from digitexp.tracking import MlflowTracker, RunStatus, TrackingStore, git_commit, mask_uri
from digitexp.tracking import contract as names
from digitexp.tune.results import Best, log_results, totals
from digitexp.tune.space import Space, parse_space
from digitexp.tune.story import (
    results_description,
    study_description,
    study_params,
    study_run_name,
)
from digitexp.tune.study import (
    PARENT_RUN,
    Objective,
    PrunerName,
    SamplerName,
    check_settings,
    default_pruner,
    describe,
    make_pruner,
    make_sampler,
    open_study,
    study_name,
    wait_for_attr,
)
from digitexp.tune.trials import RETRY_OF, TrialFailed, TrialRecord, TrialRunner

log = logging.getLogger("digitexp.tune")

BASE_VARIANT = "BASE"  # the variant tag of trials that start from the spec's BASE


@dataclass(frozen=True)
class TuneRequest:
    """What ``tune`` was asked (the spec is loaded by the caller, with preset and --set)."""

    space: tuple[str, ...]
    trials: int = 20
    objective: Objective = "map"
    sampler: SamplerName = "tpe"
    pruner: PrunerName | None = None  # None: median, or none for --objective both
    storage: str | None = None
    study: str | None = None
    variant: str | None = None
    experiment: str | None = None
    sampler_seed: int | None = None
    startup_trials: int = 3
    warmup_epochs: int = 1
    heartbeat: float = 60.0
    sets: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TuneOutcome:
    study: str
    storage: str
    parent_run: str
    experiment: str
    records: list[TrialRecord]  # this worker's trials, retries included
    trials_total: int
    totals: dict[str, float]
    best: list[Best]
    space: Space


@dataclass(frozen=True)
class TunePlan:
    """A checked request: nothing exists yet."""

    spec: Spec
    base: ExperimentConfig
    variant: str
    seed: int
    space: Space
    pruner: PrunerName
    study: str
    storage: str
    bundles: dict[Any, Any]


def plan_tune(spec: Spec, req: TuneRequest, tracking_uri: str) -> TunePlan:
    """Check everything before anything exists (no study, no MLflow run, no store opened);
    ConfigError (and the data's, the model's errors) on bad input. The study's storage
    defaults to ``optuna.db`` beside an embedded store at ``tracking_uri``."""
    if req.trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {req.trials}")
    if not req.heartbeat > 0:
        raise ConfigError(f"--heartbeat must be > 0 seconds, got {req.heartbeat}")
    if req.startup_trials < 0 or req.warmup_epochs < 0:
        raise ConfigError("--startup-trials and --warmup-epochs must be >= 0")
    seed = spec.seeds[0]
    if req.variant is not None:
        base = spec.config(req.variant, seed=seed)
    else:
        assert spec.base_config is not None
        base = replace(spec.base_config, train=replace(spec.base_config.train, seed=seed))
    space = parse_space(req.space, base, req.sets)
    pruner = req.pruner or default_pruner(req.objective)
    check_settings(req.objective, pruner, req.sampler, space)
    bundles = preflight([base])
    return TunePlan(
        spec=spec,
        base=base,
        variant=req.variant or BASE_VARIANT,
        seed=seed,
        space=space,
        pruner=pruner,
        study=req.study or study_name(spec.name, req.variant, req.objective, space, base),
        storage=req.storage or default_storage(tracking_uri),
        bundles=dict(bundles),
    )


def tune(
    plan: TunePlan, req: TuneRequest, store: TrackingStore, progress: bool | None = None
) -> TuneOutcome:
    """Run ``req.trials`` new trials of the study (creating it and its MLflow run if new)."""
    worker = Worker(plan, req, store, progress)
    return worker.run()


class Worker:
    """One process working on a study."""

    def __init__(
        self, plan: TunePlan, req: TuneRequest, store: TrackingStore, progress: bool | None
    ) -> None:
        self.plan, self.req, self.store, self.progress = plan, req, store, progress
        self.poll = max(0.2, min(5.0, req.heartbeat))
        self.commit = git_commit(plan.spec.path.resolve().parent)
        epochs = plan.base.train.epochs
        self.sampler = make_sampler(req.sampler, plan.space, req.sampler_seed)
        pruner = make_pruner(plan.pruner, req.startup_trials, req.warmup_epochs, epochs)
        self.study, created = open_study(
            plan.storage, plan.study, req.objective, self.sampler, pruner, req.heartbeat
        )
        describe(self.study, req.objective, plan.space, plan.base)
        self.parent_id, self.experiment = self._parent(created)
        self.runner = TrialRunner(
            spec=plan.spec,
            base=plan.base,
            variant=plan.variant,
            seed=plan.seed,
            space=plan.space,
            objective=req.objective,
            pruner=plan.pruner,
            store=store,
            experiment=self.experiment,
            parent_id=self.parent_id,
            commit=self.commit,
            bundles=plan.bundles,
            progress=progress,
        )
        self.best: list[Best] = []

    # ----------------------------------------------------------------- the study's run

    def _parent(self, created: bool) -> tuple[str, str]:
        """The study's MLflow run: reopened, or created by the worker that created the study
        (the others wait for it), or here when it cannot be found in this store."""
        run_id = self.study.user_attrs.get(PARENT_RUN)
        if run_id is None and not created:
            run_id = wait_for_attr(self.study, PARENT_RUN)
        if run_id is not None:
            try:
                run = self.store.get_run(run_id)
                self.store.reopen_run(run_id)
                return run_id, run.experiment
            except RunNotFound:
                log.warning(
                    "the MLflow run %s of study %s is not in %s: starting a new one here",
                    run_id,
                    self.plan.study,
                    self.store.masked_uri,
                )
        spec, req = self.plan.spec, self.req
        experiment = req.experiment or spec.name
        tags = {
            **invocation_tags(spec, self.commit),
            names.TAG_KIND: names.KIND_TUNE,
            names.TAG_STUDY: self.plan.study,
        }
        plan = self.plan
        name = study_run_name(spec, plan.study)
        description = study_description(
            spec, plan.study, plan.variant, req.objective, plan.pruner, plan.space
        )
        tracker = self.store.create_run(experiment, name, tags, description=description)
        try:
            tracker.log_text(spec.source, names.SPEC_PY)
            tracker.log_dict(to_dict(self.plan.base), names.CONFIG_JSON)
            describe_experiment(
                self.store,
                experiment,
                spec,
                name,
                [RunPlan(spec, plan.variant, plan.seed, plan.base)],
            )
            tracker.log_params(
                {
                    **study_params(plan.base, plan.space),
                    "objective": req.objective,
                    "variant": self.plan.variant,
                    "storage": mask_uri(self.plan.storage),
                    "study": self.plan.study,
                    "epochs": self.plan.base.train.epochs,
                    **{names.space_param(d.key): d.text() for d in self.plan.space.dimensions},
                }
            )
            self.study.set_user_attr(PARENT_RUN, tracker.run_id)
        except BaseException:
            self.store.end_run(tracker.run_id, "FAILED")
            raise
        return tracker.run_id, experiment

    # ----------------------------------------------------------------- the work

    def run(self) -> TuneOutcome:
        status: RunStatus = "FAILED"
        try:
            with Progress(self.req.trials, "trials", enabled=self.progress, unit="trial") as bar:
                counted = 0
                while counted < self.req.trials:
                    if self._grid_done():
                        break
                    record = self._one_trial()
                    if record is None or record.retry_of is None:
                        counted += 1
                        bar.update(1)
                self._take_over()
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            self._requeue_current()
            raise
        finally:
            self._end(status)
        return TuneOutcome(
            study=self.plan.study,
            storage=self.plan.storage,
            parent_run=self.parent_id,
            experiment=self.experiment,
            records=self.runner.records,
            trials_total=len(self.study.get_trials(deepcopy=False)),
            totals=totals(self.study),
            best=self.best,
            space=self.plan.space,
        )

    def _grid_done(self) -> bool:
        if self.req.sampler == "grid" and self.sampler.is_exhausted(self.study):
            log.info("study %s: every point of the grid is tried", self.plan.study)
            return True
        return False

    def _one_trial(self) -> TrialRecord | None:
        """Ask for the next trial (a waiting retry first) and run it; its record."""
        before = len(self.runner.records)
        self.study.optimize(self.runner, n_trials=1, catch=(TrialFailed,), gc_after_trial=False)
        self._write_results()
        return self.runner.records[-1] if len(self.runner.records) > before else None

    def _take_over(self) -> None:
        """Wait for the trials other workers were running when this one finished its own: a
        worker that died leaves its trial RUNNING until the heartbeat fails it; its retry is
        then taken here."""
        import optuna
        from optuna.trial import TrialState

        others = {
            t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        }
        if others:
            log.info("waiting for trial(s) %s of other workers", sorted(others))
        while others:
            optuna.storages.fail_stale_trials(self.study)
            trials = self.study.get_trials(deepcopy=False)
            if any(t.state == TrialState.WAITING for t in trials):
                self._one_trial()
                continue
            others = {t.number for t in trials if t.number in others and t.state.name == "RUNNING"}
            time.sleep(self.poll)

    def _requeue_current(self) -> None:
        """Ctrl-C in the middle of a trial: Optuna failed it; enqueue it again (as its retry
        callback does), so the next ``tune`` resumes its MLflow run."""
        number = self.runner.current
        if number is None:
            return
        try:
            import optuna

            old = next(t for t in self.study.get_trials(deepcopy=False) if t.number == number)
            history = [*old.system_attrs.get("retry_history", []), number]
            first = old.system_attrs.get(RETRY_OF, number)
            self.study.add_trial(
                optuna.trial.create_trial(
                    state=optuna.trial.TrialState.WAITING,
                    params=old.params,
                    distributions=old.distributions,
                    user_attrs=old.user_attrs,
                    system_attrs={RETRY_OF: first, "retry_history": history},
                    intermediate_values=old.intermediate_values,
                )
            )
            log.info("trial %d is enqueued again: the next `tune` resumes its run", number)
        except Exception as exc:  # the storage may be what went away
            log.warning("could not enqueue trial %d again: %s", number, first_line(exc))

    def _write_results(self) -> None:
        parent = MlflowTracker(self.store, self.parent_id)
        with tempfile.TemporaryDirectory(prefix="digitexp-tune-") as tmp:
            self.best = log_results(
                parent, self.study, self.plan.space, self.req.objective, Path(tmp)
            )
        try:
            base = self.store.get_run(self.parent_id).tag(names.DESCRIPTION)
            best = [(b.label, b.number, b.set_line()) for b in self.best]
            parent.set_description(results_description(base, totals(self.study), best))
        except TrackingError as exc:  # the results are logged; only the summary is missing
            log.warning("the study run's description was not updated: %s", first_line(exc))

    def _end(self, status: RunStatus) -> None:
        """Results, then the study run's status: FINISHED only when no other worker is still
        running a trial (the last one ends it); KILLED / FAILED as this worker ended."""
        try:
            self._write_results()
        except Exception as exc:  # never hide why the worker stopped behind a results error
            log.warning("could not write the study's results: %s", first_line(exc))
        running = [t for t in self.study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        if status != "FINISHED" or not running:
            self.store.end_run(self.parent_id, status)
