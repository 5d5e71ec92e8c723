"""The error analysis of every launched run, at the end of its training (a RunHook)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from digitexp.engine.hooks import RunHook
from digitexp.insight.analysis import analyze
from digitexp.insight.runs import analysis_title, log_analysis
from digitexp.metrics import Detections

if TYPE_CHECKING:
    from digitexp.engine.trainer import RunResult, Trainer

log = logging.getLogger("digitexp.insight")


class AnalysisHook(RunHook):
    """At the end of a run: analyse the best checkpoint's validation predictions and log the
    ``analysis/*`` metrics and artifacts to the run. A failure here is logged as a warning and
    leaves the trained run FINISHED (``python -m digitexp analyze RUN_ID`` redoes it)."""

    def run_end(self, trainer: Trainer, result: RunResult, val: list[Detections]) -> None:
        split = trainer.sets["valid"].split
        try:
            analysis = analyze(split, {d.image_id: d for d in val}, trainer.cfg.eval)
            title = f"{analysis_title(None, trainer.cfg)}, best epoch {result.best_epoch}"
            log_analysis(trainer.tracker, analysis, split, title, trainer.workdir)
        except Exception as exc:  # an analysis never fails a trained run
            log.warning(
                "error analysis failed (%s: %s); run `python -m digitexp analyze %s` to redo it",
                type(exc).__name__,
                exc,
                trainer.tracker.run_id,
            )
