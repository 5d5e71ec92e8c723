"""Extension points of the training loop: code that runs at the end of each epoch and once at
the end of a run, without the loop knowing what it does (figures, analyses, pruning).

Subclass :class:`RunHook`, override what you need, and hand instances to :func:`fit` (the
launchers hand every run the hooks of :func:`digitexp.launch.jobs.run_hooks`). Hooks are
called on the process that logs (rank 0 under torchrun), after the epoch's metrics and
checkpoints are logged, so a hook that raises (a pruned trial, say) leaves a resumable run.
A hook that means to end the run there raises :class:`StopRun`: the launcher ends the run
KILLED with the hook's reason and tags, its checkpoints kept (``launch.jobs.run_one``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from digitexp.metrics import Detections

if TYPE_CHECKING:
    from digitexp.engine.trainer import RunResult, Trainer


class StopRun(Exception):
    """Raised by a hook's ``epoch_end`` to end the run after that epoch on purpose (a pruned
    trial): not an error; ``reason`` and ``tags`` go onto the run, which ends KILLED."""

    def __init__(self, reason: str, tags: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.tags = dict(tags or {})


class RunHook:
    """Called by :func:`digitexp.engine.fit`; the default methods do nothing."""

    def epoch_end(self, trainer: Trainer, epoch: int, metrics: Mapping[str, float]) -> None:
        """After epoch ``epoch``'s checkpoints and metrics are logged."""

    def run_end(self, trainer: Trainer, result: RunResult, val: list[Detections]) -> None:
        """After the best weights are loaded back and the summary metrics logged; ``val`` are
        the best checkpoint's detections on the validation split."""
