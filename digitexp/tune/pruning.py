"""The trainer's side of a trial: each epoch's validation metric reported to the Optuna trial,
and the run stopped there when the pruner says so (a :class:`~digitexp.engine.RunHook`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from digitexp.engine import RunHook, StopRun
from digitexp.tracking import contract as names

if TYPE_CHECKING:
    from digitexp.engine.trainer import Trainer


class TrialHook(RunHook):
    """Keeps the trial's epoch history (for its record) and, with ``metric``, reports it to
    the trial each epoch and asks the pruner; a pruned trial's run stops after that epoch
    (:class:`~digitexp.engine.StopRun`: the run ends KILLED with ``digitexp.pruned``, its
    checkpoints kept). It is not pruned after its last epoch (nothing is left to save).

    ``reported``: the epochs the trial already holds (a retried trial inherits them); the
    epochs a resumed run restored but never reported are reported first."""

    def __init__(
        self,
        trial: Any,
        metric: str | None,
        epochs: int,
        reported: set[int] | None = None,
        pruner_name: str = "",
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.epochs = epochs
        self.reported = set(reported or ())
        self.pruner_name = pruner_name
        self.history: Mapping[str, list[float]] = {}
        self.pruned_at: int | None = None

    def epoch_end(self, trainer: Trainer, epoch: int, metrics: Mapping[str, float]) -> None:
        self.history = trainer.history
        if self.metric is None:
            return
        for step, value in enumerate(trainer.history.get(self.metric, []), start=1):
            if step not in self.reported:
                self.trial.report(float(value), step)
                self.reported.add(step)
        if epoch < self.epochs and self.trial.should_prune():
            self.pruned_at = epoch
            value = metrics[self.metric]
            reason = (
                f"pruned after epoch {epoch} of {self.epochs} by the {self.pruner_name} pruner "
                f"({self.metric} {value:.4f})"
            )
            raise StopRun(reason, {names.TAG_PRUNED: str(epoch)})
