"""The figures every training run logs at its end (``figures/curves.png``,
``figures/val_predictions.png``), as a :class:`~digitexp.engine.hooks.RunHook`."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from digitexp.engine.hooks import RunHook
from digitexp.figures import curves, predictions
from digitexp.metrics import Detections
from digitexp.tracking import contract as names

if TYPE_CHECKING:
    from digitexp.engine.trainer import RunResult, Trainer

log = logging.getLogger("digitexp.figures")


class RunFigures(RunHook):
    """Draws the run's curves and its best checkpoint's predictions on validation images and
    logs both under ``figures/``. A figure that cannot be drawn is logged as a warning: it
    never fails a trained run."""

    def __init__(self, count: int = 8) -> None:
        self.count = count
        self.seconds = 0.0  # time spent drawing and logging (for the benchmark and the log)

    def run_end(self, trainer: Trainer, result: RunResult, val: list[Detections]) -> None:
        if trainer.tracker.run_id is None:  # nothing stores the artifacts
            return
        start = time.perf_counter()
        title = (
            f"best val mAP {result.best_val_map:.4f} at epoch {result.best_epoch} "
            f"of {result.epochs}"
        )
        split = trainer.sets["valid"].split
        with tempfile.TemporaryDirectory(prefix="digitexp-figures-") as tmp:
            out = Path(tmp)
            try:
                drawn = [
                    curves.draw(
                        trainer.history,
                        result.best_epoch,
                        out / Path(names.CURVES_FIGURE).name,
                        title,
                    ),
                    predictions.draw(
                        split,
                        {d.image_id: d for d in val},
                        trainer.cfg.eval,
                        out / Path(names.PREDICTIONS_FIGURE).name,
                        f"Best checkpoint (epoch {result.best_epoch}) on validation images",
                        self.count,
                    ),
                ]
            except Exception as exc:  # a figure is a nicety: never fail a trained run for it
                log.warning("figures not drawn: %s: %s", type(exc).__name__, exc)
                return
            for path in drawn:
                if path is not None:
                    trainer.tracker.log_artifact(path, names.FIGURES)
        self.seconds = time.perf_counter() - start
        log.info("figures logged in %.1f s", self.seconds)
